"""The trainer itself: a run killed after a checkpoint and resumed equals an uninterrupted run; caches."""

from __future__ import annotations

import hashlib
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from mimicsafe.settings import load_settings
from mimicsafe.training.base import load_training_base
from mimicsafe.training.buckets import bucket_for
from mimicsafe.training.config import load_preset
from mimicsafe.training.items import TrainingItem
from mimicsafe.training.trainer import Hooks, LoraTrainer
from tests.training.conftest import PALETTES, palette_image


class SimulatedKill(BaseException):
    """Stands for SIGKILL: nothing after it runs, nothing catches it."""


def _items() -> list[TrainingItem]:
    sizes = [(48, 32), (32, 48), (40, 40)]  # three buckets, none upscaled
    items = []
    for i, size in enumerate(sizes):
        rgb = palette_image(PALETTES["alice"], i, size)
        items.append(TrainingItem(i + 1, hashlib.sha256(rgb.tobytes()).hexdigest(), f"a{i}.png",
                                  "red, blocks, stripes" if i else None, rgb))
    return items


def _trainer(tmp_path: Path, work: str, hooks: Hooks | None = None, **overrides) -> LoraTrainer:
    settings = {"resolution": 32, "bucket_step": 8, "max_train_steps": 8, "checkpoint_every_steps": 3,
                "batch_size": 2, "sample_every_steps": 0, **overrides}
    config = load_preset("tiny", **settings)
    base = load_training_base(load_settings(home=tmp_path / "home"), "tiny")
    return LoraTrainer(config=config, base=base, items=_items(), artist="alice", work_dir=tmp_path / work,
                       cache_dir=tmp_path / "cache", device="cpu", hooks=hooks)


# Each optimizer the config offers (8-bit AdamW and Prodigy come with the dev install), with its state in
# the checkpoint. Prodigy adapts its own step size; kohya's guidance is learning_rate 1.0.
OPTIMIZERS = [{"optimizer": "adamw"}, {"optimizer": "adamw8bit"}, {"optimizer": "prodigy", "learning_rate": 1.0}]


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=[o["optimizer"] for o in OPTIMIZERS])
def test_resume_after_a_kill_equals_an_uninterrupted_run(tmp_path: Path, optimizer: dict) -> None:
    full = _trainer(tmp_path, "full", **optimizer).run()

    def kill_at_5(report) -> None:  # type: ignore[no-untyped-def]
        if report.step == 5:
            raise SimulatedKill()

    with pytest.raises(SimulatedKill):
        _trainer(tmp_path, "killed", Hooks(on_step=kill_at_5), **optimizer).run()
    resumed = _trainer(tmp_path, "killed", **optimizer).run()  # a new process: fresh model, same folder

    assert resumed.resumed_from == 3 and resumed.steps == full.steps == 8
    assert len(resumed.losses) == len(full.losses) == 8
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=1e-4, atol=1e-6)
    for mine, theirs in zip(resumed.weights[0].values(), full.weights[0].values(), strict=True):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)
    assert full.epochs == resumed.epochs == 3  # three buckets → three batches an epoch; 8 steps start a third
    assert any(w.abs().max() > 0 for k, w in full.weights[0].items() if "lora_B" in k)  # the optimizer trained


def test_latents_are_cached_across_runs_and_buckets_never_upscale(tmp_path: Path) -> None:
    first = _trainer(tmp_path, "one", max_train_steps=1, lr_scheduler="constant", lr_warmup_steps=0)
    first.run()
    assert first.cache.misses >= 3 and first.cache.hits == 0
    second = _trainer(tmp_path, "two", max_train_steps=1, lr_scheduler="constant", lr_warmup_steps=0)
    second.run()
    assert second.cache.hits >= 3 and second.cache.misses == 0  # no VAE or text encoding the second time
    for item in _items():
        height, width = item.rgb.shape[:2]
        bucket = bucket_for(width, height, resolution=32, step=8)
        assert bucket.width <= width and bucket.height <= height
    assert bucket_for(2000, 500, resolution=64, step=16).width <= 128
    with pytest.raises(ValueError, match="too small"):
        bucket_for(12, 200, resolution=64, step=16)


def test_a_nan_loss_stops_the_run_with_an_explanation(tmp_path: Path) -> None:
    from mimicsafe.training.errors import TrainingDiverged

    trainer = _trainer(tmp_path, "nan", learning_rate=1e30, lr_scheduler="constant", lr_warmup_steps=0,
                       max_grad_norm=0.0, adam_epsilon=1e-30)
    with pytest.raises(TrainingDiverged, match="diverged at step"):
        trainer.run()


def test_fp16_overflows_are_left_to_the_loss_scaler_but_not_forever(tmp_path: Path) -> None:
    """With fp16 loss scaling an overflowing step is normal: the GradScaler skips it and lowers the scale.
    Only a run that keeps overflowing has diverged. (fp16 needs a GPU, so `_guard` is called directly.)"""
    from mimicsafe.training.errors import TrainingDiverged
    from mimicsafe.training.trainer import MAX_SCALER_SKIPS

    trainer = _trainer(tmp_path, "guard")
    scheduler, scaler = types.SimpleNamespace(get_last_lr=lambda: [1e-4]), torch.amp.GradScaler("cpu")
    for step in range(1, MAX_SCALER_SKIPS + 1):
        trainer._guard(step, 0.5, float("inf"), scheduler, scaler)  # skipped by the scaler, not an error
    trainer._guard(MAX_SCALER_SKIPS + 1, 0.5, 1.0, scheduler, scaler)  # a good step resets the count
    for step in range(MAX_SCALER_SKIPS):
        trainer._guard(step, 0.5, float("inf"), scheduler, scaler)
    with pytest.raises(TrainingDiverged, match="gradient norm inf"):
        trainer._guard(99, 0.5, float("inf"), scheduler, scaler)
    with pytest.raises(TrainingDiverged, match="gradient norm inf"):  # without a scaler: at once
        _trainer(tmp_path, "guard2")._guard(1, 0.5, float("inf"), scheduler, None)
    with pytest.raises(TrainingDiverged, match="loss nan"):  # a NaN loss is never the scaler's to skip
        _trainer(tmp_path, "guard3")._guard(1, float("nan"), 1.0, scheduler, scaler)


def test_a_checkpoint_from_the_loop_adamw_resumes_into_the_fused_one() -> None:
    """torch restores a group's saved `fused` flag; a checkpoint from before AdamW was fused must not turn
    the optimizer back into the loop implementation (which fp16's GradScaler would then call wrongly)."""
    from mimicsafe.training.trainer import load_optimizer_state

    weight = torch.nn.Parameter(torch.ones(3))
    old = torch.optim.AdamW([weight], lr=0.1)
    weight.grad = torch.ones(3)
    old.step()
    fused = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))], lr=0.1, fused=True)
    load_optimizer_state(fused, old.state_dict())
    assert fused.param_groups[0]["fused"] is True
    assert fused.param_groups[0]["lr"] == 0.1
    state = next(iter(fused.state.values()))
    torch.testing.assert_close(state["exp_avg"], next(iter(old.state.values()))["exp_avg"])
