"""It learns: after a few hundred steps on one artist's palette, samples move toward that palette.

The tiny model's VAE has random weights, so decoded pixels are not a faithful picture of what the UNet
learned. The property is measured where the UNet works: the per-channel statistics of the latents it
generates, against those of the artist's images encoded by the same VAE.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from mimicsafe.models.tiny import build_tiny_pipeline
from mimicsafe.settings import load_settings
from mimicsafe.training.base import load_training_base
from mimicsafe.training.buckets import Bucket, prepare
from mimicsafe.training.config import load_preset
from mimicsafe.training.manifest import TrainingItem
from mimicsafe.training.trainer import LoraTrainer
from tests.training.conftest import PALETTES, palette_image

PROMPT = "alice style, artwork"


def _latent_stats(pipe, seeds: range) -> torch.Tensor:
    latents = []
    for seed in seeds:
        out = pipe(PROMPT, height=64, width=64, num_inference_steps=12, output_type="latent",
                   generator=torch.Generator().manual_seed(seed))
        latents.append(out.images[0])
    stacked = torch.stack(latents)
    return torch.cat([stacked.mean(dim=(0, 2, 3)), stacked.std(dim=(0, 2, 3))])


@pytest.mark.slow
def test_a_palette_is_learned(tmp_path: Path) -> None:
    items = []
    for i in range(8):
        rgb = palette_image(PALETTES["alice"], i, (64, 64))
        items.append(TrainingItem(i + 1, hashlib.sha256(rgb.tobytes()).hexdigest(), f"{i}.png", None, rgb))
    config = load_preset("tiny", max_train_steps=300, batch_size=4, rank=8, alpha=8.0, learning_rate=2e-3,
                         lr_scheduler="cosine", lr_warmup_steps=20, sample_every_steps=0, checkpoint_every_steps=1000,
                         caption_dropout_rate=0.0)
    base = load_training_base(load_settings(home=tmp_path / "home"), "tiny")
    LoraTrainer(config=config, base=base, items=items, artist="alice", work_dir=tmp_path / "work",
                cache_dir=None, device="cpu").run()

    plain = build_tiny_pipeline()
    with torch.no_grad():
        encoded = torch.stack([plain.vae.encode(torch.from_numpy(prepare(it.rgb, Bucket(64, 64)).pixels)[None])
                               .latent_dist.mean[0] for it in items]) * plain.vae.config.scaling_factor
    target = torch.cat([encoded.mean(dim=(0, 2, 3)), encoded.std(dim=(0, 2, 3))])
    base.pipe.unet.eval()
    with_lora = _latent_stats(base.pipe, range(6))
    without = _latent_stats(plain, range(6))
    distance_with = (with_lora - target).norm().item()
    distance_without = (without - target).norm().item()
    assert distance_with < 0.5 * distance_without, (distance_with, distance_without)
