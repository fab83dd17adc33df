"""Generation of reference images and sheets in an artist's style (see `service.generate`).

Importing this package does not import torch: the pipeline module is loaded on the first generation.
"""

from mimicsafe.generation.config import SHEET_KINDS, GenerationConfig, SheetKind
from mimicsafe.generation.errors import GenerationCancelled
from mimicsafe.generation.service import GeneratedImage, generate, latest_model_id

__all__ = [
    "SHEET_KINDS",
    "GeneratedImage",
    "GenerationCancelled",
    "GenerationConfig",
    "SheetKind",
    "generate",
    "latest_model_id",
]
