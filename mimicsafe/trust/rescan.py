"""Re-scan the accepted uploads when works become protected: a resumable job with progress.

Whoever protects works (`portfolio.verify_items`, `optout.add_files`/`import_hashes`, a dispute
transferred) calls `request` in the same transaction: the `Rescan` row is committed with the
protection, so a crash between the two cannot lose it. After the commit the caller `dispatch`es it
to the job queue (the verification does not wait for it); a worker that starts re-queues any re-scan
left unfinished (`recover`).

`run` takes the protected works one at a time:
1. Candidates: the accepted-uploads index (`mimicsafe.trust.index`) proposes the uploads that may
   match the work, outside any write transaction.
2. Confirm: each candidate upload's stored fingerprint is searched against the registry exactly as
   the gate searches an upload; it matches when the gate's answer names this work, owned by someone
   other than the upload's artist.
3. In one write transaction: suspend each confirmed upload still eligible (`suspension.suspend`),
   and advance the re-scan's position. A re-scan interrupted anywhere resumes at that position; an
   item done twice suspends nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe import audit
from mimicsafe.context import Instance
from mimicsafe.db.models import OptOutItem, PortfolioItem, Rescan, Upload, User
from mimicsafe.errors import BlobError, NotFoundError
from mimicsafe.imaging import decode_limits, fingerprint_of
from mimicsafe.registry import optout_key
from mimicsafe.trust import suspension
from mimicsafe.trust.index import eligible_condition
from ownership.decode import decode_image
from ownership.errors import DecodeError
from ownership.fingerprint import Fingerprint
from ownership.policy import OPTOUT_OWNER

log = logging.getLogger(__name__)

RESCAN_TASK = "trust_rescan"
RESCAN_QUEUED = "rescan.queue"
RESCAN_DONE = "rescan.done"
RESCAN_FAILED = "rescan.fail"
RESCAN_ACTOR = "rescan"


def request(session: Session, *, trigger: str, actor: str, items: Sequence[tuple[str, int]]) -> Rescan | None:
    """Record a re-scan of these protected works ((kind, id) pairs), in the caller's transaction."""
    if not items:
        return None
    row = Rescan(trigger=trigger, actor=actor, items=[{"kind": k, "id": i} for k, i in items], position=0,
                 total=len(items), suspended=0, status="queued")
    session.add(row)
    session.flush()
    audit.append(session, actor=actor, action=RESCAN_QUEUED, subject="rescan",
                 details={"rescan_id": row.id, "trigger": trigger, "items": row.items})
    return row


def dispatch(instance: Instance, queue: Any) -> list[int]:
    """Queue every re-scan not yet finished (after the transaction that requested it committed).

    A queue that is down loses nothing: the rows stay queued and the next worker start re-queues them."""
    with instance.reading() as session:
        ids = list(session.scalars(select(Rescan.id).where(Rescan.status.in_(("queued", "running")))
                                   .order_by(Rescan.id)))
    for rescan_id in ids:
        try:
            queue.enqueue(RESCAN_TASK, rescan_id)
        except Exception as exc:  # the protection is committed; the re-scan waits for a worker
            log.warning("re-scan %d could not be queued now (%s); a worker will pick it up when it starts",
                        rescan_id, exc)
    return ids


def start(instance: Instance) -> list[int]:
    """`dispatch` on the instance's job queue (for callers that hold none, e.g. an admin page)."""
    from mimicsafe.jobs import build_queue  # the queue registers this module's task: imported late

    return dispatch(instance, build_queue(instance))


def recover(instance: Instance) -> list[int]:
    """Re-scans a worker should (re)start: those queued or interrupted."""
    with instance.reading() as session:
        return list(session.scalars(select(Rescan.id).where(Rescan.status.in_(("queued", "running")))
                                    .order_by(Rescan.id)))


def protected_work(session: Session, kind: str, item_id: int) -> tuple[suspension.Protected, Fingerprint | None,
                                                                       str | None, bytes | None] | None:
    """The work, with what the index is searched by: (work, fingerprint, sha256, pdq)."""
    if kind == "portfolio":
        item = session.get(PortfolioItem, item_id)
        if item is None or item.status != "verified":
            return None  # withdrawn or denied since: it protects nothing
        owner = session.get(User, item.user_id)
        work = suspension.Protected("portfolio", item.id, item.sha256, owner.username if owner else "?", item.user_id)
        return work, Fingerprint.from_bytes(item.fingerprint) if item.fingerprint else None, item.sha256, item.pdq
    opt = session.get(OptOutItem, item_id)
    if opt is None:
        return None
    work = suspension.Protected("optout", opt.id, optout_key(opt), OPTOUT_OWNER, None)
    return work, Fingerprint.from_bytes(opt.fingerprint) if opt.fingerprint else None, opt.sha256, opt.pdq


