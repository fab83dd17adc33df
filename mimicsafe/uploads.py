"""Uploads: every file an artist offers for training passes the gate; the verdict is stored with it.

`check_files` runs the gate and stores nothing. `upload_files` stores the file (content-addressed, so
a retry after a crash reuses it) and then, in one transaction, the upload row, its verdict, its place
in the review queue and the audit entry — all of them or none.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.accounts import get_user
from mimicsafe.blobs import BlobStore
from mimicsafe.db.models import Upload, User
from mimicsafe.errors import PermissionDenied
from mimicsafe.imaging import NamedFile, decode_limits, display_name
from mimicsafe.keys import registered_keys
from mimicsafe.registry import Registry
from mimicsafe.settings import Settings
from ownership import reasons
from ownership.policy import POLICY_VERSION, Evidence, evaluate
from ownership.policy import Upload as GateUpload
from ownership.signatures import parse_manifest

# Rejections an admin cannot usefully override: there is no image to look at, or it is already in.
NOT_REVIEWABLE = {reasons.UNDECODABLE, reasons.TOO_LARGE, reasons.UNSUPPORTED_FORMAT, reasons.DUPLICATE}


@dataclass(frozen=True)
class Outcome:
    evidence: Evidence
    upload_id: int | None = None
    review_state: str = "none"

    def to_json(self) -> dict:
        payload = self.evidence.verdict.to_json()
        if self.upload_id is not None:
            payload["upload_id"] = self.upload_id
            payload["review"] = self.review_state
        return payload


def signature_for(file: NamedFile, signatures: Sequence[NamedFile]) -> bytes | None:
    """Which of the given signature files speaks for `file`: its `FILE.sig`, else a manifest that
    lists it, else the only signature given."""
    for sig in signatures:
        if sig.name == f"{file.name}.sig":
            return sig.data
    import hashlib

    sha256 = hashlib.sha256(file.data).hexdigest()
    for sig in signatures:
        if sig.data.lstrip().startswith(b"{"):
            try:
                if parse_manifest(sig.data).entries_for(sha256):
                    return sig.data
            except Exception:  # a malformed manifest is judged by the gate, when it is the only one
                continue
    return signatures[0].data if len(signatures) == 1 else None


def _artist(session: Session, username: str) -> User:
    user = get_user(session=session, username=username)
    if user.disabled:
        raise PermissionDenied(f"account {username} is disabled")
    if user.consent_withdrawn_at is not None:
        raise PermissionDenied(f"{username} withdrew consent; uploads are closed for this account")
    return user


def _accepted_shas(session: Session, user_id: int) -> set[str]:
    rows = session.scalars(select(Upload.sha256).where(
        Upload.user_id == user_id, Upload.deleted_at.is_(None),
        or_(Upload.decision == "accepted", Upload.review_state == "overridden")))
    return set(rows)


def _evaluate(session: Session, registry: Registry, settings: Settings, user: User, file: NamedFile,
              signature: bytes | None, previous: set[str]) -> Evidence:
    return evaluate(
        GateUpload(file_name=display_name(file.name), data=file.data, artist=user.username, signature=signature),
        index=registry.snapshot(session),
        artist_keys=registered_keys(session=session, user_id=user.id),
        limits=decode_limits(settings),
        previous_uploads=previous,
        min_pdq_quality=settings.pdq_min_quality,
    )


def check_files(*, session: Session, registry: Registry, settings: Settings, username: str,
                files: Sequence[NamedFile], signatures: Sequence[NamedFile] = ()) -> list[Outcome]:
    """The gate's verdicts, nothing stored."""
    user = _artist(session, username)
    previous = _accepted_shas(session, user.id)
    return [Outcome(_evaluate(session, registry, settings, user, f, signature_for(f, signatures), previous))
            for f in files]


def upload_files(*, session: Session, blobs: BlobStore, registry: Registry, settings: Settings, username: str,
                 files: Sequence[NamedFile], signatures: Sequence[NamedFile] = ()) -> list[Outcome]:
    """Run the gate and store each file with its verdict. Accepted files become training-eligible;
    rejected ones (that an admin can judge) enter the review queue."""
    user = _artist(session, username)
    previous = _accepted_shas(session, user.id)
    outcomes = []
    for file in files:
        evidence = _evaluate(session, registry, settings, user, file, signature_for(file, signatures), previous)
        verdict = evidence.verdict
        if len(file.data) <= settings.max_upload_bytes:
            blobs.put(file.data)  # before the row: a crash in between leaves only a reusable blob
        codes = {r.code for r in verdict.reasons}
        review = "pending" if verdict.decision == "rejected" and not codes & NOT_REVIEWABLE else "none"
        row = Upload(user_id=user.id, sha256=verdict.sha256, file_name=display_name(file.name),
                     size_bytes=len(file.data),
                     decision=verdict.decision, verdict=verdict.to_json(), policy_version=POLICY_VERSION,
                     review_state=review)
        session.add(row)
        session.flush()
        audit.append(session, actor=username, action=f"upload.{verdict.decision}", subject=username,
                     details={"upload_id": row.id, "sha256": verdict.sha256, "reasons": sorted(codes),
                              "review": review})
        if verdict.decision == "accepted":
            previous.add(verdict.sha256)
        outcomes.append(Outcome(evidence, row.id, review))
    return outcomes


def eligible_uploads(*, session: Session, user_id: int) -> list[Upload]:
    """What may enter this artist's training set: accepted by the gate, or overridden by an admin."""
    return list(session.scalars(select(Upload).where(
        Upload.user_id == user_id, Upload.deleted_at.is_(None),
        or_(Upload.decision == "accepted", Upload.review_state == "overridden")).order_by(Upload.id)))
