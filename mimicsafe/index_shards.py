"""The index split into shards held by Ray actors, for registries one machine cannot hold.

The single-machine default stays the embedded `MatchIndex` over one build (`mimicsafe.index_builds`).
At larger scale the works are placed in `n` shards by their key (a hash of the work's id, so a work
always lands in the same shard and a removal finds it), each shard is an ordinary build
(`ownership.index_store`) held, memory-mapped, by one Ray actor, and a look-up is sent to every shard
at once and the answers merged in the order `MatchIndex.search` gives (SHA-256, then PDQ closest
first, then local features most inliers first). Ray does the transport, placement, restarts and
scheduling; nothing here is an RPC layer of our own. Deployment: docs/gate.md ("Shards").
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from mimicsafe.registry import ReadWriteLock
from ownership.fingerprint import Fingerprint
from ownership.index import MatchIndex
from ownership.index_store import BuildWriter, open_build
from ownership.types import EVIDENCE_KINDS, Match

METHOD_ORDER = {"sha256": 0, "pdq": 1, "local_features": 2}


def shard_of(key: str, shards: int) -> int:
    """The shard of a work: its key's SHA-256 modulo the number of shards (even, and stable)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") % shards


def merge(answers: Iterable[list[Match]]) -> list[Match]:
    """The shards' matches as one index's: each work is in one shard, so a plain union, re-sorted."""
    found = [m for answer in answers for m in answer]
    return sorted(found, key=lambda m: (METHOD_ORDER[m.method], EVIDENCE_KINDS.index(m.kind),
                                        m.score if m.method != "local_features" else -m.score))


def write_shards(
    rows: Iterable[tuple[str, str, Any]],
    directory: Path,
    shards: int,
    *,
    pdq_threshold: int = 31,
    min_pdq_quality: int = 50,
) -> list[Path]:
    """Write one build per shard under `directory/shard-<i>` from (key, owner, fingerprint or
    (sha256, pdq)) rows, each row to the shard of its key. Returns the builds' directories."""
    paths = [directory / f"shard-{i:04d}" for i in range(shards)]
    writers = [BuildWriter(p, pdq_threshold=pdq_threshold, min_pdq_quality=min_pdq_quality) for p in paths]
    for key, owner, what in rows:
        writer = writers[shard_of(key, shards)]
        if isinstance(what, Fingerprint):
            writer.add(item_sha256=key, owner=owner, fingerprint=what)
        else:
            sha256, pdq = what
            writer.add_hashes(item_sha256=key, owner=owner, sha256=sha256, pdq=pdq)
    for writer in writers:
        writer.finish({"shards": shards})
    return paths


class _Shard:
    """One shard: a build opened memory-mapped, plus the works added since (Ray runs it as an actor)."""

    def __init__(self, build: str, thresholds: dict[str, Any]) -> None:
        self.index: MatchIndex = open_build(Path(build), **thresholds)
        self.index.prepare()
        self._lock = ReadWriteLock()  # Ray runs look-ups in several threads of the actor

    def search(self, fingerprint: Fingerprint, sha256: str | None, compared: int | None = None) -> list[Match]:
        with self._lock.reading():
            return self.index.search(fingerprint, sha256=sha256, compared=compared)

    def add(self, key: str, owner: str, fingerprint: Fingerprint) -> None:
        with self._lock.writing():
            self.index.add(item_sha256=key, owner=owner, fingerprint=fingerprint)
            self.index.prepare()

    def remove(self, key: str) -> None:
        with self._lock.writing():
            self.index.remove(key)

    def size(self) -> int:
        return len(self.index)


class ShardedIndex:
    """`MatchIndex`'s look-up and changes over shards held by Ray actors (`ray.init()` first: a local
    cluster in tests, `ray.init(address="auto")` on a cluster). `max_concurrency` look-ups run at once
    in each actor (look-ups only read; a change waits for Ray to deliver it in order per caller)."""

    def __init__(
        self,
        builds: list[Path],
        *,
        thresholds: dict[str, Any] | None = None,
        cpus_per_shard: float = 1,
        max_concurrency: int = 4,
    ) -> None:
        import ray  # optional: `pip install 'mimicsafe[cluster]'`

        self._ray = ray
        actor: Any = ray.remote(_Shard)
        self._shards = [
            actor.options(num_cpus=cpus_per_shard, max_concurrency=max_concurrency).remote(str(b), thresholds or {})
            for b in builds
        ]
        self._total = self._count()  # kept current by add/remove, so a look-up need not ask every shard

    def _count(self) -> int:
        return sum(self._ray.get([s.size.remote() for s in self._shards]))

    def __len__(self) -> int:
        return self._total

    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None) -> list[Match]:
        """Every shard at once; the answers merged as one index would give them. Each shard's a-contrario
        test counts the whole registry's works (a chance match could come from any shard)."""
        return merge(self._ray.get([s.search.remote(fingerprint, sha256, self._total) for s in self._shards]))

    def add(self, *, item_sha256: str, owner: str, fingerprint: Fingerprint) -> None:
        self._ray.get(
            self._shards[shard_of(item_sha256, len(self._shards))].add.remote(item_sha256, owner, fingerprint)
        )
        self._total = self._count()

    def remove(self, item_sha256: str) -> None:
        self._ray.get(self._shards[shard_of(item_sha256, len(self._shards))].remove.remote(item_sha256))
        self._total = self._count()
