"""The near-duplicate index over registered works: verified portfolios, opt-outs, our outputs.

Three ways to be found, cheapest first:
1. `sha256` — the identical file (a dict).
2. `pdq` — PDQ Hamming distance ≤ threshold against any of the query's 8 dihedral hashes, so
   re-encoded, resized, recoloured, blurred, flipped and 90°-rotated copies are found. A FAISS binary
   index answers it without scanning in Python.
3. `local_features` — crops, small rotations, borders, overlays and screenshots defeat PDQ. Each
   registered work's ORB descriptors sit in a FAISS binary index; a query's descriptors (as is and
   mirrored) vote for the works they are close to, and only the top candidates go through geometric
   verification and alignment (`ownership.local_features.verify`), which decides — never the raw vote.

The index is derived data: the product rebuilds it from the database at start and after a crash.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import faiss
import numpy as np

from ownership.fingerprint import Fingerprint
from ownership.local_features import Registered, VerifyParams, registered_from, verify
from ownership.types import Match

PDQ_BITS = 256
# Descriptor ids are item_number * _DESC_STRIDE + keypoint number.
_DESC_STRIDE = 1 << 12


@dataclass
class _Item:
    number: int
    key: str
    owner: str
    sha256: str | None
    pdq: bytes | None
    registered: Registered | None


class MatchIndex:
    """In-memory; not thread-safe on its own (the product serialises access)."""

    def __init__(self, *, pdq_threshold: int = 31, verify_params: VerifyParams | None = None,
                 candidates: int = 8, descriptor_max_hamming: int = 64, min_votes: int = 4) -> None:
        if not 0 <= pdq_threshold < PDQ_BITS:
            raise ValueError(f"pdq_threshold must be in 0..{PDQ_BITS - 1}, got {pdq_threshold}")
        self.pdq_threshold = pdq_threshold
        self.verify_params = verify_params or VerifyParams()
        self.candidates = candidates
        self.descriptor_max_hamming = descriptor_max_hamming
        self.min_votes = min_votes
        self._items: dict[str, _Item] = {}
        self._by_number: dict[int, _Item] = {}
        self._by_sha: dict[str, set[str]] = {}
        self._next = 1
        self._pdq = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(PDQ_BITS))
        self._desc = faiss.IndexBinaryIDMap2(faiss.IndexBinaryFlat(PDQ_BITS))

    def __len__(self) -> int:
        return len(self._items)

    # changes --------------------------------------------------------------------------------------
    def add(self, *, item_sha256: str, owner: str, fingerprint: Fingerprint) -> None:
        """Register a work under `item_sha256` (its key); adding the same key again replaces it."""
        registered = registered_from(fingerprint.robust)
        self._insert(item_sha256, owner, sha256=item_sha256 if _is_sha256(item_sha256) else None,
                     pdq=fingerprint.pdq, registered=registered)

    def add_hashes(self, *, item_sha256: str, owner: str, sha256: str | None, pdq: bytes | None) -> None:
        """Register a work known only by hashes (an imported opt-out list): exact and PDQ matching only."""
        if sha256 is None and pdq is None:
            raise ValueError("add_hashes needs sha256 or pdq")
        if pdq is not None and len(pdq) != PDQ_BITS // 8:
            raise ValueError(f"pdq must be {PDQ_BITS // 8} bytes, got {len(pdq)}")
        self._insert(item_sha256, owner, sha256=sha256, pdq=pdq, registered=None)

    def remove(self, item_sha256: str) -> None:
        item = self._items.pop(item_sha256, None)
        if item is None:
            return
        del self._by_number[item.number]
        if item.sha256 is not None:
            keys = self._by_sha.get(item.sha256, set())
            keys.discard(item.key)
            if not keys:
                self._by_sha.pop(item.sha256, None)
        self._pdq.remove_ids(np.array([item.number], dtype=np.int64))
        if item.registered is not None and len(item.registered.keypoints):
            n = len(item.registered.keypoints)
            ids = item.number * _DESC_STRIDE + np.arange(n, dtype=np.int64)
            self._desc.remove_ids(ids)

    def _insert(self, key: str, owner: str, *, sha256: str | None, pdq: bytes | None,
                registered: Registered | None) -> None:
        self.remove(key)
        item = _Item(self._next, key, owner, sha256, pdq, registered)
        self._next += 1
        self._items[key] = item
        self._by_number[item.number] = item
        if sha256 is not None:
            self._by_sha.setdefault(sha256, set()).add(key)
        if pdq is not None:
            self._pdq.add_with_ids(np.frombuffer(pdq, np.uint8).reshape(1, -1),
                                   np.array([item.number], dtype=np.int64))
        if registered is not None and len(registered.keypoints):
            desc = np.ascontiguousarray(registered.keypoints.descriptors[:_DESC_STRIDE], np.uint8)
            ids = item.number * _DESC_STRIDE + np.arange(len(desc), dtype=np.int64)
            self._desc.add_with_ids(desc, ids)

    # lookup ---------------------------------------------------------------------------------------
    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        """Every registered work the image matches, best evidence first (sha256, then pdq, then local)."""
        found: dict[str, Match] = {}
        if sha256 is not None:
            for key in sorted(self._by_sha.get(sha256, ())):
                item = self._items[key]
                found[key] = Match(item.owner, key, "sha256", 0)
        for key, distance in self._pdq_hits(fingerprint).items():
            if key not in found:
                found[key] = Match(self._items[key].owner, key, "pdq", float(distance))
        for key, inliers in self._local_hits(fingerprint, exclude=set(found)).items():
            found[key] = Match(self._items[key].owner, key, "local_features", float(inliers))
        order = {"sha256": 0, "pdq": 1, "local_features": 2}
        return sorted(found.values(),
                      key=lambda m: (order[m.method], m.score if m.method != "local_features" else -m.score))

    def _pdq_hits(self, fingerprint: Fingerprint) -> dict[str, int]:
        if self._pdq.ntotal == 0:
            return {}
        queries = np.frombuffer(b"".join(fingerprint.pdq_dihedral), np.uint8).reshape(-1, PDQ_BITS // 8)
        lims, distances, ids = self._pdq.range_search(np.ascontiguousarray(queries), self.pdq_threshold + 1)
        best: dict[str, int] = {}
        for number, distance in zip(ids.tolist(), distances.tolist(), strict=True):
            key = self._by_number[int(number)].key
            best[key] = min(best.get(key, PDQ_BITS), int(distance))
        return best

    def _local_hits(self, fingerprint: Fingerprint, *, exclude: set[str]) -> dict[str, int]:
        robust = fingerprint.robust
        if self._desc.ntotal == 0:
            return {}
        descriptors = [d for d in (robust.view.descriptors, robust.mirror.descriptors) if len(d)]
        if not descriptors:
            return {}
        query = np.ascontiguousarray(np.concatenate(descriptors), np.uint8)
        distances, ids = self._desc.search(query, 2)
        votes: Counter[int] = Counter()
        for row_d, row_i in zip(distances, ids, strict=True):
            seen = set()
            for d, i in zip(row_d.tolist(), row_i.tolist(), strict=True):
                if i < 0 or d > self.descriptor_max_hamming:
                    continue
                number = int(i) // _DESC_STRIDE
                if number not in seen:
                    votes[number] += 1
                    seen.add(number)
        hits: dict[str, int] = {}
        for number, count in votes.most_common(self.candidates):
            item = self._by_number.get(number)
            if count < self.min_votes or item is None or item.key in exclude or item.registered is None:
                continue
            result = verify(robust, item.registered, self.verify_params)
            if result.matched:
                hits[item.key] = result.inliers
        return hits


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
