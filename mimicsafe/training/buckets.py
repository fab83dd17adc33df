"""Aspect-ratio buckets without upscaling, and the order batches are drawn in.

An image keeps its aspect ratio: its bucket is its own size, scaled down (never up) to at most
`resolution²` pixels and at most `2 × resolution` on a side, then rounded down to multiples of `step`.
It is resized to cover the bucket and centre-cropped (the crop is at most `step - 1` pixels a side
plus what the side limit takes). A batch holds images of one bucket.

The order is a pure function of (seed, epoch): the checkpoint needs only the micro-batch counter to
continue exactly where a run stopped.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True, order=True)
class Bucket:
    width: int
    height: int

    def __str__(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True)
class Prepared:
    """An image ready for the VAE, with what SDXL's size conditioning needs."""

    pixels: np.ndarray  # (3, H, W) float32 in [-1, 1]
    original_size: tuple[int, int]  # (height, width) before resizing
    crop_top_left: tuple[int, int]  # (top, left) in the resized image


def bucket_for(width: int, height: int, *, resolution: int, step: int) -> Bucket:
    """The bucket of an image of this size; raises ValueError if it is smaller than one step."""
    scale = min(1.0, math.sqrt(resolution * resolution / (width * height)))
    bucket_w = min(int(width * scale) // step * step, 2 * resolution)
    bucket_h = min(int(height * scale) // step * step, 2 * resolution)
    if bucket_w < step or bucket_h < step:
        raise ValueError(f"{width}x{height} px is too small to train on at this preset: both sides must be at "
                         f"least {step} px (images are never upscaled)")
    return Bucket(bucket_w, bucket_h)


def prepare(rgb: np.ndarray, bucket: Bucket) -> Prepared:
    """Resize `rgb` (H, W, 3 uint8) down to cover the bucket, centre-crop it, scale to [-1, 1]."""
    height, width = rgb.shape[:2]
    scale = max(bucket.width / width, bucket.height / height)
    if scale > 1.0:
        raise ValueError(f"bucket {bucket} is larger than the {width}x{height} image (no upscaling)")
    new_w, new_h = max(bucket.width, round(width * scale)), max(bucket.height, round(height * scale))
    image = Image.fromarray(rgb)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.LANCZOS)
    top, left = (new_h - bucket.height) // 2, (new_w - bucket.width) // 2
    image = image.crop((left, top, left + bucket.width, top + bucket.height))
    pixels = np.asarray(image, dtype=np.float32).transpose(2, 0, 1) / 127.5 - 1.0
    return Prepared(np.ascontiguousarray(pixels), (height, width), (top, left))


class BatchOrder:
    """Micro-batches of item indices, one bucket each, reshuffled every epoch from (seed, epoch)."""

    def __init__(self, buckets: Sequence[Bucket], *, batch_size: int, seed: int) -> None:
        self._by_bucket: dict[Bucket, list[int]] = {}
        for index, bucket in enumerate(buckets):
            self._by_bucket.setdefault(bucket, []).append(index)
        self._batch_size = batch_size
        self._seed = seed
        self.batches_per_epoch = sum(math.ceil(len(v) / batch_size) for v in self._by_bucket.values())
        self._cached_epoch: tuple[int, list[list[int]]] | None = None

    def epoch(self, epoch: int) -> list[list[int]]:
        if self._cached_epoch is not None and self._cached_epoch[0] == epoch:
            return self._cached_epoch[1]
        rng = random.Random(f"mimicsafe-order:{self._seed}:{epoch}")
        batches: list[list[int]] = []
        for bucket in sorted(self._by_bucket):
            indices = list(self._by_bucket[bucket])
            rng.shuffle(indices)
            batches.extend(indices[i:i + self._batch_size] for i in range(0, len(indices), self._batch_size))
        rng.shuffle(batches)
        self._cached_epoch = (epoch, batches)
        return batches

    def position(self, micro_batch: int) -> tuple[int, int]:
        """(epoch, index within the epoch) of the n-th micro-batch of the run."""
        return divmod(micro_batch, self.batches_per_epoch)

    def batch(self, micro_batch: int) -> list[int]:
        epoch, index = self.position(micro_batch)
        return self.epoch(epoch)[index]
