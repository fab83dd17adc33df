"""Adding the rendered chip pattern to an image: perceptual mask and a strength fitted to a PSNR target.

Why luma only: the same delta goes to R, G and B, so greyscale conversion, desaturation and 4:2:0
chroma subsampling keep all of it.

Why a PSNR target rather than a fixed amplitude: the budget of visible change is what matters, and
clipping at white or black eats part of a fixed amplitude. The mask puts up to `texture_boost` times
more of the budget where the image is busy (where the eye does not see it); flat illustrations get the
floor amplitude everywhere, which is the case the default target was tuned for.
"""

from __future__ import annotations

import cv2
import numpy as np


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as float32 in [0, 255]."""
    f = rgb.astype(np.float32)
    return 0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2]


def perceptual_mask(y: np.ndarray, chip: float, texture_boost: float, texture_ref: float) -> np.ndarray:
    """Relative amplitude >= 1: 1 on flat areas, up to 1 + texture_boost on busy ones.

    Business is the local standard deviation of luma over about a chip; the mask is smoothed over two
    chips so that the amplitude never changes abruptly (an abrupt change would itself be visible).
    Computed at a resolution of two pixels per chip (it only varies on that scale), then enlarged.
    """
    if texture_boost == 0:
        return np.ones_like(y)
    shrink = max(1.0, chip / 2.0)
    small = cv2.resize(y, None, fx=1 / shrink, fy=1 / shrink, interpolation=cv2.INTER_AREA) if shrink > 1 else y
    sigma = max(chip / shrink, 1.0)
    mean = cv2.GaussianBlur(small, (0, 0), sigma)
    var = cv2.GaussianBlur(small * small, (0, 0), sigma) - mean * mean
    busy = np.clip(np.sqrt(np.clip(var, 0.0, None)) / texture_ref, 0.0, 1.0)
    mask = cv2.GaussianBlur(1.0 + texture_boost * busy, (0, 0), 2.0 * sigma)
    return cv2.resize(mask, (y.shape[1], y.shape[0]), interpolation=cv2.INTER_LINEAR)


def _apply(rgb: np.ndarray, delta: np.ndarray, gain: float) -> np.ndarray:
    out = rgb.astype(np.float32) + gain * delta[..., None]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _mse(a: np.ndarray, b: np.ndarray) -> float:
    d = a.astype(np.float32) - b.astype(np.float32)
    return float(np.mean(d * d))


def fit_gain(rgb: np.ndarray, delta: np.ndarray, target_psnr: float, max_gain: float) -> float:
    """The gain that makes PSNR(rgb, marked) come out at `target_psnr` (clipping included), capped.

    Starts from the no-clipping estimate and corrects it a few times on a subsample, because clipping
    at 0/255 removes part of the change (and so part of the PSNR cost).
    """
    target_mse = 255.0**2 / 10.0 ** (target_psnr / 10.0)
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65536)))
    sub_rgb = rgb[::step, ::step]
    sub_delta = delta[::step, ::step]
    power = float(np.mean(sub_delta * sub_delta))
    if power <= 0:
        return 0.0
    gain = min(max_gain, np.sqrt(max(target_mse - 1.0 / 12.0, 1e-6) / power))
    for _ in range(4):
        mse = _mse(_apply(sub_rgb, sub_delta, gain), sub_rgb)
        if mse <= 0:
            break
        gain = min(max_gain, gain * float(np.sqrt(target_mse / mse)))
    return gain


def add_pattern(
    rgb: np.ndarray, pattern: np.ndarray, *, mask: np.ndarray, target_psnr: float, min_psnr: float, max_amplitude: float
) -> np.ndarray:
    """Return rgb + gain * mask * pattern on all three channels, with PSNR >= min_psnr guaranteed."""
    delta = pattern * mask
    peak = float(np.max(np.abs(delta))) or 1.0
    gain = fit_gain(rgb, delta, target_psnr, max_gain=max_amplitude / peak)
    out = _apply(rgb, delta, gain)
    # The subsampled fit can overshoot by a hair; the floor is a promise, so check on every pixel.
    floor_mse = 255.0**2 / 10.0 ** (min_psnr / 10.0)
    while _mse(out, rgb) > floor_mse and gain > 1e-3:
        gain *= 0.95
        out = _apply(rgb, delta, gain)
    return out
