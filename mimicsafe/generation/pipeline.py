"""The diffusion side of generation: the base pipeline, the artist's LoRA on it, and the denoising run.

Loading a real base model takes seconds to minutes, so each process keeps the last one it loaded
(`BasePipelines`) and lends it to one generation at a time (a lock: an attached LoRA is pipeline
state). The LoRA is attached for the run and removed afterwards, whatever happens, so the next
artist's generation starts from the clean base model.

Imports torch and diffusers: import this module inside functions, not at the top of CLI/UI modules.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors

from mimicsafe.errors import ValidationFailed
from mimicsafe.generation.errors import GenerationCancelled
from mimicsafe.settings import Settings

StepCallback = Callable[[], None]


def device_and_dtype(settings: Settings) -> tuple[str, torch.dtype]:
    """A GPU when there is one (half precision for real models), else the CPU in float32."""
    if torch.cuda.is_available():
        return "cuda", torch.float32 if settings.uses_demo_model else torch.float16
    return "cpu", torch.float32


class BasePipelines:
    """Keeps the last base pipeline this process loaded and lends it out one generation at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._pipe: Any = None

    @contextmanager
    def borrow(self, settings: Settings) -> Iterator[Any]:
        from mimicsafe.models.loading import load_base_pipeline

        key = (settings.base_model, settings.base_model_kind, settings.base_model_tokenizer)
        with self._lock:
            if self._key != key:
                self._pipe, self._key = None, None  # free the old model before loading the new one
                device, dtype = device_and_dtype(settings)
                self._pipe = load_base_pipeline(settings.base_model, kind=settings.base_model_kind,
                                                tokenizer_dir=settings.base_model_tokenizer, device=device,
                                                torch_dtype=dtype)
                self._pipe.set_progress_bar_config(disable=True)
                self._key = key
            yield self._pipe


DEFAULT_PIPELINES = BasePipelines()  # empty until the first generation: loading is not an import side effect


@contextmanager
def lora_attached(pipe: Any, lora_file: bytes, *, scale: float, adapter_name: str) -> Iterator[None]:
    """Load a diffusers-format (or kohya-format) LoRA .safetensors into `pipe` at `scale`, then remove it."""
    try:
        state_dict = load_safetensors(lora_file)
    except Exception as exc:  # safetensors raises its own error types for a corrupt header
        raise ValidationFailed(f"the LoRA file cannot be read as .safetensors: {exc}") from None
    _forget(pipe, adapter_name)  # a run that died mid-way in this process may have left it attached
    try:
        pipe.load_lora_weights(state_dict, adapter_name=adapter_name)
    except (ValueError, KeyError, RuntimeError) as exc:
        _forget(pipe, adapter_name)
        raise ValidationFailed(f"the LoRA does not fit the base model ({exc}); was it trained on another "
                               "base model?") from None
    try:
        pipe.set_adapters([adapter_name], adapter_weights=[scale])
        yield
    finally:
        _forget(pipe, adapter_name)


def _forget(pipe: Any, adapter_name: str) -> None:
    with contextlib.suppress(ValueError, KeyError):  # it never got attached
        pipe.delete_adapters(adapter_name)


def denoise(pipe: Any, *, prompts: list[str], negative: str, seeds: list[int], steps: int, guidance: float,
            width: int | None, height: int | None, on_step: StepCallback, cancelled: Callable[[], bool]
            ) -> list[np.ndarray]:
    """Run the pipeline once for a batch of prompts (one seed each); RGB uint8 arrays, one per prompt.

    `width`/`height` None: the pipeline's default, the size the base model was trained at.

    `on_step` is called after every denoising step; if `cancelled()` turns true the run stops at the
    next step with `GenerationCancelled` (the latents are not decoded, nothing is returned).
    """
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]

    def step_end(_pipe: Any, _step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        on_step()
        if cancelled():
            raise GenerationCancelled("generation cancelled")
        return tensors

    if cancelled():
        raise GenerationCancelled("generation cancelled")
    with torch.inference_mode():
        result = pipe(prompt=prompts, negative_prompt=[negative] * len(prompts) if negative else None,
                      num_inference_steps=steps, guidance_scale=guidance, width=width, height=height,
                      generator=generators, output_type="np", callback_on_step_end=step_end)
    images = np.asarray(result.images, dtype=np.float32)
    return [np.ascontiguousarray((np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)) for img in images]
