"""Reading a folded tile: orientation and chip phase from the pilot, then the data bits.

The pilot repeats every 8 chips, so it fixes the tile position only modulo 8 chips; the 16 positions
modulo 32 that remain are all tried, and only one of them can pass the BCH and MAC checks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mimicsafe.provenance.watermark_pattern import PILOT_PERIOD, SUBSAMPLES, TILE, Layout
from mimicsafe.provenance.watermark_sync import dihedral, fold, pilot_correlation


def inverse_symmetry(index: int) -> int:
    """Rotations invert to the opposite rotation; the four reflections are their own inverses."""
    return (4 - index) % 4 if index < 4 else index


@dataclass(frozen=True)
class PilotLock:
    """Where the pilot was found in a folded tile."""

    symmetry: int
    """Index of the orientation the image shows (see watermark_sync.DIHEDRAL_NAMES)."""
    offset: tuple[int, int]
    """Pilot position in samples after undoing the orientation, modulo PILOT_PERIOD * SUBSAMPLES."""
    correlation: float
    """Correlation coefficient of the folded pilot period with the pilot template."""
    fraction: tuple[float, float] = (0.0, 0.0)
    """Sub-sample part of the pilot position (rows, columns, in [-0.5, 0.5]), from a parabola fit."""


def lock_pilot(folded: np.ndarray, spectra: np.ndarray) -> PilotLock:
    """Find orientation and phase of the pilot in a tile folded at SUBSAMPLES samples per chip."""
    period = PILOT_PERIOD * SUBSAMPLES
    corr = pilot_correlation(fold(folded, period), spectra)
    symmetry = int(np.argmax(corr.reshape(8, -1).max(axis=1)))
    upright = dihedral(folded, inverse_symmetry(symmetry))
    corr0 = pilot_correlation(fold(upright, period), spectra[:1])[0]
    row, col = np.unravel_index(int(np.argmax(corr0)), corr0.shape)
    fraction = (_parabola(corr0[:, col], int(row)), _parabola(corr0[row, :], int(col)))
    return PilotLock(symmetry=symmetry, offset=(int(row), int(col)), correlation=float(corr0.max()), fraction=fraction)


def _parabola(values: np.ndarray, peak: int) -> float:
    """Sub-sample offset of a cyclic peak from a parabola through it and its neighbours."""
    left, centre, right = values[peak - 1], values[peak], values[(peak + 1) % values.size]
    curvature = left - 2.0 * centre + right
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def chip_values(folded: np.ndarray, lock: PilotLock) -> np.ndarray:
    """The (TILE, TILE) chip values, upright, with the tile position known modulo 8 chips.

    Each chip value is a [1, 2, 1] weighted sum over the samples around its centre, a cheap matched
    filter for the cubic chip shape.
    """
    upright = dihedral(folded, inverse_symmetry(lock.symmetry))
    # Pilot chip i is centred on sample SUBSAMPLES * i + offset: roll it onto SUBSAMPLES * i.
    aligned = np.roll(upright, (-lock.offset[0], -lock.offset[1]), axis=(0, 1))
    smooth = 0.5 * aligned + 0.25 * (np.roll(aligned, 1, axis=0) + np.roll(aligned, -1, axis=0))
    smooth = 0.5 * smooth + 0.25 * (np.roll(smooth, 1, axis=1) + np.roll(smooth, -1, axis=1))
    return smooth[::SUBSAMPLES, ::SUBSAMPLES]


def soft_bits_candidates(chips: np.ndarray, lay: Layout, n_bits: int) -> list[np.ndarray]:
    """Soft values of the coded bits for each of the 16 tile positions the pilot leaves open."""
    mask = lay.bit_index >= 0
    index = lay.bit_index[mask]
    reps = TILE // PILOT_PERIOD
    out = []
    for a in range(reps):
        for b in range(reps):
            shifted = np.roll(chips, (-PILOT_PERIOD * a, -PILOT_PERIOD * b), axis=(0, 1))
            weighted = (shifted * lay.scramble)[mask]
            out.append(np.bincount(index, weights=weighted, minlength=n_bits))
    return out