def backfill_fingerprints(instance: Instance, *, batch: int = 100) -> int:
    """Fingerprint eligible uploads stored before fingerprints were kept (decoded from their blobs)."""
    done = 0
    while True:
        with instance.reading() as session:
            todo = [(u.id, u.sha256) for u in session.scalars(
                select(Upload).where(Upload.fingerprint.is_(None), Upload.deleted_at.is_(None), eligible_condition())
                .order_by(Upload.id).limit(batch))]
        if not todo:
            return done
        blobs = {}
        for upload_id, sha256 in todo:
            try:
                image = decode_image(instance.blobs.get(sha256), decode_limits(instance.settings))
                blobs[upload_id] = fingerprint_of(image, instance.settings).to_bytes()
            except (DecodeError, BlobError, NotFoundError) as exc:  # the training loader refuses it later
                log.warning("upload %d cannot be fingerprinted for re-scans: %s", upload_id, exc)
                blobs[upload_id] = b""
        with instance.transaction() as session:
            for upload_id, blob in blobs.items():
                row = session.get(Upload, upload_id)
                if row is not None and row.fingerprint is None:
                    row.fingerprint = blob
        done += len(todo)


def _confirm(instance: Instance, session: Session, work: suspension.Protected, upload: Upload,
             artist: str) -> list[dict[str, Any]]:
    """The gate's own search for the upload: the matches naming this work, if it is someone else's."""
    if not upload.fingerprint or work.owner == artist:
        return []
    found = instance.registry.search(session, Fingerprint.from_bytes(upload.fingerprint), sha256=upload.sha256)
    return [{"method": m.method, "score": m.score, "kind": m.kind, "item_sha256": m.item_sha256}
            for m in found if m.item_sha256 == work.key and m.owner != artist]


def _eligible(session: Session, upload: Upload) -> bool:
    return (upload.deleted_at is None and upload.suspended_at is None
            and (upload.decision == "accepted" or upload.review_state == "overridden"))


def find_matches(instance: Instance, session: Session, kind: str, item_id: int
                 ) -> tuple[suspension.Protected | None, list[tuple[int, list[dict[str, Any]]]]]:
    """The accepted uploads the work matches: [(upload id, the gate's matches naming the work)]."""
    resolved = protected_work(session, kind, item_id)
    if resolved is None:
        return None, []
    work, fingerprint, sha256, pdq = resolved
    shas = instance.accepted.candidates(session, fingerprint=fingerprint, sha256=sha256, pdq=pdq)
    if not shas:
        return work, []
    rows = session.execute(select(Upload, User.username).join(User, User.id == Upload.user_id)
                           .where(Upload.sha256.in_(sorted(shas))).order_by(Upload.id))
    found = []
    for upload, artist in rows:
        if not _eligible(session, upload) or work.key in suspension.overridden_keys(session, upload.id):
            continue
        matches = _confirm(instance, session, work, upload, artist)
        if matches:
            found.append((upload.id, matches))
    return work, found


def run(instance: Instance, rescan_id: int) -> dict[str, Any]:
    """Run (or resume) one re-scan to the end; returns its progress."""
    with instance.transaction() as session:
        row = session.get(Rescan, rescan_id)
        if row is None:
            raise ValueError(f"re-scan {rescan_id} does not exist")
        if row.status in ("done", "failed"):
            return progress(row)
        row.status, row.started_at = "running", row.started_at or datetime.now(UTC)
    try:
        if backfill_fingerprints(instance):  # rows the index follows by the audit log did not change: rebuild
            with instance.reading() as session:
                instance.accepted.rebuild(session)
        while True:
            with instance.reading() as session:
                row = session.get(Rescan, rescan_id)
                assert row is not None
                position = row.position
                if position >= row.total:
                    break
                item = row.items[position]
                work, found = find_matches(instance, session, item["kind"], int(item["id"]))
            with instance.transaction() as session:
                row = session.get(Rescan, rescan_id)
                assert row is not None
                if row.position != position:
                    continue  # another worker did this item meanwhile
                for upload_id, matches in found:
                    upload = session.get(Upload, upload_id)
                    if work is not None and upload is not None and _eligible(session, upload):
                        suspension.suspend(session, upload=upload, work=work, matches=matches, rescan_id=rescan_id,
                                           actor=RESCAN_ACTOR)
                        row.suspended += 1
                row.position = position + 1
        with instance.transaction() as session:
            row = session.get(Rescan, rescan_id)
            assert row is not None
            row.status, row.finished_at = "done", datetime.now(UTC)
            audit.append(session, actor=RESCAN_ACTOR, action=RESCAN_DONE, subject="rescan",
                         details={"rescan_id": row.id, "items": row.total, "suspended": row.suspended})
            return progress(row)
    except Exception as exc:
        log.exception("re-scan %d failed", rescan_id)
        with instance.transaction() as session:
            row = session.get(Rescan, rescan_id)
            assert row is not None
            row.status, row.error, row.finished_at = "failed", f"{type(exc).__name__}: {exc}", datetime.now(UTC)
            audit.append(session, actor=RESCAN_ACTOR, action=RESCAN_FAILED, subject="rescan",
                         details={"rescan_id": row.id, "position": row.position, "error": row.error})
        raise


def progress(row: Rescan) -> dict[str, Any]:
    return {"rescan_id": row.id, "trigger": row.trigger, "status": row.status, "position": row.position,
            "total": row.total, "suspended": row.suspended, "error": row.error,
            "created_at": row.created_at.isoformat(timespec="seconds") if row.created_at else None,
            "finished_at": row.finished_at.isoformat(timespec="seconds") if row.finished_at else None}


def list_rescans(session: Session, *, limit: int = 50) -> list[Rescan]:
    return list(session.scalars(select(Rescan).order_by(Rescan.id.desc()).limit(limit)))
