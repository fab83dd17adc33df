"""Training services the app and the CLI call: submit, follow, cancel; list, export and delete models.

Actors are usernames. Only the owner of a job or model, or an admin, may see or change it; anyone else
is told it does not exist (so ids reveal nothing about other artists). One job per artist at a time.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.context import Instance
from mimicsafe.db.models import Dataset, LoraModel, TrainingJob, User
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.settings import Settings
from mimicsafe.training.config import load_preset
from mimicsafe.training.errors import JobConflict
from mimicsafe.training.manifest import build_manifest, dataset_row, load_items, store_dataset
from mimicsafe.trust import suspension

ACTIVE = ("queued", "running")
FINISHED = ("completed", "failed", "cancelled")
INSTANCE_ID_FILE = "instance-id"


@dataclass(frozen=True)
class JobView:
    """A job as its owner sees it: the row plus its place in the queue and its sample images."""

    job: TrainingJob
    artist: str
    queue_position: int | None  # 1 = next to start; None unless queued
    sample_sha256s: list[str]
    model_id: int | None

    def to_json(self) -> dict[str, Any]:
        job = self.job
        return {"job_id": job.id, "artist": self.artist, "status": job.status, "preset": job.preset,
                "step": job.step, "total_steps": job.total_steps, "loss": job.loss, "eta_seconds": job.eta_seconds,
                "queue_position": self.queue_position, "cancel_requested": job.cancel_requested,
                "error": job.error, "checkpoint_step": job.checkpoint_step, "samples": job.samples or [],
                "model_id": self.model_id}


def instance_id(settings: Settings) -> str:
    """A random id for this installation, made once and kept in its home directory."""
    path = settings.home_dir / INSTANCE_ID_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with path.open("x", encoding="utf-8") as handle:
                handle.write(uuid.uuid4().hex)
        except FileExistsError:
            pass  # another process made it first
        return path.read_text(encoding="utf-8").strip()


# Who may do what ----------------------------------------------------------------------------------
def _actor(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user.disabled:
        raise PermissionDenied(f"account {username} is disabled")
    return user


def _check_owner(actor: User, owner_id: int, what: str) -> None:
    if actor.role != "admin" and actor.id != owner_id:
        raise NotFoundError(f"{what} does not exist")


def _job(session: Session, job_id: int, actor: User) -> TrainingJob:
    job = session.get(TrainingJob, job_id)
    if job is None:
        raise NotFoundError(f"training job {job_id} does not exist")
    _check_owner(actor, job.user_id, f"training job {job_id}")
    return job


def _model(session: Session, model_id: int, actor: User) -> LoraModel:
    model = session.get(LoraModel, model_id)
    if model is None or model.deleted_at is not None:
        raise NotFoundError(f"model {model_id} does not exist")
    _check_owner(actor, model.user_id, f"model {model_id}")
    return model


# Jobs ---------------------------------------------------------------------------------------------
def _submitter(session: Session, *, username: str, actor: str, lock: bool = False) -> User:
    """The artist a job is submitted for, refused when not allowed or when a job is already active."""
    user = _artist_for(session, username, actor)
    if user.disabled or user.consent_withdrawn_at is not None:
        raise PermissionDenied(f"{username} cannot train: the account is disabled or consent was withdrawn")
    if lock:
        # One job per artist: checked inside the write transaction (SQLite: BEGIN IMMEDIATE; PostgreSQL:
        # the artist's row is locked), so two submissions cannot both pass.
        session.execute(select(User.id).where(User.id == user.id).with_for_update())
    active = session.scalar(select(TrainingJob).where(TrainingJob.user_id == user.id,
                                                      TrainingJob.status.in_(ACTIVE)))
    if active is not None:
        raise JobConflict(f"{username} already has training job {active.id} ({active.status}); "
                          "wait for it or cancel it first")
    return user


def submit_training(*, instance: Instance, queue: Any, username: str, actor: str, preset: str = "tiny",
                    steps: int | None = None, captions: Mapping[str, str] | None = None,
                    retrain_of: int | None = None) -> TrainingJob:
    """Make the dataset manifest from the artist's eligible uploads, check every item now, queue a job.

    `captions` maps image file names (or their stems, as `cat.txt` names `cat.png`) to captions.
    `retrain_of` names the suspended model this job replaces (recorded in the audit entry).
    """
    if steps is not None and steps < 1:
        raise ValidationFailed(f"steps: must be at least 1, got {steps}")
    try:
        config = load_preset(preset)
        if steps is not None:
            # A run shorter than the preset's warm-up warms up for a tenth of its steps instead.
            warmup = config.lr_warmup_steps if config.lr_warmup_steps < steps else steps // 10
            config = config.replace(max_train_steps=steps, lr_warmup_steps=warmup)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None
    # The slow part (decode and re-check every item) runs without the write lock; the write transaction
    # below repeats the cheap checks, stores the manifest checked here and queues. The worker re-checks it all.
    with instance.reading() as session:
        user = _submitter(session, username=username, actor=actor)
        manifest = build_manifest(session=session, user=user, captions=captions)
        load_items(session=session, blobs=instance.blobs, registry=instance.registry, settings=instance.settings,
                   dataset=dataset_row(user, manifest))  # refuse now, naming the item, not in the worker later
    with instance.transaction() as session:
        user = _submitter(session, username=username, actor=actor, lock=True)
        dataset = store_dataset(session=session, user=user, manifest=manifest)
        job = TrainingJob(user_id=user.id, dataset_id=dataset.id, preset=preset, config=config.to_dict(),
                          status="queued", step=0, total_steps=config.max_train_steps, samples=[])
        session.add(job)
        session.flush()
        audit.append(session, actor=actor, action="training.submit", subject=username,
                     details={"job_id": job.id, "dataset_id": dataset.id, "manifest_sha256": dataset.manifest_sha256,
                              "items": dataset.item_count, "preset": preset, "steps": config.max_train_steps,
                              **({"retrain_of": retrain_of} if retrain_of is not None else {})})
    try:
        queue.enqueue("train_lora", job.id)
    except Exception as exc:
        with instance.transaction() as session:
            row = session.get(TrainingJob, job.id)
            assert row is not None
            row.status, row.error, row.finished_at = "failed", f"could not queue the job: {exc}", datetime.now(UTC)
        raise ValidationFailed(f"the job queue is unavailable ({exc}); job {job.id} was not started") from exc
    return job


def cancel_job(*, session: Session, job_id: int, actor: str) -> TrainingJob:
    """A queued job is cancelled at once; a running one stops after its current step (its last checkpoint
    is kept). Cancelling a finished job is a no-op."""
    actor_user = _actor(session, actor)
    job = _job(session, job_id, actor_user)
    if job.status not in ACTIVE:
        return job
    job.cancel_requested = True
    if job.status == "queued":
        job.status, job.finished_at = "cancelled", datetime.now(UTC)
    owner = session.get(User, job.user_id)
    audit.append(session, actor=actor, action="training.cancel", subject=owner.username if owner else "",
                 details={"job_id": job.id, "status": job.status, "step": job.step})
    return job


def queue_position(session: Session, job: TrainingJob) -> int | None:
    if job.status != "queued":
        return None
    ahead = session.scalar(select(func.count()).select_from(TrainingJob).where(
        TrainingJob.status == "queued", TrainingJob.id < job.id)) or 0
    return ahead + 1


def _view(session: Session, job: TrainingJob) -> JobView:
    owner = session.get(User, job.user_id)
    model_id = session.scalar(select(LoraModel.id).where(LoraModel.job_id == job.id, LoraModel.deleted_at.is_(None)))
    return JobView(job=job, artist=owner.username if owner else "", queue_position=queue_position(session, job),
                   sample_sha256s=[s["sha256"] for s in job.samples or []], model_id=model_id)


def get_job(*, session: Session, job_id: int, actor: str) -> JobView:
    return _view(session, _job(session, job_id, _actor(session, actor)))


def _artist_for(session: Session, username: str, actor: str) -> User:
    """The artist `username`, whose jobs and models only they and admins may see."""
    actor_user = _actor(session, actor)
    user = get_user(session=session, username=username)
    _check_owner(actor_user, user.id, f"artist {username}")
    return user


def list_jobs(*, session: Session, username: str, actor: str, limit: int | None = None) -> list[JobView]:
    """The artist's jobs, newest first (the newest `limit` of them)."""
    user = _artist_for(session, username, actor)
    jobs = session.scalars(select(TrainingJob).where(TrainingJob.user_id == user.id)
                           .order_by(TrainingJob.id.desc()).limit(limit))
    return [_view(session, job) for job in jobs]


