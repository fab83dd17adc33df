"""Base models: the built-in tiny Stable-Diffusion-shaped model and offline loading of real ones.

Importing this package imports torch, diffusers and transformers (several seconds): import it inside
the functions that load or run a model, not at the top of modules the CLI or the UI import at start-up.
"""

from mimicsafe.models.loading import (
    Kind,
    ModelLoadError,
    build_random_sd15_pipeline,
    check_tokenizer,
    configs_dir,
    detect_checkpoint_kind,
    load_base_pipeline,
    model_config_dir,
)
from mimicsafe.models.tiny import (
    MODEL_MAX_LENGTH,
    SD_NOISE_SCHEDULE,
    TINY_IMAGE_SIZE,
    build_tiny_components,
    build_tiny_pipeline,
    build_tiny_tokenizer,
    training_noise_scheduler,
)

__all__ = [
    "MODEL_MAX_LENGTH",
    "SD_NOISE_SCHEDULE",
    "TINY_IMAGE_SIZE",
    "Kind",
    "ModelLoadError",
    "build_random_sd15_pipeline",
    "build_tiny_components",
    "build_tiny_pipeline",
    "build_tiny_tokenizer",
    "check_tokenizer",
    "configs_dir",
    "detect_checkpoint_kind",
    "load_base_pipeline",
    "model_config_dir",
    "training_noise_scheduler",
]
