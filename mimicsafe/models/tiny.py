"""The built-in tiny Stable-Diffusion-shaped model, made in code from a seed.

Why it exists: a fresh machine with no weights must still run the whole product (upload → train a
LoRA → generate → verify) in one command, and the tests must exercise the real diffusers code paths.
So this is the same architecture as Stable Diffusion 1.5 — a VAE, a CLIP text encoder, a UNet with
cross-attention transformer blocks — only a few hundred thousand parameters wide, with random weights.
Its images are placeholders (coloured noise); the UI says so.

Shapes, chosen so that 64×64 px images work and a LoRA trains on a CPU in seconds:
- VAE with two levels → one 2× downsample: 64 px images ↔ 4×32×32 latents (`vae_scale_factor` 2).
- UNet on 32×32 latents, channels (32, 64), attention at the 16×16 level and in the mid block. Every
  `BasicTransformerBlock` has `attn1`/`attn2` with `to_q`/`to_k`/`to_v`/`to_out.0` and a
  feed-forward `ff.net.0.proj`/`ff.net.2`: the linear layers kohya-style LoRA training targets.
- CLIP text encoder: width 32 (= the UNet's cross-attention width), 2 layers, 77 positions, the
  vocabulary of `tiny_vocab`.

Modelled on the `get_dummy_components` of diffusers' StableDiffusionPipeline fast tests, seeded
before each component so that one component's size never changes another's weights.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    SchedulerMixin,
    UNet2DConditionModel,
)

# From its module, not `diffusers`: the package root's lazy imports show type checkers a dummy class.
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import StableDiffusionPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from mimicsafe.models.tiny_vocab import BOS_TOKEN, EOS_TOKEN, tiny_vocab_and_merges

TINY_IMAGE_SIZE = 64
"""Native image size of the tiny model in pixels (any multiple of 8 works; this is its sample size)."""

MODEL_MAX_LENGTH = 77
"""Token positions of every Stable Diffusion text encoder (and so of the tiny one)."""

CROSS_ATTENTION_DIM = 32

# The noise schedule of Stable Diffusion 1.x/2.x/XL. Inference and training schedulers share it.
SD_NOISE_SCHEDULE: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "steps_offset": 1,
    "timestep_spacing": "leading",
}


def build_tiny_tokenizer() -> CLIPTokenizer:
    """A CLIPTokenizer over the tiny local vocabulary, padded/truncated to 77 tokens.

    transformers 5's CLIPTokenizer takes the vocabulary and merges as objects (`vocab=`, `merges=`),
    as its own tests do; a `vocab_file=` keyword would be ignored and leave a 3-token vocabulary that
    maps every word to the unknown token. Build from objects, never from a file path keyword.
    """
    vocab, merges = tiny_vocab_and_merges()
    return CLIPTokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # (left, right) pairs, as tokenizers' BPE wants them
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        model_max_length=MODEL_MAX_LENGTH,
    )


def build_tiny_unet(seed: int = 0) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    return UNet2DConditionModel(
        sample_size=TINY_IMAGE_SIZE // 2,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        mid_block_type="UNetMidBlock2DCrossAttn",
        cross_attention_dim=CROSS_ATTENTION_DIM,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def build_tiny_vae(seed: int = 0) -> AutoencoderKL:
    torch.manual_seed(seed)
    return AutoencoderKL(
        sample_size=TINY_IMAGE_SIZE,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=8,
        scaling_factor=0.18215,
    )


def build_tiny_text_encoder(tokenizer: CLIPTokenizer, seed: int = 0) -> CLIPTextModel:
    """A 2-layer CLIP text encoder whose embedding table covers every id of `tokenizer`."""
    torch.manual_seed(seed)
    config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=CROSS_ATTENTION_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MODEL_MAX_LENGTH,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        projection_dim=CROSS_ATTENTION_DIM,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def build_inference_scheduler() -> DPMSolverMultistepScheduler:
    """DPM-Solver++ (2M): good images in 20–25 steps, deterministic, the usual default for SD 1.5."""
    return DPMSolverMultistepScheduler(**SD_NOISE_SCHEDULE)


def training_noise_scheduler(scheduler: SchedulerMixin) -> DDPMScheduler:
    """The DDPM scheduler a trainer adds noise with, on the same noise schedule as `scheduler`.

    Works for any base model: pass `pipe.scheduler`. Training always uses DDPM's `add_noise` and
    timesteps in [0, num_train_timesteps), whatever sampler the pipeline infers with.
    """
    return DDPMScheduler.from_config(scheduler.config)  # type: ignore[attr-defined]  # set by ConfigMixin


def build_tiny_components(seed: int = 0) -> dict[str, Any]:
    """The components of a `StableDiffusionPipeline`, with seeded random weights.

    Same seed → bit-identical weights. The safety checker, feature extractor and image encoder are
    None: the tiny model has none, and the pipeline is built with `requires_safety_checker=False`.
    """
    tokenizer = build_tiny_tokenizer()
    return {
        "unet": build_tiny_unet(seed),
        "vae": build_tiny_vae(seed),
        "text_encoder": build_tiny_text_encoder(tokenizer, seed),
        "tokenizer": tokenizer,
        "scheduler": build_inference_scheduler(),
        "safety_checker": None,
        "feature_extractor": None,
        "image_encoder": None,
    }


def build_tiny_pipeline(seed: int = 0, device: str | torch.device = "cpu") -> StableDiffusionPipeline:
    """The tiny model as a ready `StableDiffusionPipeline` on `device` (float32, progress bar off)."""
    pipe = StableDiffusionPipeline(**build_tiny_components(seed), requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)
