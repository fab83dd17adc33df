"""The accepted uploads, searchable by a work that became protected after they were accepted.

The gate searches one upload against every protected work (`mimicsafe.registry`). A re-scan asks
the other question: which accepted uploads does this newly protected work match? This index answers
it without re-reading every upload: a `MatchIndex` of the accepted uploads' stored fingerprints
(keyed by the upload's SHA-256; the database resolves a key to the uploads with those bytes), plus
the uploads' dihedral PDQ hashes for works known only by hashes (an imported opt-out list).

It only proposes candidates. Matching is not symmetric: the gate verifies a query against a
registered work (a crop of a work passes; the work checked against the crop is judged in the crop's
frame, and the ratio test sees other neighbours), and with the roles swapped the gate's thresholds
missed a third of its own local-feature matches (measured on the synthetic illustrations of
`benchmarks/watermark.py`). So the index proposes by PDQ, SHA-256 and descriptor votes alone (every
verification threshold at its floor and no a-contrario test, a lower relative-vote floor and 64
candidates instead of 8), and every candidate is then judged by the gate's own search of the
upload's fingerprint against the registry (`mimicsafe.trust.rescan`): the same matching and
thresholds as at upload time.
`python -m benchmarks.rescan` compares the matches with a brute-force re-check of every upload.

Like the registry, it is derived data: built from the tables on first use and kept current by
replaying the audit entries that make an upload eligible (`upload.accepted`, `review.approve`).
Uploads that later stop being eligible (deleted, suspended) stay in it and are filtered out when a
candidate is resolved. Memory: about 40 KB per accepted upload, as the registry's index.
"""

from __future__ import annotations

import math
import threading

import numpy as np
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from mimicsafe.audit import GENESIS_HASH
from mimicsafe.db.models import AuditEntry, AuditHead, Upload
from mimicsafe.settings import Settings
from ownership.fingerprint import Fingerprint
from ownership.index import MatchIndex, hamming_words, hashes_to_words

UPLOAD_ACCEPTED = "upload.accepted"
REVIEW_APPROVED = "review.approve"
INDEX_ACTIONS = (UPLOAD_ACCEPTED, REVIEW_APPROVED)
# Candidates verified per protected work (the gate verifies 8): a popular stolen work may have been
# uploaded by many accounts, and every copy must be found.
RESCAN_CANDIDATES = 64
# A candidate needs this share of the best-voted upload's votes (the gate: 0.35). Lower: the best-voted
# upload may be an exact copy with far more votes than a cropped one.
RESCAN_RELATIVE_VOTES = 0.1
# The fewest points a similarity transform is fitted to (VerifyParams refuses fewer): any geometry counts.
RESCAN_MIN_INLIERS = 3
_UPLOAD_OWNER = "upload"


def eligible_condition():  # type: ignore[no-untyped-def]
    """Uploads that are training-eligible by the gate's or an admin's decision (suspension aside)."""
    return or_(Upload.decision == "accepted", Upload.review_state == "overridden")


class AcceptedIndex:
    """A MatchIndex of the accepted uploads that follows the database. Thread-safe; one per process."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._index: MatchIndex | None = None
        self._pdq_keys: list[str] = []
        self._pdq_words: list[np.ndarray] = []  # per upload: (8, 4) uint64, its dihedral PDQ hashes
        self._seen: tuple[int, str] = (0, GENESIS_HASH)

    def _new_index(self) -> MatchIndex:
        s = self._settings
        # Candidates only (see the module docstring): votes decide, the gate's search then judges.
        return MatchIndex(pdq_threshold=s.pdq_threshold, min_pdq_quality=s.pdq_min_quality,
                          min_inliers=RESCAN_MIN_INLIERS, min_coverage=0.0, min_area=0.0, min_cells=0,
                          max_nfa=math.inf,  # no a-contrario test either: the gate's own search judges
                          vote_descriptors=s.robust_vote_descriptors, candidates=RESCAN_CANDIDATES,
                          relative_votes=RESCAN_RELATIVE_VOTES)

    def candidates(self, session: Session, *, fingerprint: Fingerprint | None, sha256: str | None,
                   pdq: bytes | None) -> set[str]:
        """SHA-256s of accepted uploads that may match the work (a superset of the gate's matches)."""
        with self._lock:
            index = self._refresh(session)
            if fingerprint is not None:
                return {m.item_sha256 for m in index.search(fingerprint, sha256=sha256)}
            found = {sha256} if sha256 else set()
            if pdq is not None and self._pdq_words:
                words = np.concatenate(self._pdq_words)
                query = hashes_to_words(np.frombuffer(pdq, np.uint8).reshape(1, 32))[0]
                rows = np.flatnonzero(hamming_words(words, query) <= self._settings.pdq_threshold)
                found |= {self._pdq_keys[int(r) // 8] for r in rows}
            return found

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
        if self._index is None or head[0] < self._seen[0]:
            self._index, self._pdq_keys, self._pdq_words = self._new_index(), [], []
            query = select(Upload).where(Upload.deleted_at.is_(None), Upload.fingerprint.is_not(None),
                                         eligible_condition())
            for upload in session.scalars(query.execution_options(yield_per=500)):
                if upload.fingerprint:  # empty: the blob could not be fingerprinted (see rescan.backfill)
                    self._add(upload)
        elif head[0] > self._seen[0]:
            entries = session.scalars(select(AuditEntry).where(
                AuditEntry.seq > self._seen[0], AuditEntry.seq <= head[0], AuditEntry.action.in_(INDEX_ACTIONS)))
            for entry in entries:
                added = session.get(Upload, int(entry.details.get("upload_id", 0)))
                if added is not None and added.fingerprint:
                    self._add(added)
        self._seen = head
        return self._index

    def _add(self, upload: Upload) -> None:
        assert self._index is not None and upload.fingerprint is not None
        fingerprint = Fingerprint.from_bytes(upload.fingerprint)
        self._index.add(item_sha256=upload.sha256, owner=_UPLOAD_OWNER, fingerprint=fingerprint)
        if fingerprint.pdq_quality >= self._settings.pdq_min_quality:
            hashes = np.frombuffer(b"".join(fingerprint.pdq_dihedral), np.uint8).reshape(-1, 32)
            self._pdq_keys.append(upload.sha256)
            self._pdq_words.append(hashes_to_words(hashes))
