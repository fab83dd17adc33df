"""Finding the chip grid in an image that may have been resized, cropped, rotated, flipped or framed.

The grid has three unknowns: chip size (any resize or crop changes it), rotation, and the position of
the tile (any crop moves it). Position is cheap to find by correlation once the other two are right,
so the search runs over (chip size, rotation) only:

1. `whiten`: a band-pass residual of the luma, weighted by the inverse of its local energy, so that
   the host image's edges and textures (which carry no watermark information) count for little;
2. `block_score`: for one (chip, rotation) of a coarse grid, resample, cut into blocks of 16 chips,
   fold each block onto the 8-chip pilot period, correlate with the 8 orientations of the pilot and
   average the (max-pooled) correlation surfaces over blocks; small blocks and pooling keep the score
   tolerant of the grid's coarseness (a 3% scale error moves a block's edge by half a chip);
3. `coherent_score`: the whole image folded onto one pilot period, used to refine the best coarse
   cells (see `watermark_search`);
4. `register` + `fold`: the final resampling at SUBSAMPLES samples per chip, folded onto one tile,
   which `watermark_read` decodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from mimicsafe.provenance.watermark_pattern import PILOT_PERIOD, render_periodic

DIHEDRAL_NAMES: tuple[str, ...] = (
    "identity",
    "rotated 90",
    "rotated 180",
    "rotated 270",
    "mirrored",
    "mirrored, rotated 90",
    "flipped",
    "mirrored, rotated 270",
)


def dihedral(a: np.ndarray, index: int) -> np.ndarray:
    """Apply symmetry `index` of the square to the last two axes of `a`."""
    if index >= 4:
        a = a[..., :, ::-1]
    return np.rot90(a, index % 4, axes=(-2, -1))


def whiten_scale(chip: float) -> float:
    """The whitening scale used for a chip size: the nearest half-octave, so one image's residuals can
    be computed once per half-octave and shared by all nearby hypotheses (the embedder uses the same)."""
    return float(2.0 ** (round(2.0 * np.log2(chip)) / 2.0))


def whiten(y: np.ndarray, chip: float) -> np.ndarray:
    """Band-pass residual at the scale of `chip`, divided by its local energy (inverse-variance weight).

    Dividing by the energy rather than its square root is what a matched filter does when the noise
    (here: the host image's own detail) varies across the image: a flat area whose residual is all
    watermark counts fully, an edge whose residual is mostly the edge counts little.
    """
    low = 0.3 * chip
    smooth = cv2.GaussianBlur(y, (0, 0), low) if low > 0.3 else y
    resid = smooth - cv2.GaussianBlur(y, (0, 0), chip)
    energy = cv2.GaussianBlur(resid * resid, (0, 0), chip)
    out = resid / (energy + 1.0)
    limit = 4.0 * float(np.std(out)) + 1e-6
    return np.clip(out, -limit, limit).astype(np.float32)


@dataclass(frozen=True)
class Registered:
    """A residual resampled on a candidate grid (`samples` per chip), plus validity weights."""

    samples: np.ndarray
    weights: np.ndarray


def register(
    r: np.ndarray, chip: float, angle: float, samples: int, *, weights: bool = True, shift: tuple[float, float] = (0, 0)
) -> Registered:
    """Resample `r` on a grid rotated by `angle` (radians) with spacing chip / samples, covering the image.

    `shift` (rows, columns, in samples) moves the sampling grid by a fraction of a sample, so that the
    reader can put samples exactly on chip centres once the pilot has shown where they are.
    """
    h, w = r.shape
    step = chip / samples
    c, s = np.cos(angle), np.sin(angle)
    corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], dtype=np.float64)
    u = (c * corners[:, 0] + s * corners[:, 1]) / step
    v = (-s * corners[:, 0] + c * corners[:, 1]) / step
    u0, v0 = np.floor(u.min()), np.floor(v.min())
    out_w, out_h = int(np.ceil(u.max() - u0)) + 1, int(np.ceil(v.max() - v0)) + 1
    u0, v0 = u0 + shift[1], v0 + shift[0]
    matrix = np.array(
        [
            [step * c, -step * s, step * (c * u0 - s * v0)],
            [step * s, step * c, step * (s * u0 + c * v0)],
        ],
        dtype=np.float64,
    )
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    border = cv2.BORDER_CONSTANT
    values = cv2.warpAffine(r, matrix, (out_w, out_h), flags=flags, borderMode=border, borderValue=0)
    if not weights:  # samples outside the image are 0 already; the weights only tell how much is inside
        return Registered(samples=values, weights=np.ones_like(values))
    cover = cv2.warpAffine(np.ones_like(r), matrix, (out_w, out_h), flags=flags, borderMode=border, borderValue=0)
    return Registered(samples=values * cover, weights=cover)


def fold(a: np.ndarray, period: int) -> np.ndarray:
    """Sum every period x period block of the last two axes onto one block (zero-padding the edges)."""
    h, w = a.shape[-2:]
    ph, pw = -(-h // period) * period, -(-w // period) * period
    if (ph, pw) != (h, w):
        padded = np.zeros(a.shape[:-2] + (ph, pw), dtype=a.dtype)
        padded[..., :h, :w] = a
        a = padded
    shape = a.shape[:-2] + (ph // period, period, pw // period, period)
    return a.reshape(shape).sum(axis=(-4, -2))


@lru_cache(maxsize=16)
def pilot_spectra(pilot_bytes: bytes, samples: int) -> np.ndarray:
    """Conjugate FFTs of the pilot period rendered at `samples` per chip, in the 8 orientations.

    Shape (8, P, P // 2 + 1), each template zero-mean and unit-norm, so that a correlation divided by
    the block's norm is a correlation coefficient.
    """
    pilot = np.frombuffer(pilot_bytes, dtype=np.float32).reshape(PILOT_PERIOD, PILOT_PERIOD)
    out = []
    for index in range(8):
        template = render_periodic(np.ascontiguousarray(dihedral(pilot, index)), samples).astype(np.float64)
        template -= template.mean()
        template /= np.linalg.norm(template)
        out.append(np.conj(np.fft.rfft2(template)))
    return np.stack(out)


def pilot_correlation(folded: np.ndarray, spectra: np.ndarray) -> np.ndarray:
    """Cyclic correlation coefficients of folded pilot periods (..., P, P) with the 8 templates.

    Returns (..., 8, P, P).
    """
    p = folded.shape[-1]
    centred = folded - folded.mean(axis=(-2, -1), keepdims=True)
    norm = np.sqrt((centred**2).sum(axis=(-2, -1), keepdims=True)) + 1e-12
    spec = np.fft.rfft2(centred / norm)
    return np.fft.irfft2(spec[..., None, :, :] * spectra, s=(p, p))


BLOCK_PERIODS = 2
"""Coarse search blocks are BLOCK_PERIODS x BLOCK_PERIODS pilot periods (16 x 16 chips)."""
COARSE_SAMPLES = 2
MAX_BLOCKS = 96


@dataclass(frozen=True)
class Candidate:
    """A grid hypothesis in the (shrunk) detection image: chip size in pixels, rotation in radians."""

    chip: float
    angle: float
    score: float


def block_score(r: np.ndarray, chip: float, angle: float, spectra: np.ndarray) -> float:
    """Semi-coherent pilot score of 16-chip blocks (the coarse search's score).

    Each block is folded onto the pilot period and correlated with the 8 pilot orientations; each
    correlation surface is max-pooled over +/-1 sample (half a chip), which tolerates the drift of the
    tile position from block to block while the grid is only approximately right; the surfaces are
    then averaged over the blocks and the best (orientation, position) is the score. Blocks are scaled
    by the image's overall residual energy, not their own, so that an empty area (a screenshot's
    interface, a rotation's corners) adds nothing rather than normalised noise.
    """
    reg = register(r, chip, angle, COARSE_SAMPLES)
    period = PILOT_PERIOD * COARSE_SAMPLES
    size = period * BLOCK_PERIODS
    h, w = reg.samples.shape
    nby, nbx = h // size, w // size
    if nby == 0 or nbx == 0:
        return 0.0
    blocks = reg.samples[: nby * size, : nbx * size].reshape(nby, size, nbx, size).swapaxes(1, 2)
    cover = reg.weights[: nby * size, : nbx * size].reshape(nby, size, nbx, size).mean(axis=(1, 3))
    keep = cover.ravel() > 0.6
    if not keep.any():
        return 0.0
    blocks = blocks.reshape(-1, size, size)[keep]
    if blocks.shape[0] > MAX_BLOCKS:  # small chips make many blocks; an even subset scores as well
        blocks = blocks[np.linspace(0, blocks.shape[0] - 1, MAX_BLOCKS).astype(int)]
    folded = fold(blocks, period)
    folded = folded - folded.mean(axis=(-2, -1), keepdims=True)
    norm = np.sqrt(np.mean(np.sum(folded**2, axis=(-2, -1)))) + 1e-12
    spec = np.fft.rfft2(folded / norm)
    corr = np.fft.irfft2(spec[:, None, :, :] * spectra, s=(period, period))
    pooled = corr
    for axis in (-2, -1):
        pooled = np.maximum(pooled, np.maximum(np.roll(pooled, 1, axis=axis), np.roll(pooled, -1, axis=axis)))
    return float(pooled.mean(axis=0).max())


def coherent_score(r: np.ndarray, chip: float, angle: float, spectra: np.ndarray, samples: int) -> float:
    """Best pilot correlation coefficient with the whole image folded onto one pilot period."""
    reg = register(r, chip, angle, samples, weights=False)
    folded = fold(reg.samples, PILOT_PERIOD * samples)
    return float(pilot_correlation(folded, spectra).max())
