"""An artist's colour palette, taken from their own accepted works by k-means in CIELAB.

Why CIELAB: distances there follow perceived colour differences (ΔE*76 is the Euclidean distance),
so clusters are colours a person would tell apart; in RGB, k-means spends clusters on dark shades
the eye barely separates. Pixels are sampled evenly from every work (each work counts the same,
whatever its size), clustered with k-means++ seeding and Lloyd iterations, and the swatches are
ordered by how much of the works they cover.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

SAMPLES_PER_IMAGE = 4000
MAX_SAMPLES = 60_000  # over all images: bounds memory and time however many works there are
WORK_SIDE = 128
ITERATIONS = 25
MIN_SHARE = 0.005  # a cluster covering less than this is noise (anti-aliasing, speckles), not a palette colour


@dataclass(frozen=True)
class Swatch:
    rgb: tuple[int, int, int]
    lab: tuple[float, float, float]
    share: float  # fraction of the sampled pixels in this cluster

    @property
    def hex(self) -> str:
        return "#{:02x}{:02x}{:02x}".format(*self.rgb)

    def to_json(self) -> dict[str, object]:
        return {"hex": self.hex, "share": round(self.share, 4), "lab": [round(v, 2) for v in self.lab]}


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 sRGB → (N, 3) float32 CIELAB (D65): L in [0, 100], a and b about [-128, 127]."""
    pixels = (rgb.reshape(-1, 1, 3).astype(np.float32) / 255.0)
    return cv2.cvtColor(pixels, cv2.COLOR_RGB2Lab).reshape(-1, 3)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab.reshape(-1, 1, 3).astype(np.float32), cv2.COLOR_Lab2RGB).reshape(-1, 3)
    return np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8)


def sample_pixels(images: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """The same number of pixels from each image (shrunk to WORK_SIDE), as (N, 3) uint8."""
    per_image = min(SAMPLES_PER_IMAGE, MAX_SAMPLES // max(len(images), 1))
    parts = []
    for rgb in images:
        scale = WORK_SIDE / max(rgb.shape[:2])
        small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else rgb
        pixels = small.reshape(-1, 3)
        if len(pixels) > per_image:
            pixels = pixels[rng.choice(len(pixels), per_image, replace=False)]
        parts.append(pixels)
    return np.concatenate(parts) if parts else np.zeros((0, 3), np.uint8)


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """k-means++ seeding then Lloyd iterations. Returns (centres, labels); fewer than k centres when
    the points hold fewer than k distinct values."""
    # 1. Seeding: each next centre drawn with probability proportional to squared distance.
    centres = [points[rng.integers(len(points))]]
    nearest = np.sum((points - centres[0]) ** 2, axis=1)
    while len(centres) < k and nearest.sum() > 1e-9:
        choice = rng.choice(len(points), p=nearest / nearest.sum())
        centres.append(points[choice])
        nearest = np.minimum(nearest, np.sum((points - points[choice]) ** 2, axis=1))
    centre_array = np.array(centres, dtype=np.float64)
    # 2. Lloyd: assign to the nearest centre, move each centre to its points' mean.
    labels = np.zeros(len(points), dtype=np.int64)
    for _ in range(ITERATIONS):
        distances = ((points[:, None, :] - centre_array[None, :, :]) ** 2).sum(axis=2)
        new_labels = distances.argmin(axis=1)
        for j in range(len(centre_array)):
            members = points[new_labels == j]
            if len(members):
                centre_array[j] = members.mean(axis=0)
        if np.array_equal(new_labels, labels):
            break
        labels = new_labels
    return centre_array, labels


def extract_palette(images: Sequence[np.ndarray], *, colours: int = 8, seed: int = 0) -> list[Swatch]:
    """The `colours` main colours of `images` (RGB uint8), most used first."""
    if colours < 1:
        raise ValueError(f"colours: must be at least 1, got {colours}")
    rng = np.random.default_rng(seed)
    pixels = sample_pixels(images, rng)
    if len(pixels) == 0:
        raise ValueError("images: need at least one image to take a palette from")
    lab = rgb_to_lab(pixels).astype(np.float64)
    centres, labels = kmeans(lab, colours, rng)
    shares = np.bincount(labels, minlength=len(centres)) / len(labels)
    rgb = lab_to_rgb(centres)
    swatches = [Swatch(rgb=tuple(int(v) for v in rgb[j]), lab=tuple(float(v) for v in centres[j]),  # type: ignore[arg-type]
                       share=float(shares[j]))
                for j in range(len(centres)) if shares[j] >= MIN_SHARE]
    return sorted(swatches, key=lambda s: -s.share)
