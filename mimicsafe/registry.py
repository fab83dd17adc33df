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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mimicsafe.audit import GENESIS_HASH
from mimicsafe.db.models import AuditEntry, AuditHead, Generation, OptOutItem, PortfolioItem, User
from mimicsafe.index_builds import current_build_name, open_current_build
from mimicsafe.settings import Settings
from ownership.fingerprint import Fingerprint
from ownership.index import MatchIndex
from ownership.policy import GENERATED_OWNER, OPTOUT_OWNER
from ownership.types import Match

if TYPE_CHECKING:
    from ownership.index_store import BuildWriter

PORTFOLIO_VERIFIED = "portfolio.verify"
PORTFOLIO_WITHDRAWN = "portfolio.withdraw"
OPTOUT_ADDED = "optout.add"
GENERATION_REGISTERED = "generation.register"
REGISTRY_ACTIONS = (PORTFOLIO_VERIFIED, PORTFOLIO_WITHDRAWN, OPTOUT_ADDED, GENERATION_REGISTERED)


def optout_key(item: OptOutItem) -> str:
    """Opt-out entries imported from a hash list may have no SHA-256; they are keyed by their PDQ."""
    return item.sha256 or f"pdq:{(item.pdq or b'').hex()}"


@dataclass(frozen=True)
class RegisteredRow:
    """One work the index holds, as stored: a fingerprint blob, or (hash-only opt-outs) its hashes."""

    key: str
    owner: str
    fingerprint: bytes | None
    sha256: str | None = None
    pdq: bytes | None = None


def registered_rows(session: Session, *, batch: int = 256) -> Iterator[RegisteredRow]:
    """Every registered work, streamed (`yield_per`: a batch of rows in memory at a time), in the one
    order the in-memory index and a build both use: verified portfolio works, opt-outs, generated."""
    verified = session.execute(
        select(PortfolioItem.sha256, User.username, PortfolioItem.fingerprint)
        .join(User, User.id == PortfolioItem.user_id)
        .where(PortfolioItem.status == "verified", PortfolioItem.fingerprint.is_not(None))
        .order_by(PortfolioItem.id).execution_options(yield_per=batch)
    )
    for sha256, username, blob in verified:
        yield RegisteredRow(sha256, username, blob)
    optouts = session.execute(select(OptOutItem.sha256, OptOutItem.pdq, OptOutItem.fingerprint)
                              .order_by(OptOutItem.id).execution_options(yield_per=batch))
    for opt_sha256, pdq, opt_blob in optouts:
        yield RegisteredRow(opt_sha256 or f"pdq:{(pdq or b'').hex()}", OPTOUT_OWNER, opt_blob, opt_sha256, pdq)
    generated = session.execute(select(Generation.image_sha256, Generation.fingerprint)
                                .where(Generation.fingerprint.is_not(None))
                                .order_by(Generation.id).execution_options(yield_per=batch))
    for gen_sha256, gen_blob in generated:
        yield RegisteredRow(gen_sha256, GENERATED_OWNER, gen_blob)


def add_row(index: MatchIndex | BuildWriter, row: RegisteredRow) -> None:
    if row.fingerprint is not None:
        index.add(item_sha256=row.key, owner=row.owner, fingerprint=Fingerprint.from_bytes(row.fingerprint))
    elif row.owner == OPTOUT_OWNER:
        index.add_hashes(item_sha256=row.key, owner=row.owner, sha256=row.sha256, pdq=row.pdq)


def index_thresholds(settings: Settings) -> dict[str, Any]:
    """The MatchIndex keyword arguments the settings give (a build must be opened with the same)."""
    s = settings
    return {"pdq_threshold": s.pdq_threshold, "min_pdq_quality": s.pdq_min_quality,
            "min_inliers": s.robust_min_inliers, "min_coverage": s.robust_min_coverage,
            "min_area": s.robust_min_area, "max_nfa": s.robust_max_nfa, "cell_chance": s.robust_cell_chance,
            "vote_descriptors": s.robust_vote_descriptors}


class ReadWriteLock:
    """Many readers or one writer. Look-ups read the index together; applying changes writes. A waiting
    writer holds back new readers, so a steady stream of look-ups cannot starve it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class Registry:
    """A MatchIndex that follows the database. Thread-safe; one per process.

    At first use it opens the latest index build under home (`mimicsafe.index_builds`), memory-mapped,
    and replays the audit entries logged after the build's position; without a usable build it loads
    every registered work from the tables (slower, the same answers). When a newer build appears it
    switches to it at the next look-up. Look-ups run in parallel; applying changes excludes them.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = ReadWriteLock()
        self._index: MatchIndex | None = None
        self._seen: tuple[int, str] = (0, GENESIS_HASH)  # the last audit entry applied: (seq, entry_hash)
        self._build: str | None = None  # the build the index was opened from (its directory name)
        self.opened_from: str | None = None  # for status pages and tests: "build <id>" or "tables"

    def _new_index(self) -> MatchIndex:
        return MatchIndex(**index_thresholds(self._settings))

    def search(self, session: Session, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        head = head_of(session)
        with self._lock.reading():
            if self._current(head):
                assert self._index is not None
                return self._index.search(fingerprint, sha256=sha256)
        with self._lock.writing():
            return self._refresh(session, head).search(fingerprint, sha256=sha256)

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
        with self._lock.writing():
            return len(self._refresh(session, head_of(session)))

    def rebuild(self, session: Session) -> None:
        with self._lock.writing():
            self._index = None
            self._refresh(session, head_of(session))

    # internals ------------------------------------------------------------------------------------
    def _current(self, head: tuple[int, str]) -> bool:
        """The index reflects exactly this head, from the latest build (one readlink)."""
        return self._index is not None and head == self._seen and current_build_name(self._settings) == self._build

    def _refresh(self, session: Session, head: tuple[int, str]) -> MatchIndex:
        latest = current_build_name(self._settings)
        if self._index is None or not self._seen_still_logged(session, head) or latest != self._build:
            self._open(session, head, latest)
        elif head[0] > self._seen[0]:
            self._replay(session, head)
        assert self._index is not None
        self._seen = head
        self._index.prepare()
        return self._index

    def _open(self, session: Session, head: tuple[int, str], latest: str | None) -> None:
        opened = open_current_build(self._settings, session, head) if latest is not None else None
        if opened is not None:
            self._index, self._seen, self._build = opened.index, opened.position, opened.name
            self.opened_from = f"build {opened.name}"
            self._replay(session, head)
        else:
            self._index, self._build = self._new_index(), latest
            self.opened_from = "tables"
            for row in registered_rows(session):
                add_row(self._index, row)

    def _replay(self, session: Session, head: tuple[int, str]) -> None:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.seq > self._seen[0], AuditEntry.seq <= head[0], AuditEntry.action.in_(REGISTRY_ACTIONS))
            .order_by(AuditEntry.seq)
        )
        for entry in entries:
            self._apply(session, entry)

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


def head_of(session: Session) -> tuple[int, str]:
    """The audit log's head as this session sees it: (seq, entry_hash)."""
    row = session.execute(select(AuditHead.seq, AuditHead.entry_hash)).one_or_none()
    return (row[0], row[1]) if row is not None else (0, GENESIS_HASH)


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
