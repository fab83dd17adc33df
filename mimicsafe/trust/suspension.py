"""Suspensions: an accepted upload that a work protected later matches, and what is built on it.

The upload's `suspended_at` is the one fact; the rest is derived from it, so nothing can drift out of
step and an admin's override restores everything at once:
- a dataset is *tainted* while any upload it lists is suspended;
- a model is *suspended* while the dataset it was trained on is tainted: it cannot generate or be
  exported; its artist sees it as "suspended, under review" (never whose work it matched), admins see
  the evidence;
- an image such a model made answers `verify` with the suspension.

An admin decides through the review queue (`mimicsafe.review.decide`, which calls `decide` here):
uphold (the upload stays ineligible and the models suspended; the artist may retrain without it) or
override with a note (the upload is eligible again and the models usable). Every step is audited.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.db.models import DatasetUpload, LoraModel, Suspension, TrainingJob, Upload, User
from mimicsafe.errors import PermissionDenied
from ownership import reasons

ACTIVE = ("open", "upheld")  # suspensions that keep an upload ineligible
UPLOAD_SUSPENDED = "upload.suspend"
SUSPENSION_UPHELD = "suspension.uphold"
SUSPENSION_OVERRIDDEN = "suspension.override"
# What the artist (and anyone asking `verify`) is told: never whose work, never the picture.
FOR_ARTIST = "suspended, under review: trained on a work now protected for someone else"
FOR_VERIFY = "made by a model under review: trained on a work now protected for someone else"
UPLOAD_FOR_ARTIST = "suspended, under review: it matches a work that became protected for someone else"


@dataclass(frozen=True)
class Protected:
    """A work that became protected, as a re-scan needs it: what the gate's match will name it by."""

    kind: Literal["portfolio", "optout"]
    id: int
    key: str  # the registry key (`Match.item_sha256`) of the work
    owner: str  # username, or "optout"
    owner_id: int | None


def datasets_listing(session: Session, upload_ids: Iterable[int]) -> list[int]:
    ids = list(upload_ids)
    if not ids:
        return []
    return sorted(set(session.scalars(select(DatasetUpload.dataset_id).where(DatasetUpload.upload_id.in_(ids)))))


def models_trained_on(session: Session, dataset_ids: Sequence[int]) -> list[LoraModel]:
    if not dataset_ids:
        return []
    return list(session.scalars(
        select(LoraModel).join(TrainingJob, TrainingJob.id == LoraModel.job_id)
        .where(TrainingJob.dataset_id.in_(list(dataset_ids)), LoraModel.deleted_at.is_(None))
        .order_by(LoraModel.id)))


def suspended_uploads_of_dataset(session: Session, dataset_id: int) -> list[Upload]:
    return list(session.scalars(
        select(Upload).join(DatasetUpload, DatasetUpload.upload_id == Upload.id)
        .where(DatasetUpload.dataset_id == dataset_id, Upload.suspended_at.is_not(None)).order_by(Upload.id)))


def model_suspended_uploads(session: Session, model: LoraModel) -> list[Upload]:
    """The suspended uploads the model was trained on (empty: the model is usable)."""
    job = session.get(TrainingJob, model.job_id)
    return [] if job is None else suspended_uploads_of_dataset(session, job.dataset_id)


def suspended_model_ids(session: Session, model_ids: Iterable[int]) -> set[int]:
    """Which of these models are suspended, in one query."""
    ids = list(model_ids)
    if not ids:
        return set()
    rows = session.scalars(
        select(LoraModel.id).join(TrainingJob, TrainingJob.id == LoraModel.job_id)
        .join(DatasetUpload, DatasetUpload.dataset_id == TrainingJob.dataset_id)
        .join(Upload, Upload.id == DatasetUpload.upload_id)
        .where(LoraModel.id.in_(ids), Upload.suspended_at.is_not(None)))
    return set(rows)


def require_usable(session: Session, model: LoraModel) -> None:
    """Refuse generation and export with a suspended model."""
    if model_suspended_uploads(session, model):
        raise PermissionDenied(f"model {model.id} is {FOR_ARTIST}; an admin decides, and you can retrain "
                               "without the suspended upload meanwhile")


def suspensions_of(session: Session, upload_id: int, states: Sequence[str] | None = None) -> list[Suspension]:
    query = select(Suspension).where(Suspension.upload_id == upload_id)
    if states is not None:
        query = query.where(Suspension.state.in_(list(states)))
    return list(session.scalars(query.order_by(Suspension.id)))


def overridden_keys(session: Session, upload_id: int) -> set[str]:
    """Protected works an admin has already looked at and overridden for this upload."""
    return {s.protected_key for s in suspensions_of(session, upload_id, ("overridden",))}


