"""The detector's search over chip size and rotation, in stages from cheapest to widest.

Stage "nominal": the chip size the embedder used if the image was only re-encoded, resized or
recoloured (short side / grid), no rotation. Stage "near": zoom 0.79-1.35 (crops up to a quarter, the
canvas growing under a rotation) at rotations up to `max_rotation`. Stage "wide": zoom 0.35-3
(large crops, frames, screenshots), at least 1.5 pixels per chip, rotations up to 3.6 degrees. The detector stops at
the first stage that decodes, so a plain re-encoded image costs one stage.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from mimicsafe.provenance.watermark_sync import Candidate, block_score, coherent_score, whiten, whiten_scale

COARSE_SCALE_STEP = 0.06
COARSE_ANGLE_STEP = np.deg2rad(3.6)
MIN_CHIP = 1.5
WIDE_MAX_ROTATION = COARSE_ANGLE_STEP
"""The wide stage (frames, large crops) searches rotations up to one coarse step only: a frame or a big
crop rarely comes with a rotation, and every extra hypothesis is one more chance for noise to win."""
REFINE_ROUNDS = 4
"""From half a coarse step to a sixteenth: 0.2% in scale and 0.1 degree in angle."""
SHORTLIST = 8
"""Coarse-grid cells refined per stage; the best `candidates` of them (by coherent score) are decoded."""
NEAR_ZOOM = (-0.24, 0.30)
"""Log chip-size range of the "near" stage: zoom 0.79 (canvas grown by a 15-degree rotation) to 1.35 (25% crop)."""
WIDE_ZOOM = (0.35, 3.0)
"""Chip-size range of the "wide" stage, relative to nominal: a frame three times the image, a crop to a third."""


@dataclass
class Residuals:
    """Whitened residuals of one image at chip scales a half-octave apart, computed on demand."""

    y: np.ndarray
    _cache: dict[float, np.ndarray]

    @classmethod
    def of(cls, y: np.ndarray) -> Residuals:
        return cls(y=y, _cache={})

    def at(self, chip: float) -> np.ndarray:
        scale = whiten_scale(chip)
        if scale not in self._cache:
            self._cache[scale] = whiten(self.y, scale)
        return self._cache[scale]


def _local_maxima(grid: np.ndarray, count: int) -> list[tuple[int, int]]:
    padded = np.pad(grid, 1, constant_values=-np.inf)
    centre = padded[1:-1, 1:-1]
    is_max = np.ones_like(centre, dtype=bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy or dx:
                is_max &= centre >= padded[1 + dy : padded.shape[0] - 1 + dy, 1 + dx : padded.shape[1] - 1 + dx]
    flat = np.flatnonzero(is_max.ravel())
    best = flat[np.argsort(grid.ravel()[flat])[::-1][:count]]
    return [tuple(int(v) for v in np.unravel_index(i, grid.shape)) for i in best]  # type: ignore[misc]


def coarse(res: Residuals, chips: np.ndarray, angles: np.ndarray, spectra: np.ndarray, count: int) -> list[Candidate]:
    """Best `count` local maxima of the block score over the (chip, angle) grid."""
    grid = np.array([[block_score(res.at(c), c, a, spectra) for a in angles] for c in chips])
    return [Candidate(float(chips[i]), float(angles[j]), float(grid[i, j])) for i, j in _local_maxima(grid, count)]


def refine(res: Residuals, start: Candidate, spectra: np.ndarray, scale_span: float, angle_span: float) -> Candidate:
    """Four rounds of 3x3 grid search on the coherent pilot correlation, each round twice as fine."""
    best = Candidate(start.chip, start.angle, -np.inf)
    centre = start
    for _ in range(REFINE_ROUNDS):
        r = res.at(centre.chip)
        for dc in (-scale_span, 0.0, scale_span):
            for da in (-angle_span, 0.0, angle_span):
                chip, angle = centre.chip * float(np.exp(dc)), centre.angle + da
                score = coherent_score(r, chip, angle, spectra, 2)
                if score > best.score:
                    best = Candidate(chip, angle, score)
        centre = best
        scale_span /= 2.0
        angle_span /= 2.0
    return best


def stages(
    res: Residuals, nominal_chip: float, max_rotation: float, spectra: np.ndarray, per_stage: int
) -> Iterator[Callable[[], list[Candidate]]]:
    """Yield the search stages in order; each, when called, returns refined candidates to decode."""
    short = min(res.y.shape)
    angles = np.arange(-max_rotation, max_rotation + 1e-9, COARSE_ANGLE_STEP)
    wide_angles = angles[np.abs(angles) <= WIDE_MAX_ROTATION + 1e-9]
    half_scale, half_angle = COARSE_SCALE_STEP / 2, COARSE_ANGLE_STEP / 2  # first refinement round

    def nominal() -> list[Candidate]:
        # The exact nominal grid first: an image that was only re-encoded or recoloured sits on it, and
        # the refinement's own precision (a fraction of a degree) would cost it margin.
        start = Candidate(nominal_chip, 0.0, 0.0)
        return [start, refine(res, start, spectra, half_scale, half_angle)]

    def best_refined(chips: np.ndarray, angles: np.ndarray) -> list[Candidate]:
        # The coarse score only shortlists: the coherent score after refinement ranks far better.
        found = coarse(res, chips, angles, spectra, SHORTLIST)
        refined = [refine(res, c, spectra, half_scale, half_angle) for c in found]
        return sorted(refined, key=lambda c: c.score, reverse=True)[:per_stage]

    def near() -> list[Candidate]:
        chips = nominal_chip * np.exp(np.arange(NEAR_ZOOM[0], NEAR_ZOOM[1] + 1e-9, COARSE_SCALE_STEP))
        return best_refined(chips, angles)

    def wide() -> list[Candidate]:
        low = max(MIN_CHIP, nominal_chip * WIDE_ZOOM[0])
        high = min(short / 16.0, nominal_chip * WIDE_ZOOM[1])
        chips = np.exp(np.arange(np.log(low), np.log(high), COARSE_SCALE_STEP))
        near = (chips > nominal_chip * np.exp(NEAR_ZOOM[0])) & (chips < nominal_chip * np.exp(NEAR_ZOOM[1]))
        chips = chips[~near]
        return best_refined(chips, wide_angles) if chips.size else []

    yield nominal
    yield near
    yield wide
