"""The audit log: append-only and hash-chained.

Each entry stores `prev_hash` (the previous entry's hash) and `entry_hash` = SHA-256 over
`prev_hash` and the canonical JSON of its own content (sequence number included). Editing an entry
breaks its own hash; deleting one breaks the link of the next (and a gap in `seq`); reordering
breaks both. The single `audit_head` row holds the last seq and hash: appends lock it, which
serialises them, and it reveals a deleted tail.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from mimicsafe.db.models import AuditEntry, AuditHead

GENESIS_HASH = "0" * 64


def _as_utc(moment: datetime) -> datetime:
    # SQLite returns naive datetimes; everything we write is UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _content_hash(*, prev_hash: str, seq: int, created_at: datetime, actor: str, action: str,
                  subject: str, details: dict[str, Any]) -> str:
    content = {
        "seq": seq,
        "created_at": _as_utc(created_at).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "subject": subject,
        "details": details,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


def append(session: Session, *, actor: str, action: str, subject: str = "",
           details: dict[str, Any] | None = None) -> AuditEntry:
    """Add one entry inside the caller's transaction, so the fact and its audit entry commit together."""
    details = dict(details or {})
    head = session.execute(select(AuditHead).with_for_update()).scalar_one_or_none()
    if head is None:
        head = AuditHead(id=1, seq=0, entry_hash=GENESIS_HASH)
        session.add(head)
        session.flush()
    created_at = datetime.now(UTC)
    seq = head.seq + 1
    entry_hash = _content_hash(prev_hash=head.entry_hash, seq=seq, created_at=created_at, actor=actor,
                               action=action, subject=subject, details=details)
    entry = AuditEntry(seq=seq, created_at=created_at, actor=actor, action=action, subject=subject,
                       details=details, prev_hash=head.entry_hash, entry_hash=entry_hash)
    session.add(entry)
    head.seq, head.entry_hash = seq, entry_hash
    session.flush()
    return entry


@dataclass(frozen=True)
class ChainReport:
    ok: bool
    entries: int
    first_bad_seq: int | None = None
    problem: str = ""


def verify_chain(session: Session) -> ChainReport:
    """Walk the log in sequence order and report the first entry that was edited, deleted or reordered."""
    prev_hash, expected_seq, count = GENESIS_HASH, 1, 0
    for entry in session.scalars(select(AuditEntry).order_by(AuditEntry.id)):
        count += 1
        if entry.seq != expected_seq:
            what = "deleted" if entry.seq > expected_seq else "reordered or duplicated"
            return ChainReport(False, count, expected_seq,
                               f"entry {expected_seq} is missing or out of place (found {entry.seq}: {what})")
        if entry.prev_hash != prev_hash:
            return ChainReport(False, count, entry.seq,
                               f"entry {entry.seq} does not follow entry {entry.seq - 1} (deleted or reordered)")
        recomputed = _content_hash(prev_hash=entry.prev_hash, seq=entry.seq, created_at=entry.created_at,
                                   actor=entry.actor, action=entry.action, subject=entry.subject,
                                   details=entry.details)
        if recomputed != entry.entry_hash:
            return ChainReport(False, count, entry.seq, f"entry {entry.seq} was edited after it was written")
        prev_hash, expected_seq = entry.entry_hash, expected_seq + 1
    head = session.get(AuditHead, 1)
    if head is not None and (head.seq != expected_seq - 1 or head.entry_hash != prev_hash):
        return ChainReport(False, count, expected_seq,
                           f"the log ends at entry {expected_seq - 1} but entry {head.seq} was written (tail deleted)")
    return ChainReport(True, count)
