"""Invisible watermark carried by every generated image: a 64-bit id that survives re-encoding and edits.

Method in one paragraph (details and measurements in docs/watermark.md): the payload is protected by a
version byte, a keyed MAC and a BCH code (`watermark_payload`), spread over a keyed 32x32-chip tile with
a shorter-period pilot (`watermark_pattern`). The tile is repeated over the image with a chip size tied to
the image (`grid` chips across the short side), rendered smooth, and added to the luma at a target PSNR
(`watermark_embed`), each bit with the amplitude this image needs (`watermark_informed`). The detector
searches chip size and rotation in stages by correlating with the pilot (`watermark_search`,
`watermark_sync`), folds every repetition onto one tile, finds orientation and phase from the pilot and
decodes (`watermark_read`). An unmarked image reads as None.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from mimicsafe.provenance import watermark_payload as payload_codec
from mimicsafe.provenance.watermark_embed import add_pattern, luma, perceptual_mask
from mimicsafe.provenance.watermark_informed import aligned_soft_bits, bit_amplitudes, jpeg_luma, shrink_for_detection
from mimicsafe.provenance.watermark_pattern import PILOT_PERIOD, SUBSAMPLES, TILE, chip_tile, layout, render
from mimicsafe.provenance.watermark_read import PilotLock, chip_values, lock_pilot, soft_bits_candidates
from mimicsafe.provenance.watermark_search import Residuals, stages
from mimicsafe.provenance.watermark_sync import DIHEDRAL_NAMES, Candidate, dihedral, fold, pilot_spectra, register

DEFAULT_KEY = b"mimicsafe/watermark/v1"


@dataclass(frozen=True)
class WatermarkConfig:
    """How the watermark is embedded and searched for. Embedder and detector must share `key` and `grid`."""

    key: bytes = field(
        default=DEFAULT_KEY, metadata={"help": "keys the chip layout and the MAC; a deployment may set a secret"}
    )
    grid: int = field(default=64, metadata={"help": "chips across the image's short side (the working resolution)"})
    target_psnr: float = field(
        default=40.0,
        metadata={
            "help": "strength: PSNR (dB) the embedder aims at; it goes lower, to min_psnr, only if the mark "
            "would not read back otherwise"
        },
    )
    min_psnr: float = field(default=38.0, metadata={"help": "hard floor on PSNR; strength is lowered to respect it"})
    texture_boost: float = field(default=0.0, metadata={"help": "extra relative amplitude on busy areas (0 = uniform)"})
    texture_ref: float = field(default=12.0, metadata={"help": "local luma std (0-255) at which the boost is full"})
    max_amplitude: float = field(default=12.0, metadata={"help": "cap on the luma change of any pixel, 0-255 levels"})
    detect_size: int = field(
        default=384, metadata={"help": "the detector works on the image shrunk to this short side"}
    )
    candidates: int = field(default=2, metadata={"help": "grid hypotheses per search stage that the detector decodes"})
    max_rotation: float = field(default=20.0, metadata={"help": "degrees of rotation searched (beyond quarter turns)"})
    informed: bool = field(
        default=True, metadata={"help": "per-bit amplitudes fitted to the image (informed embedding)"}
    )
    informed_jpeg: int = field(default=50, metadata={"help": "JPEG quality the informed embedding also plans for"})
    chase_bits: int = field(default=5, metadata={"help": "least reliable bits flipped in Chase decoding (2**n tries)"})

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or not self.key:
            raise ValueError("key must be non-empty bytes")
        if not 16 <= self.grid <= 256:
            raise ValueError(f"grid must be in [16, 256], got {self.grid}")
        if not 30.0 <= self.min_psnr <= self.target_psnr <= 60.0:
            raise ValueError("need 30 <= min_psnr <= target_psnr <= 60 (dB)")
        if self.texture_boost < 0 or self.texture_ref <= 0 or self.max_amplitude <= 0:
            raise ValueError("texture_boost must be >= 0, texture_ref and max_amplitude > 0")
        if self.detect_size < 64:
            raise ValueError(f"detect_size must be >= 64, got {self.detect_size}")
        if not 1 <= self.candidates <= 32:
            raise ValueError(f"candidates must be in [1, 32], got {self.candidates}")
        if not 0.0 <= self.max_rotation <= 45.0:
            raise ValueError(f"max_rotation must be in [0, 45] degrees, got {self.max_rotation}")
        if not 10 <= self.informed_jpeg <= 100:
            raise ValueError(f"informed_jpeg must be a JPEG quality in [10, 100], got {self.informed_jpeg}")
        if not 0 <= self.chase_bits <= 8:
            raise ValueError(f"chase_bits must be in [0, 8], got {self.chase_bits}")


@dataclass(frozen=True)
class Detection:
    """What the detector found. `payload` is None when no watermark passed every check."""

    payload: bytes | None
    bit_accuracy: float
    """Share of the coded bits read correctly (0 when nothing decoded): how much margin was left."""
    confidence: float
    """Correlation of the folded pilot with its template (0.7-0.9 when found; informative, not a decision)."""
    transform: str
    """The geometry under which the mark was read, e.g. "identity", "mirrored, rotated 5.0 deg, zoom 1.25"."""
    version: int | None = None
    attempts: int = 0
    """Decoding attempts made (each is a chance for noise to pass; see docs/watermark.md)."""

    @property
    def found(self) -> bool:
        return self.payload is not None

    @property
    def payload_int(self) -> int | None:
        return None if self.payload is None else int.from_bytes(self.payload, "big")


MIN_SIDE = 32
"""Smallest image side the detector accepts (it returns None on anything too small to hold a mark)."""
MIN_EMBED_SIDE = 128
"""Smallest side the embedder accepts: below it a chip is under 2 pixels and no mark survives."""
CHASE_POSITIONS = 2


def _check_image(rgb: np.ndarray, min_side: int, name: str = "rgb") -> None:
    if not isinstance(rgb, np.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"{name} must have dtype uint8, got {rgb.dtype}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{name} must have shape (height, width, 3), got {rgb.shape}")
    if min(rgb.shape[:2]) < min_side:
        raise ValueError(f"{name} must be at least {min_side} pixels on each side, got {rgb.shape[:2]}")


def embed(rgb: np.ndarray, payload: int | bytes, *, config: WatermarkConfig = WatermarkConfig()) -> np.ndarray:
    """Return a copy of `rgb` (uint8, H x W x 3) carrying `payload` (an int < 2**64 or 8 bytes)."""
    _check_image(rgb, MIN_EMBED_SIDE)
    data = payload_codec.payload_to_bytes(payload)
    bits = payload_codec.encode(data, config.key)
    lay = layout(config.key, bits.size)
    height, width = rgb.shape[:2]
    chip = min(height, width) / config.grid

    mask = perceptual_mask(luma(rgb), chip, config.texture_boost, config.texture_ref)

    def mark(amplitudes: np.ndarray | None, target_psnr: float) -> np.ndarray:
        pattern = render(chip_tile(bits, lay, amplitudes), height, width, chip)
        return add_pattern(
            rgb,
            pattern,
            mask=mask,
            target_psnr=target_psnr,
            min_psnr=config.min_psnr,
            max_amplitude=config.max_amplitude,
        )

    def reads_back(marked: np.ndarray) -> bool:
        """Does the mark decode at the known grid, as is and after JPEG 75 (the exact-id promise)?"""
        for y in (luma(marked), jpeg_luma(luma(marked), 75)):
            small, factor = shrink_for_detection(y, config.detect_size)
            soft = aligned_soft_bits(small, chip * factor, lay, bits.size)
            decoded, _ = payload_codec.decode(soft, config.key, chase_bits=config.chase_bits)
            if decoded is None or decoded.payload != data:
                return False
        return True

    # 1. Mark with every bit at the same amplitude.
    uniform = mark(None, config.target_psnr)
    if not config.informed:
        return uniform
    # 2. Read host and uniform mark as the detector would, at the known grid, as is and after JPEG at
    #    `informed_jpeg`, and give each bit the amplitude it needs (watermark_informed).
    host_y, marked_y = luma(rgb), luma(uniform)
    host_rows, marked_rows = [], []
    for transform in (lambda y: y, lambda y: jpeg_luma(y, config.informed_jpeg)):
        host_small, factor = shrink_for_detection(transform(host_y), config.detect_size)
        marked_small, _ = shrink_for_detection(transform(marked_y), config.detect_size)
        host_rows.append(aligned_soft_bits(host_small, chip * factor, lay, bits.size))
        marked_rows.append(aligned_soft_bits(marked_small, chip * factor, lay, bits.size))
    signs = np.where(bits.astype(bool), 1.0, -1.0)
    amplitudes = bit_amplitudes(np.stack(host_rows), np.stack(marked_rows), signs, lay)
    # 3. Re-mark with those amplitudes. A busy photo may still not read back: then spend more of the
    #    PSNR budget, a decibel at a time, down to `min_psnr` (a mark that is not there helps no one).
    target = config.target_psnr
    while True:
        marked = mark(amplitudes, target)
        if target <= config.min_psnr or reads_back(marked):
            return marked
        target = max(config.min_psnr, target - 1.0)


def _describe(symmetry: int, angle: float, chip: float, short_side: float, grid: int) -> str:
    parts = [] if symmetry == 0 else [DIHEDRAL_NAMES[symmetry]]
    # The grid angle is measured clockwise (image rows grow downwards); report counter-clockwise, as
    # image editors do. Under a degree is within the search's precision and not reported.
    degrees = -float(np.rad2deg(angle))
    if abs(degrees) >= 1.0:
        parts.append(f"rotated {degrees:.1f} deg")
    zoom = chip * grid / short_side
    if abs(zoom - 1.0) >= 0.03:
        parts.append(f"zoom {zoom:.2f}")
    return ", ".join(parts) or "identity"


def _upright_shift(lock: PilotLock) -> tuple[float, float]:
    """The pilot's sub-sample offset, measured upright, as a shift of the image's sampling grid."""
    rows, cols = lock.fraction
    # Undo the orientation: map the upright (row, column) shift back to the image's axes.
    probe = np.zeros((3, 3))
    probe[1 + int(np.sign(rows)), 1] = abs(rows)
    probe[1, 1 + int(np.sign(cols))] += abs(cols)
    seen = dihedral(probe, lock.symmetry)
    return (float(seen[2, :].sum() - seen[0, :].sum()), float(seen[:, 2].sum() - seen[:, 0].sum()))


@dataclass(frozen=True)
class _Reader:
    """What every grid hypothesis of one detection shares."""

    config: WatermarkConfig
    res: Residuals
    read_spectra: np.ndarray
    n_bits: int
    factor: float
    """Shrink factor from the input image to the detection image."""
    short: int
    """Short side of the input image, in pixels."""

    def read(self, cand: Candidate) -> tuple[Detection | None, float, int]:
        """Decode one hypothesis: (detection or None, pilot correlation, decoding attempts)."""
        lay = layout(self.config.key, self.n_bits)
        # 1. Resample on the hypothesised grid and fold every tile onto one.
        r = self.res.at(cand.chip)
        folded = fold(register(r, cand.chip, cand.angle, SUBSAMPLES, weights=False).samples, TILE * SUBSAMPLES)
        # 2. Orientation and chip phase from the pilot; resample once more with the samples exactly on
        #    the chip centres (a sixth of a chip off costs a tenth of the signal).
        lock = lock_pilot(folded, self.read_spectra)
        folded = fold(
            register(r, cand.chip, cand.angle, SUBSAMPLES, weights=False, shift=_upright_shift(lock)).samples,
            TILE * SUBSAMPLES,
        )
        lock = lock_pilot(folded, self.read_spectra)
        chips = chip_values(folded, lock)
        # 3. The 16 tile positions the pilot leaves open. At the right one the soft values carry the
        #    mark and are larger, so Chase decoding (2**chase_bits attempts) goes to the two strongest.
        offsets = soft_bits_candidates(chips, lay, self.n_bits)
        energy = np.array([float(np.sum(soft * soft)) for soft in offsets])
        strongest = set(np.argsort(energy)[::-1][:CHASE_POSITIONS].tolist())
        attempts = 0
        for position, soft in enumerate(offsets):
            chase = self.config.chase_bits if position in strongest else 0
            decoded, tries = payload_codec.decode(soft, self.config.key, chase_bits=chase)
            attempts += tries
            if decoded is None:
                continue
            expected = payload_codec.encode(decoded.payload, self.config.key)
            found = Detection(
                payload=decoded.payload,
                bit_accuracy=float(np.mean(expected == (soft > 0))),
                confidence=lock.correlation,
                transform=_describe(lock.symmetry, cand.angle, cand.chip / self.factor, self.short, self.config.grid),
                version=decoded.version,
                attempts=attempts,
            )
            return found, lock.correlation, attempts
        return None, lock.correlation, attempts


def detect(rgb: np.ndarray, *, config: WatermarkConfig = WatermarkConfig()) -> Detection:
    """Look for the watermark in `rgb` (uint8, H x W x 3); payload None when there is none."""
    _check_image(rgb, MIN_SIDE)
    # 1. Shrink the luma to the detection size, exactly as the embedder simulated it.
    y, factor = shrink_for_detection(luma(rgb), config.detect_size)
    n_bits = payload_codec.code_bits()
    lay = layout(config.key, n_bits)
    pilot_bytes = np.ascontiguousarray(lay.pilot[:PILOT_PERIOD, :PILOT_PERIOD]).tobytes()
    res = Residuals.of(y)
    reader = _Reader(config, res, pilot_spectra(pilot_bytes, SUBSAMPLES), n_bits, factor, min(rgb.shape[:2]))
    # 2. Search the grid in stages, cheapest first; decode each stage's best hypotheses.
    nominal_chip = min(y.shape) / config.grid
    max_rotation = float(np.deg2rad(config.max_rotation))
    attempts, best_corr = 0, 0.0
    tried: list[Candidate] = []
    for stage in stages(res, nominal_chip, max_rotation, pilot_spectra(pilot_bytes, 2), config.candidates):
        for cand in stage():
            if any(abs(np.log(cand.chip / t.chip)) < 0.004 and abs(cand.angle - t.angle) < 0.003 for t in tried):
                continue
            tried.append(cand)
            found, corr, tries = reader.read(cand)
            attempts += tries
            best_corr = max(best_corr, corr)
            if found is not None:
                return replace(found, attempts=attempts)
    # 3. Nothing passed BCH, version and MAC checks: no watermark.
    return Detection(payload=None, bit_accuracy=0.0, confidence=best_corr, transform="none", attempts=attempts)
