"""The base model a LoRA is trained on, its identity, and how it turns captions into conditioning.

The identity (`fingerprint`) of a component is the SHA-256 of its weights: it keys the latent and
text caches, so a cache made with one model is never used with another, and it is recorded in the
LoRA's metadata instead of any file path.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline

from mimicsafe.errors import ValidationFailed
from mimicsafe.models.loading import TINY_MODEL_NAME, base_model_name, load_base_pipeline
from mimicsafe.models.tiny import build_tiny_pipeline, training_noise_scheduler
from mimicsafe.settings import Settings
from mimicsafe.training.config import ModelFamily

# modelspec.architecture and kohya's ss_base_model_version for each family.
ARCHITECTURES = {"tiny": "mimicsafe-tiny/lora", "sd15": "stable-diffusion-v1/lora",
                 "sdxl": "stable-diffusion-xl-v1-base/lora"}
KOHYA_BASE_VERSIONS = {"tiny": "sd_v1", "sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}


@dataclass(frozen=True)
class Conditioning:
    """Text conditioning of a batch: the UNet's `encoder_hidden_states` and, for SDXL, pooled embeddings."""

    hidden: torch.Tensor  # (B, 77, D)
    pooled: torch.Tensor | None = None  # (B, P), SDXL only


@dataclass
class BaseModel:
    family: ModelFamily
    pipe: Any  # StableDiffusionPipeline or StableDiffusionXLPipeline
    name: str  # a model name, never a path
    _fingerprints: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def is_sdxl(self) -> bool:
        return self.family == "sdxl"

    def noise_scheduler(self) -> Any:
        return training_noise_scheduler(self.pipe.scheduler)

    def fingerprint(self, component: str) -> str:
        """SHA-256 over the named component's weights (computed once)."""
        if component not in self._fingerprints:
            digest = hashlib.sha256(component.encode())
            module = getattr(self.pipe, component)
            for name, tensor in sorted(module.state_dict().items()):
                if "lora_" in name:
                    continue  # adapters added for training are not part of the base model
                digest.update(name.replace(".base_layer", "").encode())  # peft's wrapper renames base weights
                digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            self._fingerprints[component] = digest.hexdigest()
        return self._fingerprints[component]

    def text_fingerprint(self) -> str:
        names = ["text_encoder", "text_encoder_2"] if self.is_sdxl else ["text_encoder"]
        return hashlib.sha256("".join(self.fingerprint(n) for n in names).encode()).hexdigest()

    # Text conditioning ------------------------------------------------------------------------------
    def encode_captions(self, captions: list[str], *, clip_skip: int, device: torch.device | str) -> Conditioning:
        """Conditioning as the pipelines compute it (kohya's clip_skip: 1 = last layer)."""
        if self.is_sdxl:
            return self._encode_sdxl(captions, device)
        ids = self._token_ids(self.pipe.tokenizer, captions, device)
        output = self.pipe.text_encoder(ids, output_hidden_states=clip_skip > 1)
        if clip_skip == 1:
            hidden = output[0]
        else:
            hidden = self.pipe.text_encoder.text_model.final_layer_norm(output.hidden_states[-clip_skip])
        return Conditioning(hidden)

    def _encode_sdxl(self, captions: list[str], device: torch.device | str) -> Conditioning:
        # As StableDiffusionXLPipeline.encode_prompt: penultimate layers of both encoders, side by side;
        # pooled embeddings from the second.
        ids_1 = self._token_ids(self.pipe.tokenizer, captions, device)
        ids_2 = self._token_ids(self.pipe.tokenizer_2, captions, device)
        out_1 = self.pipe.text_encoder(ids_1, output_hidden_states=True)
        out_2 = self.pipe.text_encoder_2(ids_2, output_hidden_states=True)
        hidden = torch.cat([out_1.hidden_states[-2], out_2.hidden_states[-2]], dim=-1)
        return Conditioning(hidden, out_2[0])

    @staticmethod
    def _token_ids(tokenizer: Any, captions: list[str], device: torch.device | str) -> torch.Tensor:
        return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                         return_tensors="pt").input_ids.to(device)


def load_training_base(settings: Settings, family: ModelFamily, *, device: str = "cpu") -> BaseModel:
    """The built-in tiny model for `tiny`; otherwise the configured base model, which must be of `family`."""
    if family == "tiny":
        return BaseModel("tiny", build_tiny_pipeline(seed=0, device=device), TINY_MODEL_NAME)
    if settings.base_model is None:
        raise ValidationFailed(f"preset {family} needs a base model: set MIMICSAFE_BASE_MODEL to a local "
                               f"{family} diffusers folder or .safetensors file, or use the tiny preset")
    pipe = load_base_pipeline(settings.base_model, kind=settings.base_model_kind, device=device,
                              tokenizer_dir=settings.base_model_tokenizer)
    actual: ModelFamily = "sdxl" if isinstance(pipe, StableDiffusionXLPipeline) else "sd15"
    if actual != family:
        raise ValidationFailed(f"the configured base model is {actual}, but the preset trains {family}: "
                               f"use the {actual} preset")
    return BaseModel(family, pipe, base_model_name(settings))
