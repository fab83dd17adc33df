"""The trainer's other branches: an SDXL-shaped model (two text encoders, pooled embeddings, added time
ids) and LoRA on the text encoder. Each trains two steps; both export layouts must load with diffusers'
own `load_lora_weights` and change the model the same way."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from mimicsafe.models.tiny import build_tiny_pipeline
from mimicsafe.training import lora
from mimicsafe.training.base import BaseModel
from mimicsafe.training.config import load_preset
from mimicsafe.training.items import TrainingItem
from mimicsafe.training.trainer import LoraTrainer, TrainingResult
from tests.training.conftest import PALETTES, palette_image
from tests.training.tiny_sdxl import build_tiny_sdxl_pipeline

LATENTS = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))


def _train(base: BaseModel, tmp_path: Path, **overrides) -> TrainingResult:
    items = [TrainingItem(i, hashlib.sha256(bytes([i])).hexdigest(), f"{i}.png", "a red study",
                          palette_image(PALETTES["alice"], i, (64, 48 if i else 64))) for i in range(2)]
    config = load_preset("tiny", max_train_steps=2, learning_rate=1e-2, lr_warmup_steps=0, sample_every_steps=0,
                         checkpoint_every_steps=100, **overrides)
    return LoraTrainer(config=config, base=base, items=items, artist="alice", work_dir=tmp_path / "work",
                       cache_dir=tmp_path / "cache", device="cpu").run()


def _export(result: TrainingResult, tmp_path: Path) -> dict[str, Path]:
    paths = {}
    for fmt, convert in (("diffusers", lora.to_diffusers), ("kohya", lora.to_kohya)):
        paths[fmt] = tmp_path / f"{fmt}.safetensors"
        save_file(convert(result.parts()), str(paths[fmt]))
    return paths


def _sdxl_unet_output(pipe) -> torch.Tensor:
    with torch.no_grad():
        hidden, _, pooled, _ = pipe.encode_prompt("alice style", do_classifier_free_guidance=False)
        time_ids = torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]])
        return pipe.unet(LATENTS, torch.tensor([500]), hidden,
                         added_cond_kwargs={"text_embeds": pooled, "time_ids": time_ids}).sample


def test_sdxl_lora_trains_and_both_layouts_load_in_diffusers(tmp_path: Path) -> None:
    result = _train(BaseModel("sdxl", build_tiny_sdxl_pipeline(), "tiny-sdxl"), tmp_path)
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
    assert set(result.buckets) == {"64x64", "64x48"}  # a landscape image keeps its own bucket (SDXL time ids)

    outputs = {}
    for fmt, path in _export(result, tmp_path).items():
        pipe = build_tiny_sdxl_pipeline()
        pipe.load_lora_weights(str(path))
        outputs[fmt] = _sdxl_unet_output(pipe)
    plain = _sdxl_unet_output(build_tiny_sdxl_pipeline())
    assert torch.allclose(outputs["diffusers"], outputs["kohya"], atol=1e-5)
    assert (outputs["diffusers"] - plain).abs().max() > 1e-4


def _text_output(pipe) -> torch.Tensor:
    ids = pipe.tokenizer(["alice style, a red study"], padding="max_length", max_length=77,
                         return_tensors="pt").input_ids
    with torch.no_grad():
        return pipe.text_encoder(ids)[0]


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_text_encoder_lora_is_exported_and_loads_in_diffusers(tmp_path: Path, fmt: str) -> None:
    result = _train(BaseModel("tiny", build_tiny_pipeline(), "tiny"), tmp_path, train_text_encoder=True,
                    cache_text_embeddings=False, text_encoder_lr=1e-2)
    assert [layout.prefix for layout in result.layouts] == ["unet", "text_encoder"]
    assert any(w.abs().max() > 0 for k, w in result.weights[1].items() if "lora_B" in k)  # it trained

    path = _export(result, tmp_path)[fmt]
    pipe = build_tiny_pipeline()
    pipe.load_lora_weights(str(path))
    trained = _text_output(pipe)
    plain = _text_output(build_tiny_pipeline())
    assert (trained - plain).abs().max() > 1e-4

    # The exported text-encoder LoRA is exactly what the trainer learned: same output as the trained encoder.
    reference = build_tiny_pipeline()
    layout = result.layouts[1]
    lora.add_lora(reference.text_encoder, prefix="text_encoder",
                  linear=lora.text_encoder_targets(reference.text_encoder),
                  rank=next(iter(layout.ranks.values())), alpha=next(iter(layout.alphas.values())))
    lora.load_lora_weights(reference.text_encoder, result.weights[1])
    assert torch.allclose(_text_output(reference), trained, atol=1e-5)
