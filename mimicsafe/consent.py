"""Withdrawing consent: an artist's uploads, models and generated images are deleted; the facts stay.

What goes: the stored image of every upload (the rows stay, marked deleted, so verdicts and review
decisions stay explainable), the weights of every trained model in both formats (rows marked deleted),
the training jobs' samples, checkpoints and work directories, the images the artist generated, and the
training caches. Unfinished training jobs are asked to cancel.
What stays: the audit log (hashes, verdicts, decisions — never images); the generation records, whose
fingerprints keep marking copies as AI-generated; the verified portfolio, which keeps protecting the
artist's work from everybody else (an admin removes it on request); and the account, closed to uploads.

Blobs are content-addressed and may be shared (two people can upload the same file), so a blob is
deleted only when no remaining row still needs it. The training caches (VAE latents and text
embeddings, from which an image can be decoded again) are keyed by hashes that do not name an artist,
so all their entries are removed; they are only caches, recomputed when next needed. Files are removed
after the database commit: a crash in between leaves files that running the withdrawal again removes —
never rows that point at missing files. A job still running when consent is withdrawn stops at its next
step; running the withdrawal again after that removes anything it wrote meanwhile.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.context import Instance
from mimicsafe.db.models import Generation, LoraModel, PortfolioItem, TrainingJob, Upload
from mimicsafe.errors import PermissionDenied, ValidationFailed
from mimicsafe.training.runner import cache_dir as training_cache_dir
from mimicsafe.training.runner import job_dir
from mimicsafe.training.service import kohya_blob_sha256

CONSENT_WITHDRAWN = "consent.withdraw"


@dataclass(frozen=True)
class Withdrawal:
    username: str
    uploads_deleted: int
    models_deleted: int
    generations_deleted: int
    jobs_cancelled: int
    files_deleted: int  # stored images and model files
    cache_entries_deleted: int


def withdraw_consent(*, instance: Instance, username: str, actor: str, confirmation: str) -> Withdrawal:
    """Delete `username`'s uploads, models, generated images and caches. `confirmation` must repeat the
    username. The artist may do this for themself; an admin may do it on the artist's request.

    Running it again is safe: it removes whatever a crash left behind.
    """
    if confirmation.strip() != username:
        raise ValidationFailed(f"confirmation: type your username ({username}) to confirm the withdrawal")
    now = datetime.now(UTC)
    with instance.transaction() as session:
        user = get_user(session=session, username=username)
        _check_actor(session, actor=actor, username=username)
        if user.role != "artist":
            raise ValidationFailed(f"{username} is not an artist account; only artists give consent")
        if user.consent_withdrawn_at is None:
            user.consent_withdrawn_at = now

        uploads = list(session.scalars(select(Upload).where(Upload.user_id == user.id)))
        models = list(session.scalars(select(LoraModel).where(LoraModel.user_id == user.id)))
        generations = list(session.scalars(select(Generation).where(Generation.user_id == user.id)))
        all_jobs = list(session.scalars(select(TrainingJob).where(TrainingJob.user_id == user.id)))
        jobs = [j for j in all_jobs if j.finished_at is None and not j.cancel_requested]
        newly_deleted_uploads = [u for u in uploads if u.deleted_at is None]
        newly_deleted_models = [m for m in models if m.deleted_at is None]
        for upload in newly_deleted_uploads:
            upload.deleted_at, upload.caption = now, None
        for model in newly_deleted_models:
            model.deleted_at = now
        for job in jobs:
            job.cancel_requested = True
        # Every blob this artist ever had, so that a second run also finds what a crash left behind.
        candidates = ({u.sha256 for u in uploads} | {g.image_sha256 for g in generations}
                      | {sha for m in models for sha in (m.blob_sha256, kohya_blob_sha256(m.provenance)) if sha}
                      | {s["sha256"] for j in all_jobs for s in j.samples or [] if s.get("sha256")})
        job_ids = [j.id for j in all_jobs]
        audit.append(session, actor=actor, action=CONSENT_WITHDRAWN, subject=username, details={
            "uploads_deleted": len(newly_deleted_uploads),
            "upload_sha256": sorted(u.sha256 for u in newly_deleted_uploads),
            "models_deleted": [m.id for m in newly_deleted_models],
            "generations": len(generations),
            "jobs_cancelled": [j.id for j in jobs],
        })
        user_id = user.id

    files_deleted = 0
    with instance.transaction() as session:
        for sha256 in sorted(candidates):
            if _still_needed(session, sha256, withdrawn_user_id=user_id) or not instance.blobs.exists(sha256):
                continue
            instance.blobs.delete(sha256)
            files_deleted += 1
    for job_id in job_ids:
        work = job_dir(instance.settings, job_id)
        if work.is_dir() and not work.is_symlink():
            shutil.rmtree(work, ignore_errors=True)
    cache_entries = _empty_cache(training_cache_dir(instance.settings))
    return Withdrawal(username=username, uploads_deleted=len(newly_deleted_uploads),
                      models_deleted=len(newly_deleted_models), generations_deleted=len(generations),
                      jobs_cancelled=len(jobs), files_deleted=files_deleted, cache_entries_deleted=cache_entries)


def _check_actor(session: Session, *, actor: str, username: str) -> None:
    if actor == username:
        return
    acting = get_user(session=session, username=actor)
    if acting.role != "admin" or acting.disabled:
        raise PermissionDenied("you can withdraw consent only for your own account")


def _still_needed(session: Session, sha256: str, *, withdrawn_user_id: int) -> bool:
    """Does any row that is not being withdrawn still need this blob?"""
    queries = (
        select(Upload.id).where(Upload.sha256 == sha256, Upload.deleted_at.is_(None)),
        select(PortfolioItem.id).where(PortfolioItem.sha256 == sha256),
        select(LoraModel.id).where(LoraModel.blob_sha256 == sha256, LoraModel.deleted_at.is_(None)),
        select(Generation.id).where(Generation.image_sha256 == sha256, Generation.user_id != withdrawn_user_id),
    )
    return any(session.scalar(query.limit(1)) is not None for query in queries)


def _empty_cache(root: Path) -> int:
    """Delete every file under a cache, keeping its directories (so a writer that is making an entry
    right now does not fail); return how many files went."""
    if not root.is_dir() or root.is_symlink():
        return 0
    removed = 0
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.unlink(missing_ok=True)
            removed += 1
    return removed
