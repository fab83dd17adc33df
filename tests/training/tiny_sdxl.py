"""A tiny SDXL-shaped pipeline made in code (as diffusers' own SDXL fast tests build theirs): two CLIP
text encoders whose penultimate layers are concatenated, pooled embeddings and `text_time` added
conditions in the UNet. Random weights; it exists so that the trainer's SDXL branch runs in tests."""

from __future__ import annotations

import torch
from diffusers import UNet2DConditionModel
from diffusers.pipelines.stable_diffusion_xl.pipeline_stable_diffusion_xl import StableDiffusionXLPipeline
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from mimicsafe.models.tiny import (
    MODEL_MAX_LENGTH,
    build_inference_scheduler,
    build_tiny_tokenizer,
    build_tiny_vae,
)

WIDTH = 32  # each text encoder; the UNet's cross-attention sees both side by side
TIME_EMBED = 8


def _text_config(tokenizer, layers: int) -> CLIPTextConfig:
    return CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=WIDTH, intermediate_size=64, num_hidden_layers=layers,
                          num_attention_heads=4, max_position_embeddings=MODEL_MAX_LENGTH, hidden_act="gelu",
                          projection_dim=WIDTH, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def build_tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=TIME_EMBED, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * TIME_EMBED + WIDTH, cross_attention_dim=2 * WIDTH,
        norm_num_groups=8)
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(_text_config(tokenizer, 2))
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(tokenizer, 2))
    pipe = StableDiffusionXLPipeline(vae=build_tiny_vae(seed), text_encoder=text_encoder,
                                     text_encoder_2=text_encoder_2, tokenizer=tokenizer,
                                     tokenizer_2=build_tiny_tokenizer(), unet=unet,
                                     scheduler=build_inference_scheduler())
    pipe.set_progress_bar_config(disable=True)
    return pipe
