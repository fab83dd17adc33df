"""The protected registry: verified portfolio works, opt-out works and our own outputs, searchable.

The in-memory `MatchIndex` is derived data: built from the database at start and kept in step with
it by replaying the audit log. Every change to the registry is audited in the same transaction as
the change itself (actions in `REGISTRY_ACTIONS`, with the row ids in `details`), so the log doubles
as a change feed: before each search the index applies the entries it has not seen — whichever
process wrote them (a CLI command, another server). A crash loses nothing: the next start rebuilds
from the tables.
"""

from __future__ import annotations

import threading

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mimicsafe.audit import GENESIS_HASH
from mimicsafe.db.models import AuditEntry, AuditHead, Generation, OptOutItem, PortfolioItem, User
from mimicsafe.settings import Settings
from ownership.fingerprint import Fingerprint
from ownership.index import MatchIndex
from ownership.policy import GENERATED_OWNER, OPTOUT_OWNER
from ownership.types import Match

PORTFOLIO_VERIFIED = "portfolio.verify"
PORTFOLIO_WITHDRAWN = "portfolio.withdraw"
OPTOUT_ADDED = "optout.add"
GENERATION_REGISTERED = "generation.register"
REGISTRY_ACTIONS = (PORTFOLIO_VERIFIED, PORTFOLIO_WITHDRAWN, OPTOUT_ADDED, GENERATION_REGISTERED)


def optout_key(item: OptOutItem) -> str:
    """Opt-out entries imported from a hash list may have no SHA-256; they are keyed by their PDQ."""
    return item.sha256 or f"pdq:{(item.pdq or b'').hex()}"


class Registry:
    """A MatchIndex that follows the database. Thread-safe; one per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._index: MatchIndex | None = None
        self._seen: tuple[int, str] = (0, GENESIS_HASH)  # the last audit entry applied: (seq, entry_hash)

    def _new_index(self) -> MatchIndex:
        s = self._settings
        return MatchIndex(pdq_threshold=s.pdq_threshold, min_pdq_quality=s.pdq_min_quality,
                          min_inliers=s.robust_min_inliers, min_coverage=s.robust_min_coverage,
                          min_area=s.robust_min_area, max_nfa=s.robust_max_nfa, cell_chance=s.robust_cell_chance,
                          vote_descriptors=s.robust_vote_descriptors)

    def search(self, session: Session, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        with self._lock:
            index = self._refresh(session)
            return index.search(fingerprint, sha256=sha256)

    def snapshot(self, session: Session) -> _Pinned:
        """An object with the gate's `search(fingerprint, sha256=)` signature, bound to this session."""
        return _Pinned(self, session)

    def position(self, session: Session) -> int:
        """Where the audit log stands for this session (the head's sequence number)."""
        return session.scalar(select(AuditHead.seq)) or 0

    def changed_since(self, session: Session, position: int) -> bool:
        """Whether anything that changes the registry was logged after `position`: one range read on
        the log's primary key, over the entries since then."""
        later = select(AuditEntry.seq).where(AuditEntry.seq > position, AuditEntry.action.in_(REGISTRY_ACTIONS))
        return session.scalar(later.limit(1)) is not None

    def size(self, session: Session) -> int:
        with self._lock:
            return len(self._refresh(session))

    def rebuild(self, session: Session) -> None:
        with self._lock:
            self._index = None
            self._refresh(session)

    # internals ------------------------------------------------------------------------------------
    def _refresh(self, session: Session) -> MatchIndex:
        row = session.execute(select(AuditHead.seq, AuditHead.entry_hash)).one_or_none()
        head: tuple[int, str] = (row[0], row[1]) if row is not None else (0, GENESIS_HASH)
        if self._index is None or not self._seen_still_logged(session, head):
            self._index = self._new_index()
            self._load_all(session)
        elif head[0] > self._seen[0]:
            entries = session.scalars(
                select(AuditEntry)
                .where(AuditEntry.seq > self._seen[0], AuditEntry.seq <= head[0],
                       AuditEntry.action.in_(REGISTRY_ACTIONS))
                .order_by(AuditEntry.seq)
            )
            for entry in entries:
                self._apply(session, entry)
        self._seen = head
        return self._index

    def _seen_still_logged(self, session: Session, head: tuple[int, str]) -> bool:
        """Is the last entry we applied still in this session's log? Not when the transaction that wrote it
        was rolled back after a search in that same transaction had applied it (its sequence numbers are
        then gone, or reused by other entries): the index must be rebuilt from the tables."""
        seen_seq, seen_hash = self._seen
        if head[0] <= seen_seq:
            return head == self._seen
        if seen_seq == 0:
            return True
        return session.scalar(select(AuditEntry.entry_hash).where(AuditEntry.seq == seen_seq)) == seen_hash

    def _load_all(self, session: Session) -> None:
        assert self._index is not None
        verified = session.execute(
            select(PortfolioItem, User.username).join(User, User.id == PortfolioItem.user_id)
            .where(PortfolioItem.status == "verified", PortfolioItem.fingerprint.is_not(None))
        )
        for item, username in verified:
            self._add(item.sha256, username, item.fingerprint)
        for opt in session.scalars(select(OptOutItem)):
            self._add_optout(opt)
        for gen in session.scalars(select(Generation).where(Generation.fingerprint.is_not(None))):
            self._add(gen.image_sha256, GENERATED_OWNER, gen.fingerprint)

    def _apply(self, session: Session, entry: AuditEntry) -> None:
        assert self._index is not None
        details = entry.details
        if entry.action == PORTFOLIO_VERIFIED:
            item = session.get(PortfolioItem, details["item_id"])
            if item is not None and item.status == "verified":
                self._add(item.sha256, entry.subject, item.fingerprint)
        elif entry.action == PORTFOLIO_WITHDRAWN:
            self._index.remove(details["sha256"])
        elif entry.action == OPTOUT_ADDED:
            for opt in session.scalars(select(OptOutItem).where(OptOutItem.id.in_(details["item_ids"]))):
                self._add_optout(opt)
        elif entry.action == GENERATION_REGISTERED:
            gen = session.get(Generation, details["generation_id"])
            if gen is not None:
                self._add(gen.image_sha256, GENERATED_OWNER, gen.fingerprint)

    def _add_optout(self, opt: OptOutItem) -> None:
        assert self._index is not None
        if opt.fingerprint is not None:
            self._add(optout_key(opt), OPTOUT_OWNER, opt.fingerprint)
        else:
            self._index.add_hashes(item_sha256=optout_key(opt), owner=OPTOUT_OWNER, sha256=opt.sha256, pdq=opt.pdq)

    def _add(self, key: str, owner: str, blob: bytes | None) -> None:
        assert self._index is not None
        if blob is not None:
            self._index.add(item_sha256=key, owner=owner, fingerprint=Fingerprint.from_bytes(blob))


class _Pinned:
    def __init__(self, registry: Registry, session: Session) -> None:
        self._registry, self._session = registry, session

    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        return self._registry.search(self._session, fingerprint, sha256=sha256)


def registered_count(session: Session) -> dict[str, int]:
    """Row counts behind the index, for status pages and the crash-consistency test."""
    return {
        "portfolio": session.scalar(select(func.count()).select_from(PortfolioItem)
                                    .where(PortfolioItem.status == "verified")) or 0,
        "optout": session.scalar(select(func.count()).select_from(OptOutItem)) or 0,
        "generated": session.scalar(select(func.count()).select_from(Generation)
                                    .where(Generation.fingerprint.is_not(None))) or 0,
    }