def latest_job(*, session: Session, username: str, actor: str) -> JobView | None:
    """The artist's most recent job (None if they have none)."""
    newest = list_jobs(session=session, username=username, actor=actor, limit=1)
    return newest[0] if newest else None


# Models -------------------------------------------------------------------------------------------
def list_models(*, session: Session, username: str, actor: str) -> list[LoraModel]:
    user = _artist_for(session, username, actor)
    return list(session.scalars(select(LoraModel).where(LoraModel.user_id == user.id, LoraModel.deleted_at.is_(None))
                                .order_by(LoraModel.id)))


def model_states(*, session: Session, models: list[LoraModel]) -> dict[int, str]:
    """Each model's state as its artist may see it: "ready", or "suspended, under review" (trained on a
    work protected for someone else since; `mimicsafe.trust`)."""
    suspended = suspension.suspended_model_ids(session, [m.id for m in models])
    return {m.id: suspension.FOR_ARTIST if m.id in suspended else "ready" for m in models}


def kohya_blob_sha256(provenance: Mapping[str, Any] | None) -> str | None:
    """The blob of a model's kohya-format export, recorded in its provenance (None if there is none)."""
    value = (provenance or {}).get("kohya_blob_sha256")
    return value if isinstance(value, str) else None


def export_model(*, instance: Instance, model_id: int, actor: str,
                 fmt: Literal["diffusers", "kohya"]) -> tuple[str, bytes]:
    """(file name, `.safetensors` bytes) in diffusers or kohya key format, provenance metadata included."""
    if fmt not in ("diffusers", "kohya"):
        raise ValidationFailed(f"format {fmt!r}: choose diffusers or kohya")
    with instance.reading() as session:
        model = _model(session, model_id, _actor(session, actor))
        suspension.require_usable(session, model)
        sha256 = model.blob_sha256 if fmt == "diffusers" else kohya_blob_sha256(model.provenance)
        if sha256 is None:
            raise NotFoundError(f"model {model.id} has no kohya-format export")
        owner = session.get(User, model.user_id)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{owner.username if owner else 'artist'}-lora-{model.id}")
    return f"{stem}-{fmt}.safetensors", instance.blobs.get(sha256)


def delete_model(*, session: Session, model_id: int, actor: str) -> LoraModel:
    """Mark the model deleted: it disappears from lists, exports and generation. Its weight blobs stay
    in the content-addressed store until a purge, so a failed commit never leaves a row pointing at
    nothing."""
    model = _model(session, model_id, _actor(session, actor))
    model.deleted_at = datetime.now(UTC)
    owner = session.get(User, model.user_id)
    audit.append(session, actor=actor, action="training.model.delete", subject=owner.username if owner else "",
                 details={"model_id": model.id, "job_id": model.job_id, "blob_sha256": model.blob_sha256})
    return model


def dataset_of(session: Session, job: TrainingJob) -> Dataset:
    dataset = session.get(Dataset, job.dataset_id)
    if dataset is None:
        raise NotFoundError(f"the dataset of job {job.id} is missing")
    return dataset
