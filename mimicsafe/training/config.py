"""The typed training config, the presets that fill it, and the library versions saved beside it.

A preset is a TOML file in `configs/presets/NAME.toml` whose `[training]` table overrides the defaults of
`TrainingConfig` (an unknown key is an error naming it). The resolved config is stored in the job row,
written into the LoRA file's metadata and saved beside the checkpoint, always with `library_versions()`.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Literal, get_args

from mimicsafe.settings import REPO_ROOT

PRESETS_DIR = REPO_ROOT / "configs" / "presets"
PRESET_NAMES = ("tiny", "sd15", "sdxl")
# Prodigy estimates the step size itself; the learning rate only scales it (kohya's guidance: 1.0).
PRODIGY_MIN_LR = 0.1

ModelFamily = Literal["tiny", "sd15", "sdxl"]
Optimizer = Literal["adamw", "adamw8bit", "prodigy"]
Scheduler = Literal["constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial"]
Precision = Literal["auto", "no", "fp16", "bf16"]
Targets = Literal["kohya", "attention"]
TimestepSampling = Literal["uniform", "style"]

_VERSIONED = ("torch", "diffusers", "transformers", "peft", "accelerate", "safetensors", "mimicsafe")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainingConfig:
    """Everything that decides what a training run computes. Same config + same data + same seed → same LoRA."""

    # The model ------------------------------------------------------------------------------------
    model_family: ModelFamily = field(default="sd15", metadata=_help(
        "tiny: the built-in model; sd15/sdxl: the base model configured in MIMICSAFE_BASE_MODEL, which must be "
        "of that family"))
    resolution: int = field(default=512, metadata=_help("Bucket area is at most resolution² pixels."))
    bucket_step: int = field(default=64, metadata=_help("Bucket sides are multiples of this many pixels."))
    # The LoRA ---------------------------------------------------------------------------------------
    rank: int = field(default=16, metadata=_help("LoRA rank (network_dim) of the linear layers."))
    alpha: float = field(default=8.0, metadata=_help("LoRA alpha (network_alpha); the update is scaled by alpha/rank."))
    targets: Targets = field(default="kohya", metadata=_help(
        "kohya: every linear and 1×1 conv layer of the transformer blocks (attention, feed-forward, proj_in/out); "
        "attention: only to_q/to_k/to_v/to_out.0, as diffusers' example script"))
    conv_rank: int = field(default=0, metadata=_help("Rank of LoRA on the 3×3 convolutions (LoCon); 0 = off."))
    conv_alpha: float = field(default=1.0, metadata=_help("Alpha of the conv LoRA layers."))
    train_text_encoder: bool = field(default=False, metadata=_help("Also train LoRA on the (first) text encoder."))
    # The optimiser ----------------------------------------------------------------------------------
    optimizer: Optimizer = field(default="adamw", metadata=_help(
        "adamw (torch); adamw8bit needs bitsandbytes; prodigy needs prodigyopt (use learning_rate 1.0)"))
    learning_rate: float = field(default=1e-4, metadata=_help("Learning rate of the UNet LoRA."))
    text_encoder_lr: float = field(default=5e-5, metadata=_help("Learning rate of the text-encoder LoRA."))
    weight_decay: float = field(default=1e-2, metadata=_help("AdamW weight decay."))
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = field(default=1.0, metadata=_help("Gradient clipping norm; 0 = no clipping."))
    lr_scheduler: Scheduler = field(default="cosine", metadata=_help("Learning-rate schedule after warm-up."))
    lr_warmup_steps: int = field(default=50, metadata=_help("Linear warm-up steps."))
    # The loop ---------------------------------------------------------------------------------------
    max_train_steps: int = field(default=1500, metadata=_help("Optimizer steps."))
    batch_size: int = field(default=1, metadata=_help("Images per micro-batch (one bucket per batch)."))
    gradient_accumulation_steps: int = field(default=1, metadata=_help("Micro-batches per optimizer step."))
    seed: int = field(default=0, metadata=_help("Seeds data order, noise, timesteps and LoRA initialisation."))
    mixed_precision: Precision = field(default="auto", metadata=_help(
        "auto: bf16 on a GPU that has it, else fp16 on a GPU, fp32 on a CPU; no: always fp32"))
    gradient_checkpointing: bool = field(default=True, metadata=_help("Trade compute for activation memory."))
    # The loss ---------------------------------------------------------------------------------------
    min_snr_gamma: float | None = field(default=5.0, metadata=_help("min-SNR loss weighting γ; None = off."))
    noise_offset: float = field(default=0.0, metadata=_help("Per-channel offset noise strength (0 = off)."))
    timestep_sampling: TimestepSampling = field(default="uniform", metadata=_help(
        "uniform; style: biased toward high noise levels, where composition and palette are decided"))
    # Captions ---------------------------------------------------------------------------------------
    trigger_word: str = field(default="{artist} style", metadata=_help(
        "Prepended to every caption; {artist} is the artist's username."))
    default_caption: str = field(default="artwork", metadata=_help(
        "Caption of an image that has none (the trigger word is still prepended)."))
    shuffle_tags: bool = field(default=True, metadata=_help("Shuffle comma-separated tags each time."))
    keep_tokens: int = field(default=1, metadata=_help("Leading tags never shuffled (the trigger word is one)."))
    caption_dropout_rate: float = field(default=0.05, metadata=_help("Probability of training with an empty caption."))
    clip_skip: int = field(default=1, metadata=_help("1 = last text-encoder layer; 2 = the one before it."))
    # Caches -----------------------------------------------------------------------------------------
    cache_latents: bool = field(default=True, metadata=_help("Encode each image once (keyed by content, size, model)."))
    cache_text_embeddings: bool = field(default=True, metadata=_help("Encode each caption once (frozen encoder only)."))
    # Samples and checkpoints ------------------------------------------------------------------------
    sample_every_steps: int = field(default=250, metadata=_help("Fixed-seed sample images every N steps; 0 = off."))
    sample_prompts: tuple[str, ...] = ("{trigger}, portrait", "{trigger}, landscape")
    sample_seed: int = 1234
    sample_inference_steps: int = 20
    checkpoint_every_steps: int = field(default=100, metadata=_help("Resumable checkpoint every N steps."))

    def __post_init__(self) -> None:
        self._check_literals()
        positive = ("resolution", "bucket_step", "rank", "max_train_steps", "batch_size",
                    "gradient_accumulation_steps", "sample_inference_steps", "checkpoint_every_steps", "clip_skip")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be at least 1, got {getattr(self, name)}")
        for name in ("lr_warmup_steps", "conv_rank", "sample_every_steps", "keep_tokens", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: must not be negative, got {getattr(self, name)}")
        for name in ("alpha", "learning_rate", "text_encoder_lr", "adam_epsilon"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: must be positive, got {getattr(self, name)}")
        if self.resolution % self.bucket_step:
            raise ValueError(f"resolution: {self.resolution} is not a multiple of bucket_step {self.bucket_step}")
        if self.bucket_step % 8:
            raise ValueError(f"bucket_step: must be a multiple of 8 (the VAE's scale), got {self.bucket_step}")
        if not 0 <= self.caption_dropout_rate < 1:
            raise ValueError(f"caption_dropout_rate: must be in [0, 1), got {self.caption_dropout_rate}")
        if self.min_snr_gamma is not None and self.min_snr_gamma <= 0:
            raise ValueError(f"min_snr_gamma: must be positive or None, got {self.min_snr_gamma}")
        if not 0 <= self.noise_offset <= 1:
            raise ValueError(f"noise_offset: must be in [0, 1], got {self.noise_offset}")
        if self.lr_warmup_steps >= self.max_train_steps and self.lr_scheduler != "constant":
            raise ValueError(f"lr_warmup_steps: {self.lr_warmup_steps} leaves no steps of the "
                             f"{self.max_train_steps} after warm-up")
        if self.train_text_encoder and self.cache_text_embeddings:
            raise ValueError("cache_text_embeddings: cannot cache text embeddings while training the text encoder; "
                             "set one of them to false")
        if self.optimizer == "prodigy":
            rates = {"learning_rate": self.learning_rate}
            if self.train_text_encoder:
                rates["text_encoder_lr"] = self.text_encoder_lr
            for name, rate in rates.items():
                if rate < PRODIGY_MIN_LR:
                    raise ValueError(f"{name}: Prodigy finds its own step size and multiplies it by this rate, so "
                                     f"use 1.0 (at least {PRODIGY_MIN_LR}); {rate} would train almost nothing")
        if self.model_family == "sdxl" and self.train_text_encoder:
            raise ValueError("train_text_encoder: SDXL training here is UNet-only")
        if "{artist}" in self.default_caption:
            raise ValueError("default_caption: use the trigger_word for the artist's name")

    def _check_literals(self) -> None:
        for name, literal in _CHOICES.items():
            value = getattr(self, name)
            if value not in get_args(literal):
                raise ValueError(f"{name}: {value!r} is not one of {', '.join(get_args(literal))}")

    # Conversion -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sample_prompts"] = list(self.sample_prompts)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s): {', '.join(unknown)}")
        values = dict(data)
        if "sample_prompts" in values:
            values["sample_prompts"] = tuple(values["sample_prompts"])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainingConfig:
        return TrainingConfig.from_dict({**self.to_dict(), **changes})

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


_CHOICES: dict[str, Any] = {
    "model_family": ModelFamily, "optimizer": Optimizer, "lr_scheduler": Scheduler,
    "mixed_precision": Precision, "targets": Targets, "timestep_sampling": TimestepSampling,
}


def load_preset(name: str, *, presets_dir: Path | None = None, **overrides: Any) -> TrainingConfig:
    """The preset's config, with `overrides` (e.g. `max_train_steps=`) applied on top."""
    folder = presets_dir or PRESETS_DIR
    path = folder / f"{name}.toml"
    if not path.is_file():
        available = sorted(p.stem for p in folder.glob("*.toml"))
        raise ValueError(f"preset {name!r} does not exist; choose from {', '.join(available) or 'none'}")
    with path.open("rb") as handle:
        table = tomllib.load(handle).get("training", {})
    try:
        return TrainingConfig.from_dict({**table, **{k: v for k, v in overrides.items() if v is not None}})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"preset {name}: {exc}") from exc


def library_versions(packages: Sequence[str] = _VERSIONED) -> dict[str, str]:
    """The installed version of each of `packages` ("not installed" when absent), for provenance records."""
    versions = {}
    for name in packages:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
