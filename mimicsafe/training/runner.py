"""What a worker does with one training job: claim it, check the data, train, store the LoRA.

The job row is the only shared state. A worker claims a queued job (status → running, its `host:pid`,
a heartbeat); progress, samples and checkpoints are written in short transactions; the LoRA model
row, the job's completion and the audit entry commit together. A worker killed mid-run leaves the
job `running` with a dead worker id: `recover_interrupted_jobs` (run when a worker starts) puts it back
in the queue, and the next run resumes from the last checkpoint. A job that already has its model is
never trained again, so a replayed task cannot make a second model.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from mimicsafe import audit
from mimicsafe.context import Instance
from mimicsafe.db.models import LoraModel, TrainingJob, User
from mimicsafe.settings import Settings
from mimicsafe.training.config import TrainingConfig, library_versions
from mimicsafe.training.errors import DatasetRefused, TrainingCancelled, TrainingFailed
from mimicsafe.training.manifest import load_items
from mimicsafe.training.service import dataset_of, instance_id

log = logging.getLogger(__name__)

STALE_HEARTBEAT = timedelta(minutes=10)
PROGRESS_INTERVAL_S = 0.5


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def job_dir(settings: Settings, job_id: int) -> Path:
    return settings.home_dir / "training" / "jobs" / str(job_id)


def cache_dir(settings: Settings) -> Path:
    return settings.home_dir / "cache" / "training"


def _now() -> datetime:
    return datetime.now(UTC)


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


# Claiming and recovering --------------------------------------------------------------------------
def claim(instance: Instance, job_id: int, worker: str) -> bool:
    with instance.transaction() as session:
        job = session.get(TrainingJob, job_id)
        if job is None or job.status != "queued":
            return False
        if job.cancel_requested:
            job.status, job.finished_at = "cancelled", _now()
            return False
        job.status, job.worker, job.heartbeat_at = "running", worker, _now()
        job.started_at = job.started_at or _now()
        return True


def _worker_alive(worker: str | None, heartbeat_at: datetime | None) -> bool:
    host, _, pid_text = (worker or "").rpartition(":")
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            return True
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return heartbeat_at is not None and _now() - _as_utc(heartbeat_at) < STALE_HEARTBEAT


def recover_interrupted_jobs(instance: Instance) -> list[int]:
    """Running jobs whose worker is gone go back to `queued`; returns their ids (to enqueue again)."""
    recovered = []
    with instance.transaction() as session:
        for job in session.scalars(select(TrainingJob).where(TrainingJob.status == "running")):
            if _worker_alive(job.worker, job.heartbeat_at):
                continue
            job.status, job.worker = "queued", None
            owner = session.get(User, job.user_id)
            audit.append(session, actor="worker", action="training.recover", subject=owner.username if owner else "",
                         details={"job_id": job.id, "checkpoint_step": job.checkpoint_step})
            recovered.append(job.id)
    return recovered


# Running ------------------------------------------------------------------------------------------
class _Progress:
    """The trainer's hooks: progress, cancel, samples and checkpoints into the job row."""

    def __init__(self, instance: Instance, job_id: int) -> None:
        self.instance, self.job_id = instance, job_id
        self.recent: deque[float] = deque(maxlen=10)
        self.last_write = 0.0

    def on_step(self, report: Any) -> None:
        self.recent.append(report.loss)
        final = report.step == report.total
        with self.instance.reading() as session:  # every step reads; only some write (no write lock here)
            cancelled = bool(session.scalar(select(TrainingJob.cancel_requested).where(
                TrainingJob.id == self.job_id))) and not final
        if cancelled or final or time.monotonic() - self.last_write >= PROGRESS_INTERVAL_S:
            with self.instance.transaction() as session:
                job = session.get(TrainingJob, self.job_id)
                assert job is not None
                cancelled = cancelled or (job.cancel_requested and not final)
                job.step, job.loss = report.step, sum(self.recent) / len(self.recent)
                job.eta_seconds = (report.total - report.step) * report.seconds_per_step
                job.heartbeat_at = _now()
                self.last_write = time.monotonic()
        if cancelled:  # after the commit, so the row shows the step it stopped at
            raise TrainingCancelled()

    def on_samples(self, samples: list[Any]) -> None:
        stored = [{"step": s.step, "prompt": s.prompt, "seed": s.seed, "sha256": self.instance.blobs.put(s.png)}
                  for s in samples]
        with self.instance.transaction() as session:
            job = session.get(TrainingJob, self.job_id)
            assert job is not None
            steps = {s["step"] for s in stored}
            job.samples = [s for s in job.samples or [] if s["step"] not in steps] + stored

    def on_checkpoint(self, step: int) -> None:
        with self.instance.transaction() as session:
            job = session.get(TrainingJob, self.job_id)
            assert job is not None
            job.checkpoint_step, job.heartbeat_at = step, _now()


