"""What the trainer receives: images already checked by the manifest loader (`manifest.load_items`).

Kept apart from `manifest.py` so that the trainer process does not import the gate (OpenCV, FAISS,
SQLAlchemy) only to name this type: about 55 MB of resident memory in a training worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrainingItem:
    """One image the trainer may use: decoded by the gate's safe decoder, hash-verified."""

    upload_id: int
    sha256: str
    name: str
    caption: str | None
    rgb: np.ndarray  # (H, W, 3) uint8
