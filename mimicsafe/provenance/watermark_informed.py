"""Informed embedding: give each coded bit the amplitude it needs against this particular image.

Why: in a busy photo the image itself projects onto each bit's chips as strongly as the watermark
does, pushing some bits the wrong way before any attack. The embedder knows the image, so it reads it
exactly as the detector will (same shrinking, same whitening, known grid) and measures, for every bit,
how much the host helps or hinders (h) and how much a unit of watermark adds (g). It then sets the
bit's amplitude to lift its margin to a common level T: a = clip((T - h) / g, A_MIN, A_MAX), choosing T so
that, after the whole pattern is rescaled back to the PSNR target, the weakest bits are as strong as
possible. Bits that the image already pushes the right way cost little; a floor A_MIN keeps them
readable when an attack (a crop, a rotation) changes what the image contributes. This is the per-bit
form of "improved spread spectrum" (Malvar and Florencio, 2003).
"""

from __future__ import annotations

import cv2
import numpy as np

from mimicsafe.provenance.watermark_pattern import SUBSAMPLES, TILE, Layout
from mimicsafe.provenance.watermark_sync import fold, whiten, whiten_scale

A_MIN = 0.8
A_MAX = 3.0
WEAK_QUANTILE = 0.05


def shrink_for_detection(y: np.ndarray, detect_size: int) -> tuple[np.ndarray, float]:
    """The luma shrunk exactly as the detector shrinks it, and the factor used."""
    factor = min(1.0, detect_size / min(y.shape))
    if factor < 1.0:
        y = cv2.resize(y, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
    return y, factor


def jpeg_luma(y: np.ndarray, quality: int) -> np.ndarray:
    """Luma after a JPEG round trip at `quality` (greyscale JPEG: the luma path of a colour one)."""
    ok, buf = cv2.imencode(".jpg", np.clip(np.rint(y), 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else None
    if decoded is None:
        raise RuntimeError("OpenCV could not round-trip a JPEG; check the opencv-python-headless install")
    return decoded.astype(np.float32)


def aligned_soft_bits(y_small: np.ndarray, chip: float, lay: Layout, n_bits: int) -> np.ndarray:
    """Soft bit values read at the embedding geometry (no search), the detector's statistic."""
    r = whiten(y_small, whiten_scale(chip))  # exactly the residual the detector will compute
    h, w = r.shape
    step = chip / SUBSAMPLES
    origin = 0.5 * chip - 0.5  # centre of chip 0, in pixels of the shrunk image
    out_w = int((w - 1 - origin) / step) + 1
    out_h = int((h - 1 - origin) / step) + 1
    matrix = np.array([[step, 0.0, origin], [0.0, step, origin]], dtype=np.float64)
    samples = cv2.warpAffine(r, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    folded = fold(samples, TILE * SUBSAMPLES)
    smooth = 0.5 * folded + 0.25 * (np.roll(folded, 1, axis=0) + np.roll(folded, -1, axis=0))
    smooth = 0.5 * smooth + 0.25 * (np.roll(smooth, 1, axis=1) + np.roll(smooth, -1, axis=1))
    chips = smooth[::SUBSAMPLES, ::SUBSAMPLES]
    mask = lay.bit_index >= 0
    return np.bincount(lay.bit_index[mask], weights=(chips * lay.scramble)[mask], minlength=n_bits)


def bit_amplitudes(host: np.ndarray, marked: np.ndarray, signs: np.ndarray, lay: Layout) -> np.ndarray:
    """Per-bit amplitudes from soft bits of the host and of the host marked at amplitude 1.

    `host` and `marked` have shape (scenarios, bits): the same reading after each simulated channel
    (as is, JPEG), so that a bit the image helps only until it is compressed still gets its share.
    `signs` is +1 / -1 per coded bit. Returns amplitudes relative to the pilot's, which stays at 1.
    """
    h = host * signs
    g = (marked - host) * signs
    floor = 0.2 * np.maximum(np.median(g, axis=1, keepdims=True), 1e-9)
    g = np.maximum(g, floor)
    cells = np.bincount(lay.bit_index[lay.bit_index >= 0], minlength=signs.size).astype(np.float64)
    pilot_cells = float(np.count_nonzero(lay.pilot))
    # Margins are compared in units of each scenario's typical watermark contribution.
    unit = np.median(g, axis=1, keepdims=True)
    h, g = h / unit, g / unit
    best_a, best_low = np.ones(signs.size), -np.inf
    for target in np.linspace(0.2, 3.0, 57):
        a = np.clip(np.max((target - h) / g, axis=0), A_MIN, A_MAX)
        # The PSNR fit will rescale pilot and data together by 1 / rms.
        rms = np.sqrt((pilot_cells + float(np.sum(cells * a * a))) / (pilot_cells + cells.sum()))
        low = float(np.quantile(np.min(h + a * g / rms, axis=0), WEAK_QUANTILE))
        if low > best_low:
            best_a, best_low = a, low
    return best_a
