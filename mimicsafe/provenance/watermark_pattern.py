"""The keyed chip pattern: a 32x32-chip tile, repeated over the image, that carries pilot and data.

Why a tile: any part of the image that holds one tile's worth of chips (about a quarter of a
512-pixel image) carries the whole message, so crops keep it; folding every repetition onto one tile
adds their energy up.

Why a pilot with a shorter period: a quarter of the chips (16 in every 8x8 block) are known
("pilot") values that repeat every 8 chips. Knowing them, the detector can test a hypothesis about chip
size and rotation without knowing the payload (fold the image onto the 8-chip period and correlate),
and the same correlation gives the chip phase and the orientation (flips, quarter turns). The other
768 chips carry the 244 coded bits, each bit spread over three or four chips with a keyed +/-1
scrambling sequence.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

import cv2
import numpy as np

TILE: Final = 32
"""Chips per tile side; the data repeat with this period."""
PILOT_PERIOD: Final = 8
"""Chips per pilot period; the pilot repeats with this period, which the detector locks onto."""
PILOT_PER_BLOCK: Final = 16
"""Pilot chips in each PILOT_PERIOD x PILOT_PERIOD block (a quarter)."""
SUBSAMPLES: Final = 4
"""Samples per chip side when the detector reads a registered image (quarter-chip precision)."""


def keyed_rng(key: bytes, label: str) -> np.random.Generator:
    """A generator seeded from the watermark key and a purpose label, so every part is keyed."""
    digest = hashlib.blake2b(label.encode(), key=key[:64], digest_size=16, person=b"mimicsafe-wm-rng").digest()
    return np.random.default_rng(int.from_bytes(digest, "big"))


@dataclass(frozen=True)
class Layout:
    """Where the pilot and each coded bit live in the tile."""

    pilot: np.ndarray
    """(TILE, TILE) float32: +/-1 on pilot chips, 0 on data chips. Periodic with PILOT_PERIOD."""
    bit_index: np.ndarray
    """(TILE, TILE) int: index of the coded bit a data chip carries, -1 on pilot chips."""
    scramble: np.ndarray
    """(TILE, TILE) float32: keyed +/-1 sequence multiplied into the data chips."""


@lru_cache(maxsize=8)
def layout(key: bytes, n_bits: int) -> Layout:
    rng = keyed_rng(key, "layout")
    block_cells = PILOT_PERIOD * PILOT_PERIOD
    pilot_cells = rng.permutation(block_cells)[:PILOT_PER_BLOCK]
    block = np.zeros(block_cells, dtype=np.float32)
    block[pilot_cells] = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=PILOT_PER_BLOCK)
    reps = TILE // PILOT_PERIOD
    pilot = np.tile(block.reshape(PILOT_PERIOD, PILOT_PERIOD), (reps, reps))

    data_cells = np.flatnonzero(pilot.ravel() == 0)
    # Spread every bit as evenly as possible over the data chips, in a keyed order.
    order = rng.permutation(data_cells.size)
    bit_index = np.full(TILE * TILE, -1, dtype=np.int64)
    bit_index[data_cells[order]] = np.arange(data_cells.size) % n_bits
    scramble = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=TILE * TILE)
    scramble[pilot.ravel() != 0] = 0.0
    for array in (pilot, bit_index, scramble):
        array.setflags(write=False)
    return Layout(pilot=pilot, bit_index=bit_index.reshape(TILE, TILE), scramble=scramble.reshape(TILE, TILE))


def chip_tile(bits: np.ndarray, lay: Layout, amplitudes: np.ndarray | None = None) -> np.ndarray:
    """The (TILE, TILE) chip values for a coded word: pilot (+/-1) plus scrambled data.

    `amplitudes` (one per coded bit, default 1) scale each bit's chips; see watermark_informed.
    """
    signs = np.where(bits.astype(bool), 1.0, -1.0).astype(np.float32)
    if amplitudes is not None:
        signs = signs * amplitudes.astype(np.float32)
    data = np.where(lay.bit_index >= 0, signs[np.clip(lay.bit_index, 0, None)] * lay.scramble, 0.0)
    return (lay.pilot + data).astype(np.float32)


def render(tile: np.ndarray, height: int, width: int, chip: float) -> np.ndarray:
    """Render the tiled chip grid at image resolution, chip `chip` pixels wide, with cubic interpolation.

    Chip (i, j) of the repeated tile is centred on pixel ((j + 0.5) * chip - 0.5, (i + 0.5) * chip - 0.5),
    so the tile origin sits at the image's top-left corner. The result is smooth (band-limited to
    about one cycle per two chips), which is what survives JPEG and resizing.
    """
    rows = int(np.ceil(height / chip)) + 4
    cols = int(np.ceil(width / chip)) + 4
    grid = np.tile(tile, (rows // TILE + 2, cols // TILE + 2))
    # Shift by one tile so that the grid has a margin of chips above and left of the image.
    grid = np.roll(grid, (2, 2), axis=(0, 1))[: rows + 2, : cols + 2]
    # dst pixel x -> grid coordinate u = (x + 0.5) / chip - 0.5 + 2
    scale = 1.0 / chip
    offset = 0.5 / chip - 0.5 + 2.0
    matrix = np.array([[scale, 0.0, offset], [0.0, scale, offset]], dtype=np.float64)
    return cv2.warpAffine(
        grid.astype(np.float32),
        matrix,
        (width, height),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT,
    )


def render_periodic(tile: np.ndarray, samples: int) -> np.ndarray:
    """Render one period of a tile at `samples` samples per chip, chip centres at sample `samples * i`.

    Used by the detector as its correlation template; cyclic, so it matches a folded image.
    """
    n = tile.shape[0]
    big = np.tile(tile, (3, 3)).astype(np.float32)
    size = 3 * n * samples
    # dst sample s -> chip coordinate s / samples (chip i centred at sample samples * i).
    matrix = np.array([[1.0 / samples, 0.0, 0.0], [0.0, 1.0 / samples, 0.0]], dtype=np.float64)
    out = cv2.warpAffine(
        big, matrix, (size, size), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_WRAP
    )
    start = n * samples
    return out[start : start + n * samples, start : start + n * samples].copy()
