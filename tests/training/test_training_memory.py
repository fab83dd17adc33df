"""Freeing the frozen encoders after caching (the runner's memory saving) changes nothing that is trained
or sampled: the same losses, LoRA weights and sample images as a run that keeps them."""

from __future__ import annotations

import gc
import hashlib
import io
import itertools
import random
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from mimicsafe.models.tiny import build_tiny_pipeline
from mimicsafe.training.base import BaseModel
from mimicsafe.training.captions import caption_variants, training_caption
from mimicsafe.training.config import load_preset
from mimicsafe.training.items import TrainingItem
from mimicsafe.training.trainer import Hooks, LoraTrainer, Sample, StepReport, TrainingResult
from tests.training.conftest import PALETTES, palette_image
from tests.training.tiny_sdxl import build_tiny_sdxl_pipeline

CAPTIONS: list[str | None] = ["a red study, stripes", None, "a red study, blocks, warm"]


def _train(base: BaseModel, tmp_path: Path, name: str, *, free: bool, captions: list[str | None] = CAPTIONS,
           on_step: Callable[[StepReport], None] | None = None, **overrides) -> tuple[TrainingResult, list[Sample]]:
    items = [TrainingItem(i, hashlib.sha256(bytes([i])).hexdigest(), f"{i}.png", caption,
                          palette_image(PALETTES["alice"], i, (64, 64)))
             for i, caption in enumerate(captions)]
    config = load_preset("tiny", **{"max_train_steps": 4, "lr_warmup_steps": 0, "sample_every_steps": 2,
                                    "checkpoint_every_steps": 100, "caption_dropout_rate": 0.5,
                                    "sample_prompts": ["{trigger}, portrait", "{trigger}, hands"], **overrides})
    samples: list[Sample] = []
    trainer = LoraTrainer(config=config, base=base, items=items, artist="alice", work_dir=tmp_path / name / "work",
                          cache_dir=tmp_path / name / "cache", device="cpu", hooks=Hooks(on_step, samples.extend),
                          free_frozen_encoders=free)
    return trainer.run(), samples


def _png(image) -> bytes:  # noqa: ANN001
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


class _watch:  # noqa: N801  # used as a function: a step hook
    """A step hook that records whether every watched module has been garbage-collected by then."""

    def __init__(self, modules: list[torch.nn.Module]) -> None:
        self.refs = [weakref.ref(module) for module in modules]
        self.seen: list[bool] = []

    def __call__(self, report: StepReport) -> None:
        gc.collect()
        self.seen.append(all(ref() is None for ref in self.refs))


def _assert_same(kept: tuple[TrainingResult, list[Sample]], freed: tuple[TrainingResult, list[Sample]]) -> None:
    (kept_result, kept_samples), (freed_result, freed_samples) = kept, freed
    assert freed_result.losses == pytest.approx(kept_result.losses, rel=1e-5)
    for name, tensor in kept_result.weights[0].items():
        assert torch.allclose(freed_result.weights[0][name], tensor, atol=1e-6), name
    assert len(kept_samples) == 4  # two prompts, at steps 2 and 4
    assert [s.png for s in freed_samples] == [s.png for s in kept_samples]


def test_freed_encoders_train_and_sample_as_kept_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drawn: list[str] = []
    conditioning = LoraTrainer._conditioning

    def recording(self: LoraTrainer, texts: list[str]):  # noqa: ANN202
        drawn.extend(texts)
        return conditioning(self, texts)

    monkeypatch.setattr(LoraTrainer, "_conditioning", recording)
    kept_pipe = build_tiny_pipeline()
    kept = _train(BaseModel("tiny", kept_pipe, "tiny"), tmp_path, "kept", free=False, shuffle_tags=False)
    # The samples are what the plain pipeline call makes with the trained model.
    last = kept[1][-1]
    kept_pipe.unet.eval()
    image = kept_pipe(last.prompt, height=64, width=64, generator=torch.Generator().manual_seed(last.seed),
                      num_inference_steps=3).images[0]
    assert last.png == _png(image)
    pipe = build_tiny_pipeline()
    freed_while_training = _watch([pipe.text_encoder, pipe.vae.encoder])
    freed = _train(BaseModel("tiny", pipe, "tiny"), tmp_path, "freed", free=True, shuffle_tags=False,
                   on_step=freed_while_training)

    assert freed_while_training.seen == [True] * 4  # really gone while it trains: nothing holds their weights…
    assert pipe.vae.decoder is not None  # …but the samples still decode
    _assert_same(kept, freed)
    assert "" in drawn[len(drawn) // 2:]  # the freed run's dropout drew the empty caption, encoded in advance


def test_without_samples_the_decoder_goes_too_and_shuffled_tags_keep_the_text_encoder(tmp_path: Path) -> None:
    pipe = build_tiny_pipeline()
    result, samples = _train(BaseModel("tiny", pipe, "tiny"), tmp_path, "shuffled", free=True, sample_every_steps=0,
                             shuffle_tags=True)
    assert len(result.losses) == 4 and not samples
    assert pipe.vae.encoder is None and pipe.vae.decoder is None
    assert pipe.text_encoder is not None  # two captions have tags to shuffle: each step encodes its draw


def test_caption_variants_are_every_caption_a_step_can_draw() -> None:
    rng = random.Random(0)
    for caption in ("alice style, artwork", "alice style, red, stripes, warm", "solo"):
        for shuffle, keep, dropout in itertools.product((False, True), (0, 1, 2), (0.0, 0.5)):
            variants = caption_variants(caption, shuffle=shuffle, keep_tokens=keep, dropout_rate=dropout)
            drawn = {training_caption(caption, rng=rng, shuffle=shuffle, keep_tokens=keep, dropout_rate=dropout)
                     for _ in range(200)}
            if variants is None:  # only a caption with tags to shuffle has too many to list
                assert shuffle and len(drawn - {""}) > 1, (caption, keep)
            else:
                assert drawn == variants, (caption, shuffle, keep, dropout)


def test_sdxl_freed_encoders_train_and_sample_as_kept_ones(tmp_path: Path) -> None:
    # Shuffling is on (the preset's default), but the default caption "trigger, artwork" has nothing to shuffle.
    options = {"max_train_steps": 2, "sample_prompts": ["{trigger}, portrait"], "sample_inference_steps": 2,
               "captions": [None, None]}
    kept = _train(BaseModel("sdxl", build_tiny_sdxl_pipeline(), "tiny-sdxl"), tmp_path, "kept", free=False, **options)
    pipe = build_tiny_sdxl_pipeline()
    freed_while_training = _watch([pipe.text_encoder, pipe.text_encoder_2, pipe.vae.encoder])
    freed = _train(BaseModel("sdxl", pipe, "tiny-sdxl"), tmp_path, "freed", free=True, on_step=freed_while_training,
                   **options)
    assert freed_while_training.seen == [True] * 2
    assert len(freed[1]) == 1
    assert [s.png for s in freed[1]] == [s.png for s in kept[1]]
    assert freed[0].losses == pytest.approx(kept[0].losses, rel=1e-5)