def suspend(session: Session, *, upload: Upload, work: Protected, matches: list[dict[str, Any]],
            rescan_id: int | None, actor: str) -> Suspension:
    """Suspend the upload (it enters the review queue) and audit what that taints and suspends."""
    now = datetime.now(UTC)
    row = Suspension(upload_id=upload.id, rescan_id=rescan_id, reason=reasons.MATCHES_NEWLY_PROTECTED,
                     protected_kind=work.kind, protected_id=work.id, protected_key=work.key,
                     protected_owner_id=work.owner_id, evidence={"matches": matches, "owner": work.owner},
                     prior_review_state=upload.review_state, state="open", created_at=now, note="")
    session.add(row)
    upload.suspended_at, upload.review_state = now, "pending"
    session.flush()
    datasets = datasets_listing(session, [upload.id])
    models = [m.id for m in models_trained_on(session, datasets)]
    artist = session.get(User, upload.user_id)
    audit.append(session, actor=actor, action=UPLOAD_SUSPENDED, subject=artist.username if artist else "",
                 details={"upload_id": upload.id, "sha256": upload.sha256, "suspension_id": row.id,
                          "reason": reasons.MATCHES_NEWLY_PROTECTED, "protected": {"kind": work.kind, "id": work.id},
                          "matches": matches, "rescan_id": rescan_id, "datasets_tainted": datasets,
                          "models_suspended": models})
    return row


def decide(session: Session, *, upload: Upload, admin: User, action: Literal["approve", "uphold"],
           note: str) -> list[Suspension]:
    """The admin's decision on a suspended upload (called by `mimicsafe.review.decide`).

    uphold: the suspensions stand; the upload stays ineligible and its models suspended.
    approve: overridden; the upload is eligible again and every model trained on it is restored
    (unless another of its uploads is suspended too). Deciding again later is allowed either way."""
    rows = suspensions_of(session, upload.id)
    now = datetime.now(UTC)
    for row in rows:
        if action == "uphold" and row.state != "upheld" or action == "approve" and row.state != "overridden":
            row.state = "upheld" if action == "uphold" else "overridden"
            row.decided_at, row.decided_by_id, row.note = now, admin.id, note
    if action == "uphold":
        upload.suspended_at = upload.suspended_at or now
        upload.review_state = "upheld"
    else:
        upload.suspended_at = None
        upload.review_state = "overridden"
    session.flush()
    datasets = datasets_listing(session, [upload.id])
    models = models_trained_on(session, datasets)
    still = suspended_model_ids(session, [m.id for m in models])
    artist = session.get(User, upload.user_id)
    what = SUSPENSION_UPHELD if action == "uphold" else SUSPENSION_OVERRIDDEN
    audit.append(session, actor=admin.username, action=what, subject=artist.username if artist else "",
                 details={"upload_id": upload.id, "suspension_ids": [r.id for r in rows], "note": note,
                          "datasets": datasets, "models_suspended": sorted(still),
                          "models_restored": sorted(m.id for m in models if m.id not in still)})
    return rows


def evidence_for_admin(session: Session, upload_id: int) -> list[dict[str, Any]]:
    """Each suspension of the upload with whose work it matched and how (admins only)."""
    return evidence_for_admin_of(session, [upload_id]).get(upload_id, [])


def evidence_for_admin_of(session: Session, upload_ids: Sequence[int]) -> dict[int, list[dict[str, Any]]]:
    """`evidence_for_admin` for many uploads in a few queries (the review queue lists hundreds)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for start in range(0, len(upload_ids), 500):  # keep each IN list short
        rows = session.scalars(select(Suspension).where(Suspension.upload_id.in_(upload_ids[start:start + 500]))
                               .order_by(Suspension.id))
        for row in rows:
            out.setdefault(row.upload_id, []).append({
                "suspension_id": row.id, "reason": row.reason, "state": row.state,
                "protected": {"kind": row.protected_kind, "id": row.protected_id, "key": row.protected_key,
                              "owner": row.evidence.get("owner")},
                "matches": row.evidence.get("matches", []), "rescan_id": row.rescan_id,
                "created_at": row.created_at.isoformat(timespec="seconds"), "note": row.note})
    return out


def for_artist(session: Session, upload_id: int) -> dict[str, Any] | None:
    """What the upload's artist sees of its suspension: the state and why in general words only."""
    rows = suspensions_of(session, upload_id)
    if not rows:
        return None
    latest = rows[-1]
    message = UPLOAD_FOR_ARTIST if latest.state != "overridden" else "an admin reviewed the match and restored it"
    return {"reason": latest.reason, "state": latest.state, "message": message,
            "since": latest.created_at.isoformat(timespec="seconds")}