def _finish(instance: Instance, job_id: int, status: str, error: str | None = None, action: str | None = None) -> None:
    with instance.transaction() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        job.status, job.error, job.finished_at, job.eta_seconds = status, error, _now(), None
        if action is not None:
            owner = session.get(User, job.user_id)
            audit.append(session, actor="worker", action=action, subject=owner.username if owner else "",
                         details={"job_id": job_id, "step": job.step, "error": error})


def run_job(instance: Instance, job_id: int, *, device: str | None = None) -> dict[str, Any]:
    """Run one job to its end (completed, failed or cancelled); returns its final status."""
    if not claim(instance, job_id, worker_id()):
        return {"job_id": job_id, "status": "not claimed"}
    return run_claimed_job(instance, job_id, device=device)


def run_claimed_job(instance: Instance, job_id: int, *, device: str | None = None) -> dict[str, Any]:
    """Train a job this process has claimed; every outcome is written to the job row."""
    try:
        model_id = train_job(instance, job_id, device)
        assert model_id is not None
    except TrainingCancelled:
        _finish(instance, job_id, "cancelled")
        return {"job_id": job_id, "status": "cancelled"}
    except (DatasetRefused, TrainingFailed) as exc:
        _finish(instance, job_id, "failed", str(exc), "training.fail")
        return {"job_id": job_id, "status": "failed", "error": str(exc)}
    except Exception as exc:  # a bug or a broken base model: the job says so, the worker lives on
        log.exception("training job %d failed", job_id)
        _finish(instance, job_id, "failed", f"internal error: {type(exc).__name__}: {exc}", "training.fail")
        return {"job_id": job_id, "status": "failed", "error": str(exc)}
    return {"job_id": job_id, "status": "completed", "model_id": model_id}


def _mark_completed(instance: Instance, job_id: int) -> None:
    with instance.transaction() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        job.status, job.step = "completed", job.total_steps


