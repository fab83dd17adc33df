"""Atomic, resumable training state: one file, written beside the job and swapped in whole.

The file holds the LoRA weights, the optimizer, LR-scheduler (and fp16 grad-scaler) states, the RNG
states, the global step, the epoch and the data order, the loss history, and the SHA-256s of the
config and the dataset it belongs to. It is written to a temporary file, fsynced and renamed over the
previous checkpoint: a worker killed at any moment leaves either the old checkpoint or the new one.
It is read with `weights_only=True` (no pickled code runs).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "mimicsafe.checkpoint/1"
FILE_NAME = "checkpoint.pt"


def rng_states() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    np_state: Any = np.random.get_state()  # the legacy tuple form (legacy=True is the default)
    states: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict[str, Any]) -> None:
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, *rest = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save(directory: Path, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / FILE_NAME
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".checkpoint-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save({"format": FORMAT, **state}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return final


def load(directory: Path) -> dict[str, Any] | None:
    path = directory / FILE_NAME
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT:
        raise ValueError(f"{path.name} is not a checkpoint this version can resume (format {state.get('format')!r})")
    return state
