"""Disk caches of latents and text embeddings, reused across runs and jobs.

A latent entry is keyed by (image SHA-256, bucket, VAE fingerprint); a text entry by (caption, clip
skip, text-encoder fingerprint). Entries are `.safetensors` files written atomically (temporary file,
then rename), so a killed worker never leaves half an entry. A damaged entry is recomputed.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file


def cache_key(*parts: object) -> str:
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


class TensorCache:
    """`get`/`put` dicts of CPU tensors under `root/kind/ab/<key>.safetensors`. `root=None` disables it."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self.hits = 0
        self.misses = 0

    def _path(self, kind: str, key: str) -> Path:
        assert self.root is not None
        return self.root / kind / key[:2] / f"{key}.safetensors"

    def get(self, kind: str, key: str) -> dict[str, torch.Tensor] | None:
        if self.root is None:
            return None
        path = self._path(kind, key)
        try:
            tensors = load_file(path)
        except (FileNotFoundError, SafetensorError, OSError):
            self.misses += 1
            return None
        self.hits += 1
        return tensors

    def put(self, kind: str, key: str, tensors: dict[str, torch.Tensor]) -> None:
        if self.root is None:
            return
        path = self._path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        try:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