def train_job(instance: Instance, job_id: int, device: str | None, *, follower: bool = False) -> int | None:
    """Check the data, train and store the model. A `follower` (a non-main process of a multi-process
    run, see `launch.py`) trains its share of each step and writes nothing."""
    from mimicsafe.training.base import load_training_base
    from mimicsafe.training.trainer import Hooks, LoraTrainer

    with instance.reading() as session:  # decoding and re-checking every item holds no write lock
        job = session.get(TrainingJob, job_id)
        assert job is not None
        existing = session.scalar(select(LoraModel.id).where(LoraModel.job_id == job_id))
        if existing is None:
            dataset = dataset_of(session, job)
            artist = session.get(User, job.user_id).username  # type: ignore[union-attr]
            items = load_items(session=session, blobs=instance.blobs, registry=instance.registry,
                               settings=instance.settings, dataset=dataset)
            config = TrainingConfig.from_dict(job.config)
            dataset_info: dict[str, Any] = {"sha256": dataset.manifest_sha256, "items": dataset.item_count,
                                            "policy_version": dataset.policy_version}
    if existing is not None:  # trained before a crash that came after the commit: nothing to redo
        if not follower:
            _mark_completed(instance, job_id)
        return existing
    work = job_dir(instance.settings, job_id)
    if not follower:
        work.mkdir(parents=True, exist_ok=True)
        (work / "config.json").write_text(json.dumps({"config": config.to_dict(),
                                                      "library_versions": library_versions()},
                                                     indent=2, sort_keys=True), encoding="utf-8")
    base = load_training_base(instance.settings, config.model_family, device=device or _default_device())
    progress = None if follower else _Progress(instance, job_id)
    hooks = Hooks() if progress is None else Hooks(progress.on_step, progress.on_samples, progress.on_checkpoint)
    trainer = LoraTrainer(config=config, base=base, items=items, artist=artist, work_dir=work,
                          cache_dir=cache_dir(instance.settings), device=device, hooks=hooks,
                          identity={"job_id": str(job_id), "dataset_sha256": dataset_info["sha256"]},
                          free_frozen_encoders=True)  # this job loaded `base` for itself
    result = trainer.run()
    if follower:
        return None
    model_id = store_model(instance, job_id=job_id, artist=artist, config=config, base=base, result=result,
                           dataset=dataset_info)
    (work / "checkpoint.pt").unlink(missing_ok=True)  # the model is the result now
    return model_id


def _default_device() -> str:
    from mimicsafe.training.trainer import pick_device

    return pick_device()


def store_model(instance: Instance, *, job_id: int, artist: str, config: TrainingConfig, base: Any, result: Any,
                dataset: dict[str, Any]) -> int:
    """Write both files to the blob store, then the model row + job completion + audit entry at once."""
    from mimicsafe.training import lora
    from mimicsafe.training.metadata import KeyFormat, Provenance, build_metadata, lora_file, tensor_data_hash

    provenance = Provenance(artist=artist, job_id=job_id, instance_id=instance_id(instance.settings),
                            dataset_sha256=dataset["sha256"], item_count=dataset["items"],
                            policy_version=dataset["policy_version"], base_model_name=base.name,
                            base_model_sha256=base.fingerprint("unet"), title=f"{artist} style (job {job_id})")
    files = {}
    exports: tuple[tuple[KeyFormat, Callable[[Any], dict[str, Any]]], ...] = (
        ("diffusers", lora.to_diffusers), ("kohya", lora.to_kohya))
    for key_format, convert in exports:
        tensors = convert(result.parts())
        metadata = build_metadata(config=config, provenance=provenance, result=result, key_format=key_format,
                                  tensor_hash=tensor_data_hash(tensors))
        files[key_format] = (instance.blobs.put(lora_file(tensors, metadata)), metadata)
    diffusers_sha, diffusers_meta = files["diffusers"]
    with instance.transaction() as session:
        job = session.get(TrainingJob, job_id)
        assert job is not None
        model = session.scalar(select(LoraModel).where(LoraModel.job_id == job_id))
        if model is None:
            model = LoraModel(user_id=job.user_id, job_id=job_id, name=provenance.title, blob_sha256=diffusers_sha,
                              provenance={**diffusers_meta, "kohya_blob_sha256": files["kohya"][0]})
            session.add(model)
            session.flush()
        job.status, job.step, job.finished_at, job.eta_seconds = "completed", result.steps, _now(), 0.0
        job.loss = sum(result.losses[-10:]) / len(result.losses[-10:])
        audit.append(session, actor="worker", action="training.complete", subject=artist,
                     details={"job_id": job_id, "model_id": model.id, "blob_sha256": diffusers_sha,
                              "kohya_blob_sha256": files["kohya"][0], "manifest_sha256": dataset["sha256"],
                              "steps": result.steps, "resumed_from": result.resumed_from})
        return model.id
