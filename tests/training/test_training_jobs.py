"""Training jobs through the services and the queue: the dataset loader's refusals, progress, cancel,
recovery after a killed worker, provenance metadata, exports, and the wall between artists."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from sqlalchemy import func, select

from mimicsafe import keys, portfolio
from mimicsafe.db.models import AuditEntry, Dataset, LoraModel, TrainingJob, Upload
from mimicsafe.errors import NotFoundError
from mimicsafe.imaging import NamedFile
from mimicsafe.models.tiny import build_tiny_pipeline
from mimicsafe.training import runner, service
from mimicsafe.training.errors import DatasetRefused, JobConflict
from mimicsafe.training.manifest import load_items, manifest_sha256
from tests.training.conftest import drain
from tests.waiting import wait_until


def _job(instance, job_id: int) -> TrainingJob:
    with instance.transaction() as s:
        job = s.get(TrainingJob, job_id)
        assert job is not None
        return job


def _submit(studio, queue, username: str = "alice", steps: int = 3) -> TrainingJob:
    return service.submit_training(instance=studio.instance, queue=queue, username=username, actor=username,
                                   preset="tiny", steps=steps)


def _items(instance, dataset_id: int):
    with instance.transaction() as s:
        dataset = s.get(Dataset, dataset_id)
        return load_items(session=s, blobs=instance.blobs, registry=instance.registry, settings=instance.settings,
                          dataset=dataset)


# The loader --------------------------------------------------------------------------------------
def test_loader_refuses_a_tampered_blob_naming_the_item(studio, queue) -> None:
    ids = studio.upload("alice", 2)
    job = _submit(studio, queue)
    with studio.instance.transaction() as s:
        sha = s.get(Upload, ids[1]).sha256
    path = studio.instance.blobs.path_for(sha)
    path.chmod(0o600)
    data = bytearray(path.read_bytes())
    data[-20] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetRefused, match=f"upload {ids[1]} \\(alice-1.png\\).*differs"):
        _items(studio.instance, job.dataset_id)
    drain(queue)
    failed = _job(studio.instance, job.id)
    assert failed.status == "failed" and f"upload {ids[1]}" in (failed.error or "")
    with studio.instance.transaction() as s:
        assert s.scalar(select(func.count()).select_from(LoraModel)) == 0


def test_loader_refuses_items_made_ineligible_after_the_manifest(studio, queue) -> None:
    ids = studio.upload("alice", 2)
    job = _submit(studio, queue)
    assert len(_items(studio.instance, job.dataset_id)) == 2
    # bob claims alice's second image and an admin verifies it: it now matches another artist's work.
    with studio.instance.transaction() as s:
        portfolio.add_items(session=s, blobs=studio.instance.blobs, settings=studio.instance.settings,
                            username="bob", files=[NamedFile("mine.png", studio.images["alice"][1])],
                            evidence_url="https://example.org/bob", actor="bob")
    with studio.instance.transaction() as s:
        portfolio.verify_items(session=s, registry=studio.instance.registry, username="bob", admin="root",
                               note="looked at it")
    with pytest.raises(DatasetRefused, match=f"upload {ids[1]} .*another artist's verified work"):
        _items(studio.instance, job.dataset_id)


def test_loader_refuses_after_the_signing_key_is_revoked(studio, queue) -> None:
    ids = studio.upload("alice", 1)
    job = _submit(studio, queue)
    with studio.instance.transaction() as s:
        (key,) = keys.list_keys(session=s, username="alice")
        keys.revoke_key(session=s, username="alice", fingerprint=key.fingerprint, actor="alice")
    with pytest.raises(DatasetRefused, match=f"upload {ids[0]} .*revoked"):
        _items(studio.instance, job.dataset_id)


def test_loader_refuses_a_changed_manifest(studio, queue) -> None:
    studio.upload("alice", 1)
    job = _submit(studio, queue)
    with studio.instance.transaction() as s:
        dataset = s.get(Dataset, job.dataset_id)
        dataset.manifest = {**dataset.manifest, "items": dataset.manifest["items"] * 2}
    with pytest.raises(DatasetRefused, match="manifest no longer matches"):
        _items(studio.instance, job.dataset_id)


# A whole job ------------------------------------------------------------------------------------
def test_a_job_trains_and_stores_a_lora_with_path_free_provenance(trained, tmp_path: Path) -> None:
    instance, job_id = trained.studio.instance, trained.jobs["alice"]
    with instance.transaction() as s:
        view = service.get_job(session=s, job_id=job_id, actor="alice")
        (model,) = service.list_models(session=s, username="alice", actor="alice")
        dataset = s.get(Dataset, view.job.dataset_id)
        actions = list(s.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))
    assert view.job.status == "completed", view.job.error
    assert view.job.step == 3 and view.job.loss is not None and view.job.eta_seconds == 0.0
    assert view.model_id == model.id and view.queue_position is None
    assert view.sample_sha256s and instance.blobs.exists(view.sample_sha256s[0])  # samples stored with the job
    assert model.blob_sha256 != model.provenance["kohya_blob_sha256"]
    assert "training.submit" in actions and "training.complete" in actions
    assert not (runner.job_dir(instance.settings, job_id) / "checkpoint.pt").exists()
    saved = json.loads((runner.job_dir(instance.settings, job_id) / "config.json").read_text())
    assert saved["config"]["max_train_steps"] == 3 and "diffusers" in saved["library_versions"]

    path = tmp_path / "lora.safetensors"
    path.write_bytes(instance.blobs.get(model.blob_sha256))
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    assert metadata["modelspec.author"] == "alice"
    assert metadata["modelspec.trigger_phrase"] == "alice style"
    assert metadata["modelspec.architecture"] == "mimicsafe-tiny/lora"
    assert metadata["modelspec.resolution"] == "64x64" and metadata["modelspec.title"]
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_module"] == "networks.lora"
    assert metadata["ss_num_train_images"] == "2" and metadata["ss_steps"] == "3"
    assert json.loads(metadata["ss_tag_frequency"])["mimicsafe-dataset"]["alice style"] == 2
    assert metadata["mimicsafe.dataset_manifest_sha256"] == dataset.manifest_sha256 == manifest_sha256(dataset.manifest)
    assert metadata["mimicsafe.item_count"] == "2"
    assert metadata["mimicsafe.job_id"] == str(job_id)
    assert metadata["mimicsafe.gate_policy_version"] == dataset.policy_version
    assert metadata["mimicsafe.instance_id"] == service.instance_id(instance.settings)
    assert json.loads(metadata["mimicsafe.training_config"])["max_train_steps"] == 3
    assert "torch" in json.loads(metadata["mimicsafe.library_versions"])
    home = str(instance.settings.home_dir)
    for key, value in metadata.items():  # no file path of any kind, in any key
        assert home not in value and str(tmp_path) not in value and "/tmp" not in value, key
        assert ".png" not in value, key  # not even upload file names
    assert model.provenance["mimicsafe.dataset_manifest_sha256"] == dataset.manifest_sha256


def test_both_export_formats_load_in_diffusers_with_the_same_effect(trained, tmp_path: Path) -> None:
    instance = trained.studio.instance
    with instance.transaction() as s:
        (model,) = service.list_models(session=s, username="alice", actor="alice")
    latents = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(0))
    outputs = {}
    for fmt in ("diffusers", "kohya"):
        name, data = service.export_model(instance=instance, model_id=model.id, actor="alice", fmt=fmt)
        assert name.endswith(f"-{fmt}.safetensors")
        (tmp_path / name).write_bytes(data)
        with safe_open(str(tmp_path / name), framework="pt") as handle:
            keys_ = list(handle.keys())
            assert handle.metadata()["mimicsafe.format"] == fmt
        prefix = "unet." if fmt == "diffusers" else "lora_unet_"
        assert keys_ and all(k.startswith(prefix) for k in keys_)
        assert any("ff_net_0_proj" in k or "ff.net.0.proj" in k for k in keys_)  # kohya-style wide targets
        pipe = build_tiny_pipeline()
        pipe.load_lora_weights(str(tmp_path / name))
        with torch.no_grad():
            hidden = pipe.text_encoder(pipe.tokenizer(["alice style"], padding="max_length", max_length=77,
                                                      return_tensors="pt").input_ids)[0]
            outputs[fmt] = pipe.unet(latents, torch.tensor([500]), hidden).sample
    base = build_tiny_pipeline()
    with torch.no_grad():
        plain = base.unet(latents, torch.tensor([500]), hidden).sample
    assert torch.allclose(outputs["diffusers"], outputs["kohya"], atol=1e-5)
    assert (outputs["diffusers"] - plain).abs().max() > 1e-5  # the LoRA does something


def test_cancel_stops_a_running_job_and_keeps_its_checkpoint(studio, queue, background_worker) -> None:
    studio.upload("alice", 2)
    job = _submit(studio, queue, steps=200)
    wait_until(lambda: _job(studio.instance, job.id).checkpoint_step is not None, seconds=120,
               what="the job's first checkpoint", poll=0.1)
    with studio.instance.transaction() as s:
        service.cancel_job(session=s, job_id=job.id, actor="alice")
    wait_until(lambda: _job(studio.instance, job.id).status != "running", seconds=120, what="the job to stop",
               poll=0.1)
    stopped = _job(studio.instance, job.id)
    assert stopped.status == "cancelled"
    assert 5 <= stopped.step < 200
    assert (runner.job_dir(studio.instance.settings, job.id) / "checkpoint.pt").is_file()
    with studio.instance.transaction() as s:
        assert s.scalar(select(func.count()).select_from(LoraModel)) == 0
        assert "training.cancel" in set(s.scalars(select(AuditEntry.action)))


def test_a_queued_job_cancels_at_once_and_frees_the_artist(studio, queue) -> None:
    studio.upload("alice", 1)
    job = _submit(studio, queue)
    with pytest.raises(JobConflict, match=f"job {job.id}"):
        _submit(studio, queue)
    with studio.instance.transaction() as s:
        assert service.cancel_job(session=s, job_id=job.id, actor="alice").status == "cancelled"
    second = _submit(studio, queue)
    with studio.instance.transaction() as s:
        assert service.get_job(session=s, job_id=second.id, actor="alice").queue_position == 1
    drain(queue)  # the cancelled job's task is skipped, the second one runs
    assert _job(studio.instance, job.id).status == "cancelled"
    assert _job(studio.instance, second.id).status == "completed"


def test_a_killed_worker_is_resumed_from_its_checkpoint_without_a_second_model(studio, queue, monkeypatch) -> None:
    studio.upload("alice", 2)
    job = _submit(studio, queue, steps=8)

    class Killed(BaseException):
        pass

    original = runner._Progress.on_step

    def die_at_step_7(self, report):  # type: ignore[no-untyped-def]
        original(self, report)
        if report.step == 7:
            raise Killed()

    monkeypatch.setattr(runner._Progress, "on_step", die_at_step_7)
    with pytest.raises(Killed):
        drain(queue)
    monkeypatch.setattr(runner._Progress, "on_step", original)
    interrupted = _job(studio.instance, job.id)
    assert interrupted.status == "running" and interrupted.checkpoint_step == 5
    # The process "died": its worker id now names a process that does not exist.
    with studio.instance.transaction() as s:
        s.get(TrainingJob, job.id).worker = f"{runner.socket.gethostname()}:999999999"
    assert runner.recover_interrupted_jobs(studio.instance) == [job.id]
    queue.enqueue("train_lora", job.id)
    queue.enqueue("train_lora", job.id)  # a duplicate delivery must not train twice
    drain(queue)
    done = _job(studio.instance, job.id)
    assert done.status == "completed" and done.step == 8
    with studio.instance.transaction() as s:
        assert s.scalar(select(func.count()).select_from(LoraModel).where(LoraModel.job_id == job.id)) == 1
        complete = s.scalars(select(AuditEntry).where(AuditEntry.action == "training.complete")).one()
        assert complete.details["resumed_from"] == 5
        assert "training.recover" in set(s.scalars(select(AuditEntry.action)))


def test_two_artists_never_see_each_others_data(trained) -> None:
    instance, queue = trained.studio.instance, trained.queue
    with instance.transaction() as s:
        jobs = {name: s.get(TrainingJob, job_id) for name, job_id in trained.jobs.items()}
        uploads_of = {name: set(s.scalars(select(Upload.id).where(Upload.user_id == job.user_id)))
                      for name, job in jobs.items()}
        items = {name: {i["upload_id"] for i in s.get(Dataset, job.dataset_id).manifest["items"]}
                 for name, job in jobs.items()}
        (alice_model,) = service.list_models(session=s, username="alice", actor="alice")
        (bob_model,) = service.list_models(session=s, username="bob", actor="bob")
    assert items["alice"] == uploads_of["alice"] and items["bob"] == uploads_of["bob"]
    assert not items["alice"] & items["bob"]
    assert bob_model.provenance["mimicsafe.dataset_manifest_sha256"] != alice_model.provenance[
        "mimicsafe.dataset_manifest_sha256"]
    with instance.transaction() as s:
        for call in (lambda: service.get_job(session=s, job_id=trained.jobs["alice"], actor="bob"),
                     lambda: service.list_jobs(session=s, username="alice", actor="bob"),
                     lambda: service.list_models(session=s, username="alice", actor="bob"),
                     lambda: service.cancel_job(session=s, job_id=trained.jobs["alice"], actor="bob"),
                     lambda: service.delete_model(session=s, model_id=alice_model.id, actor="bob")):
            with pytest.raises(NotFoundError):
                call()
        assert service.get_job(session=s, job_id=trained.jobs["alice"], actor="root").artist == "alice"  # admin
    with pytest.raises(NotFoundError):
        service.export_model(instance=instance, model_id=alice_model.id, actor="bob", fmt="diffusers")
    with pytest.raises(NotFoundError):
        service.submit_training(instance=instance, queue=queue, username="alice", actor="bob")


def test_deleted_models_disappear(trained) -> None:
    instance = trained.studio.instance
    with instance.transaction() as s:
        (model,) = service.list_models(session=s, username="bob", actor="bob")
        service.delete_model(session=s, model_id=model.id, actor="bob")
    with instance.transaction() as s:
        assert service.list_models(session=s, username="bob", actor="bob") == []
        assert "training.model.delete" in set(s.scalars(select(AuditEntry.action)))
    with pytest.raises(NotFoundError):
        service.export_model(instance=instance, model_id=model.id, actor="bob", fmt="kohya")


def test_no_accepted_uploads_is_refused(studio, queue) -> None:
    from mimicsafe.errors import ValidationFailed

    with pytest.raises(ValidationFailed, match="no accepted uploads"):
        _submit(studio, queue)


_ = threading  # the background_worker fixture runs a thread
