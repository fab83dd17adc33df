"""Disputes: anyone with an account claims that a verified work is theirs; an admin keeps or transfers it.

1. `open_dispute`: the claimant gives evidence (a link to where they published it first, files, a
   note). Only a verified work can be claimed, never one's own, and one open claim per person and
   work. The work stays protected for its owner meanwhile.
2. `show_dispute`: an admin sees both sides side by side: the claimant's evidence and the owner's
   (their evidence link, note, when it was submitted and verified).
3. `decide`: keep (nothing moves) or transfer: the work leaves the owner's portfolio (registry
   `portfolio.withdraw`) and becomes the claimant's verified work (`portfolio.verify`), in one
   transaction, and a re-scan is queued for it: the former owner's uploads matching it, and the
   models trained on them, go through the same suspension as any upload that copies a protected work.
Every step is audited (`dispute.open`, `dispute.keep`, `dispute.transfer`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.blobs import BlobStore
from mimicsafe.db.models import Dispute, PortfolioItem, Upload, User
from mimicsafe.errors import NotFoundError, PermissionDenied, ValidationFailed
from mimicsafe.imaging import NamedFile, display_name
from mimicsafe.portfolio import check_evidence_url
from mimicsafe.registry import PORTFOLIO_VERIFIED, PORTFOLIO_WITHDRAWN
from mimicsafe.settings import Settings
from mimicsafe.trust import rescan, suspension
from ownership.policy import GENERATED_OWNER, OPTOUT_OWNER

DISPUTE_OPENED = "dispute.open"
DISPUTE_KEPT = "dispute.keep"
DISPUTE_TRANSFERRED = "dispute.transfer"
MAX_FILES = 10


@dataclass(frozen=True)
class DisputeView:
    dispute: Dispute
    claimant: str
    owner: str
    work: PortfolioItem

    def to_json(self, *, for_admin: bool) -> dict[str, Any]:
        d, w = self.dispute, self.work
        out: dict[str, Any] = {
            "dispute_id": d.id, "work_id": d.item_id, "state": d.state, "claimant": self.claimant,
            "claim": {"evidence_url": d.evidence_url, "note": d.note, "files": d.files,
                      "at": d.created_at.isoformat(timespec="seconds")},
            "decided_at": d.decided_at.isoformat(timespec="seconds") if d.decided_at else None,
            "decision_note": d.decision_note}
        if for_admin:  # the owner's side, beside the claim
            out["owner"] = self.owner
            out["work"] = {"file": w.file_name, "sha256": w.sha256, "evidence_url": w.evidence_url,
                           "note": w.note, "submitted_at": w.submitted_at.isoformat(timespec="seconds"),
                           "verified_at": w.decided_at.isoformat(timespec="seconds") if w.decided_at else None}
            out["new_work_id"] = d.new_item_id
        return out


def _active(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user.disabled:
        raise PermissionDenied(f"account {username} is disabled")
    return user


def _admin(session: Session, username: str) -> User:
    user = _active(session, username)
    if user.role != "admin":
        raise PermissionDenied(f"{username} is not an admin")
    return user


def open_dispute(*, session: Session, blobs: BlobStore, settings: Settings, work_id: int, claimant: str,
                 evidence_url: str | None, note: str, files: Sequence[NamedFile] = ()) -> Dispute:
    user = _active(session, claimant)
    work = session.get(PortfolioItem, work_id)
    if work is None or work.status != "verified":
        raise NotFoundError(f"there is no verified work #{work_id} to claim")
    if work.user_id == user.id:
        raise ValidationFailed(f"work #{work_id} is already yours; a claim is made on someone else's work")
    if not (note or "").strip() or (not evidence_url and not files):
        raise ValidationFailed("a claim needs a note and evidence: a link to where you published it first, or files")
    if len(files) > MAX_FILES or any(len(f.data) > settings.max_upload_bytes for f in files):
        raise ValidationFailed(f"evidence files: at most {MAX_FILES}, each within the upload size limit")
    url = check_evidence_url(evidence_url)  # the portfolio's rule: one strict http(s) link
    if session.scalar(select(Dispute.id).where(Dispute.item_id == work_id, Dispute.claimant_id == user.id,
                                               Dispute.state == "open")) is not None:
        raise ValidationFailed(f"you already have an open claim on work #{work_id}")
    stored = [{"name": display_name(f.name), "sha256": blobs.put(f.data), "bytes": len(f.data)} for f in files]
    row = Dispute(item_id=work.id, claimant_id=user.id, owner_id=work.user_id, evidence_url=url, note=note.strip(),
                  files=stored, state="open", decision_note="")
    session.add(row)
    session.flush()
    owner = session.get(User, work.user_id)
    audit.append(session, actor=claimant, action=DISPUTE_OPENED, subject=owner.username if owner else "",
                 details={"dispute_id": row.id, "work_id": work.id, "sha256": work.sha256, "evidence_url": url,
                          "files": [f["sha256"] for f in stored]})
    return row


def work_matched_by(*, session: Session, username: str, upload_id: int) -> int:
    """The verified work (of someone else) that one of the caller's uploads matched, when it was rejected or
    suspended later: what the app lets an artist claim without ever showing whose work it is."""
    user = get_user(session=session, username=username)
    upload = session.get(Upload, upload_id)
    if upload is None or upload.user_id != user.id or upload.deleted_at is not None:
        raise NotFoundError(f"you have no upload #{upload_id}")
    shas = [m["item_sha256"] for m in upload.verdict.get("matches", [])
            if m.get("owner") not in (OPTOUT_OWNER, GENERATED_OWNER)]
    for sha256 in shas:
        work_id = session.scalar(select(PortfolioItem.id).where(PortfolioItem.sha256 == sha256,
                                                                PortfolioItem.status == "verified",
                                                                PortfolioItem.user_id != user.id))
        if work_id is not None:
            return int(work_id)
    # An accepted upload that a work protected later suspended: the claim is on that work.
    for found in suspension.suspensions_of(session, upload_id):
        if found.protected_kind != "portfolio":
            continue
        work = session.get(PortfolioItem, found.protected_id)
        if work is not None and work.status == "verified" and work.user_id != user.id:
            return int(work.id)
    raise ValidationFailed(f"upload #{upload_id} did not match anyone's verified work; there is nothing to claim")


def _view(session: Session, row: Dispute) -> DisputeView:
    claimant, owner, work = session.get(User, row.claimant_id), session.get(User, row.owner_id), \
        session.get(PortfolioItem, row.item_id)
    assert work is not None
    return DisputeView(row, claimant.username if claimant else "?", owner.username if owner else "?", work)


def list_disputes(*, session: Session, actor: str, state: str | None = None) -> list[DisputeView]:
    """Admins: every dispute. Anyone else: the claims they opened."""
    user = _active(session, actor)
    query = select(Dispute).order_by(Dispute.id)
    if user.role != "admin":
        query = query.where(Dispute.claimant_id == user.id)
    if state is not None:
        query = query.where(Dispute.state == state)
    return [_view(session, row) for row in session.scalars(query)]


def show_dispute(*, session: Session, actor: str, dispute_id: int) -> DisputeView:
    user = _active(session, actor)
    row = session.get(Dispute, dispute_id)
    if row is None or (user.role != "admin" and row.claimant_id != user.id):
        raise NotFoundError(f"dispute {dispute_id} does not exist")
    return _view(session, row)


def decide(*, session: Session, admin: str, dispute_id: int, action: Literal["keep", "transfer"],
           note: str) -> DisputeView:
    admin_user = _admin(session, admin)
    if action not in ("keep", "transfer"):
        raise ValidationFailed(f"decision {action!r}: choose keep or transfer")
    if not note.strip():
        raise ValidationFailed("note: say why (it goes into the audit log)")
    row = session.get(Dispute, dispute_id)
    if row is None:
        raise NotFoundError(f"dispute {dispute_id} does not exist")
    if row.state != "open":
        raise ValidationFailed(f"dispute {dispute_id} was already decided ({row.state})")
    work = session.get(PortfolioItem, row.item_id)
    owner, claimant = session.get(User, row.owner_id), session.get(User, row.claimant_id)
    assert work is not None and owner is not None and claimant is not None
    now = datetime.now(UTC)
    row.decided_at, row.decided_by_id, row.decision_note = now, admin_user.id, note
    if action == "keep" or work.status != "verified":
        row.state = "kept"
        audit.append(session, actor=admin, action=DISPUTE_KEPT, subject=claimant.username,
                     details={"dispute_id": row.id, "work_id": work.id, "owner": owner.username, "note": note})
        return _view(session, row)
    # transfer: out of the owner's portfolio, into the claimant's, verified; then re-scan it
    # The notes are shown to each artist: they name the dispute, never the other artist (the audit does).
    work.status, work.note = "transferred", f"transferred by dispute {row.id}: {note}"
    audit.append(session, actor=admin, action=PORTFOLIO_WITHDRAWN, subject=owner.username,
                 details={"item_id": work.id, "sha256": work.sha256, "dispute_id": row.id,
                          "to": claimant.username})
    moved = session.scalar(select(PortfolioItem).where(PortfolioItem.user_id == claimant.id,
                                                       PortfolioItem.sha256 == work.sha256))
    if moved is None:
        moved = PortfolioItem(user_id=claimant.id, sha256=work.sha256,
                              file_name=f"dispute-{row.id}{PurePath(work.file_name).suffix}",  # not the owner's name
                              evidence_url=row.evidence_url, pdq=work.pdq, pdq_quality=work.pdq_quality,
                              fingerprint=work.fingerprint, submitted_at=row.created_at)
        session.add(moved)
    moved.status, moved.decided_at, moved.decided_by_id = "verified", now, admin_user.id
    moved.note = f"transferred by dispute {row.id}: {note}"
    session.flush()
    audit.append(session, actor=admin, action=PORTFOLIO_VERIFIED, subject=claimant.username,
                 details={"item_id": moved.id, "sha256": moved.sha256, "note": moved.note, "dispute_id": row.id,
                          "from": owner.username})
    row.state, row.new_item_id = "transferred", moved.id
    queued = rescan.request(session, trigger=DISPUTE_TRANSFERRED, actor=admin, items=[("portfolio", moved.id)])
    audit.append(session, actor=admin, action=DISPUTE_TRANSFERRED, subject=claimant.username,
                 details={"dispute_id": row.id, "work_id": work.id, "new_work_id": moved.id, "from": owner.username,
                          "to": claimant.username, "note": note, "rescan_id": queued.id if queued else None})
    return _view(session, row)

