"""The contract with training: a LoRA the real trainer made (tiny preset, a few steps, on uploads that
passed the gate) generates, and both of its export formats load into the base pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mimicsafe.context import Instance, open_instance
from mimicsafe.db.models import LoraModel
from mimicsafe.generation import GenerationConfig, generate
from mimicsafe.jobs import build_queue
from mimicsafe.provenance.verify import verify_image
from mimicsafe.settings import load_settings
from tests.generation.studio import QUICK
from tests.training.conftest import _make_studio, drain


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Instance, int]]:
    from mimicsafe.training import service

    root = tmp_path_factory.mktemp("trained-lora")
    with pytest.MonkeyPatch.context() as patch:
        import os

        for variable in [v for v in os.environ if v.startswith("MIMICSAFE_")]:
            patch.delenv(variable)
        instance = open_instance(load_settings(home=root / "home"))
    studio = _make_studio(instance, root)
    studio.upload("alice", 2, seed=0)
    queue = build_queue(instance)
    job = service.submit_training(instance=instance, queue=queue, username="alice", actor="alice", preset="tiny",
                                  steps=3)
    drain(queue)
    with instance.transaction() as session:
        model = session.query(LoraModel).filter_by(job_id=job.id).one()
        model_id = model.id
    yield instance, model_id
    instance.close()


def test_a_trained_lora_generates_and_verifies(trained: tuple[Instance, int]) -> None:
    instance, model_id = trained
    [output] = generate(instance=instance, actor="alice", username="alice", model_id=model_id,
                        config=GenerationConfig(prompt="alice style, a cat", seed=3, sheet="turnaround", **QUICK))
    report = verify_image(instance=instance, data=output.png)
    assert report.generation is not None and report.generation.public_id == output.public_id
    assert report.methods == ("c2pa", "watermark", "fingerprint")


def test_both_export_formats_load(trained: tuple[Instance, int], tmp_path: Path) -> None:
    from mimicsafe.generation.pipeline import DEFAULT_PIPELINES, denoise, lora_attached

    instance, model_id = trained
    with instance.transaction() as session:
        model = session.get(LoraModel, model_id)
        assert model is not None
        files = {"diffusers": instance.blobs.get(model.blob_sha256),
                 "kohya": instance.blobs.get(model.provenance["kohya_blob_sha256"])}

    def render(pipe) -> np.ndarray:  # type: ignore[no-untyped-def]
        return denoise(pipe, prompts=["a cat"], negative="", seeds=[1], steps=2, guidance=1.0, width=64, height=64,
                       on_step=lambda: None, cancelled=lambda: False)[0].astype(int)

    renders = {}
    with DEFAULT_PIPELINES.borrow(instance.settings) as pipe:
        renders["base"] = render(pipe)
        for name, data in files.items():
            with lora_attached(pipe, data, scale=1.0, adapter_name=f"trained_{name}"):
                renders[name] = render(pipe)
    # Three training steps move the render only a little (about 0.1 grey levels on average), but they move it.
    assert np.abs(renders["diffusers"] - renders["base"]).mean() > 0.02
    assert np.abs(renders["diffusers"] - renders["kohya"]).max() <= 2  # the same LoRA in two key formats
