"""The near-duplicate index: every registered work, found again by SHA-256, PDQ or local features.

It lives in memory and is rebuilt from the database's fingerprint blobs at start. Nothing here
scans every registered work per query:

* PDQ uses multi-index hashing (`PdqMultiIndex`): 11 disjoint 22-bit substrings of the 256-bit
  hash, plus 6 tables on fixed random 22-bit subsets, each probed within 1 bit flip. Every neighbour
  within distance 21 is found (pigeonhole); between 22 and the threshold 31 the sampled tables find
  all but 0.5 % of those at exactly 31. Measured against FAISS and a brute-force NumPy scan by
  `python -m benchmarks.gate_lookup`.
* Local features: every registered work's ORB descriptors (500) are bucketed by a binary
  vocabulary tree (`DescriptorVotes`); the 250 descriptors of each query view that fall in the least
  crowded buckets are compared with their nearest buckets (within a scan budget) and vote for the
  works holding a near descriptor, and only the few best-voted works are verified geometrically and
  by alignment (`ownership.local_features.verify`), which decides.
  FAISS serves the small exact searches (recent additions, one candidate's descriptors); its
  flat-quantised IVF was measured too slow to build and too poor in recall at this scale.
  Measured by `python -m benchmarks.gate_check_speed` and `python -m benchmarks.gate_evasion`.

Where it lives: in memory (works added one by one, or loaded from the database's blobs), or over a
build written once and opened memory-mapped (`ownership.index_store`), with the works added since in
memory beside it. A build holds per work 20 KB of inverted lists (500 descriptors × 32 bytes + an
8-byte id), which every look-up scans a few per cent of; and, read only for the few shortlisted
candidates, 16 KB of descriptors in row order, 4 KB of keypoint positions and the 256-px PNG
thumbnail; PDQ needs 105 bytes per hash plus 285 MB of bucket offsets. A process holds privately
three bytes per build work (removal masks). docs/gate.md ("The persistent build") has the table.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any

import cv2
import faiss
import numpy as np

from ownership.fingerprint import MIN_PDQ_QUALITY, Fingerprint
from ownership.local_features import Keypoints, Registered, VerifyParams, registered_from, verify
from ownership.types import EVIDENCE_KINDS, Match

# ---------------------------------------------------------------------------------------------
# PDQ: multi-index hashing


def hashes_to_words(hashes: np.ndarray) -> np.ndarray:
    """(N, 32) uint8 → (N, 4) uint64, big-endian, so bit 0 of the hash is the top bit of word 0."""
    return np.ascontiguousarray(hashes, np.uint8).view(">u8").astype(np.uint64)


def hamming_words(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise Hamming distances between (..., 4) uint64 arrays (b may broadcast)."""
    c = np.bitwise_count(np.bitwise_xor(a, b))
    # four column adds: several times faster than a reduction over a length-4 axis
    return c[..., 0].astype(np.int32) + c[..., 1] + c[..., 2] + c[..., 3]


def brute_force_search(words: np.ndarray, queries: np.ndarray, threshold: int) -> dict[int, int]:
    """Every row of `words` ((N, 4) uint64) within `threshold` of any query ((k, 32) uint8 hashes):
    {row: smallest distance}. The reference scan the index is measured against."""
    found: dict[int, int] = {}
    for q in hashes_to_words(queries):
        d = hamming_words(words, q)
        for row in np.flatnonzero(d <= threshold):
            found[int(row)] = min(found.get(int(row), 256), int(d[row]))
    return found


class PdqMultiIndex:
    """Range search over 256-bit hashes (Hamming distance <= threshold) by multi-index hashing, with
    appends and deletions.

    Tables: 11 disjoint substrings of 22 bits (242 of the 256 bits) and, for thresholds 22-31, 6 more
    on fixed random subsets of 22 bits. Each table is probed within 1 bit flip of the query's key
    (23 keys). Two hashes within distance d have d spread over the 11 disjoint substrings, so if
    d <= 21 one of them differs in at most 1 bit (pigeonhole): *every* neighbour within 21 is found.
    Between 22 and 31 some neighbours escape the disjoint tables; the 6 sampled tables catch all but
    0.5 % of those at exactly 31 (fewer below; `tests/ownership/test_index.py` measures it). Thresholds
    above 31 use the 11 disjoint tables alone, probed within as many flips as the pigeonhole needs:
    exact again. Every returned distance is exact; a near miss is never returned.

    Why not 11 × 23 bits within 2 flips (exact up to 32): 277 keys per table against 23, i.e. 24k
    random reads per check instead of 3k; at 10M hashes it was 4-8 × slower (`gate_lookup`).

    Hashes live in one growing array; one CSR table (offsets, rows) per substring covers the *sealed*
    prefix, and the few hashes added since the last seal are scanned directly. Deleted rows are
    masked out.
    """

    BITS = 22
    PARTS = 11
    SAMPLED = 6
    SAMPLED_FOR = range(22, 32)  # thresholds the sampled tables were measured for

    def __init__(self, threshold: int = 31) -> None:
        if not 0 <= threshold <= 64:
            raise ValueError(f"pdq_threshold must be between 0 and 64 bits, got {threshold}")
        self.threshold = threshold
        b, parts = self.BITS, self.PARTS
        tables = [np.arange(t * b, (t + 1) * b) for t in range(parts)]
        if threshold in self.SAMPLED_FOR:
            self.flips = 1
            rng = np.random.default_rng(20261129)  # fixed: the index is rebuilt identically at every start
            tables += [np.sort(rng.choice(256, b, replace=False)) for _ in range(self.SAMPLED)]
        else:
            # flips per substring so that PARTS * (flips + 1) > threshold: the pigeonhole guarantee
            self.flips = max(0, math.ceil((threshold + 1) / parts) - 1)
        self.exact_up_to = min(threshold, parts * (self.flips + 1) - 1)
        self._place = np.zeros((256, len(tables)), np.float32)  # bit number (0 = top of byte 0) → place value
        for t, bits in enumerate(tables):
            self._place[bits, t] = 2.0 ** np.arange(b - 1, -1, -1)
        masks = _flip_masks(b, self.flips)
        n_tables = len(tables)
        self._probe_table = np.repeat(np.arange(n_tables, dtype=np.int64), len(masks))
        self._probe_xor = np.tile(masks, n_tables) | (self._probe_table << b)  # flips, and the table's block
        self._words = np.zeros((0, 4), np.uint64)
        self._alive = np.zeros(0, bool)
        self._size = 0
        self._sealed = 0
        self._offsets = np.zeros(1, np.uint32)  # table t's bucket k: rows[offsets[t << BITS | k]: ... + 1]
        self._rows = np.zeros(0, np.uint32)
        self._frozen = False  # a mapped build: read-only arrays, no additions

    @classmethod
    def mapped(cls, threshold: int, words: np.ndarray, alive: np.ndarray, offsets: np.ndarray | None,
               rows: np.ndarray | None) -> PdqMultiIndex:
        """An index over a build's arrays (memory-mapped, shared by every process that opens the build):
        sealed tables when `offsets`/`rows` are given (as `tables` wrote them), else a scan of `words`.
        Rows can be removed (the mask is copied into this process), not added."""
        index = cls(threshold)
        index._words, index._alive = words, np.array(alive, bool)
        index._size = len(words)
        if offsets is not None and rows is not None:
            index._offsets, index._rows, index._sealed = offsets, rows, len(words)
        index._frozen = True
        return index

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(words, alive, offsets, rows) as `mapped` takes them: the tables when a search would use them."""
        self.prepare()
        words, alive = self._words[: self._size], self._alive[: self._size]
        if self._sealed < self._size:
            return words, alive, None, None
        return words, alive, self._offsets, self._rows

    def __len__(self) -> int:
        return int(self._alive[: self._size].sum())

    def add(self, hashes: np.ndarray) -> np.ndarray:
        """Append (N, 32) uint8 hashes; returns their row numbers."""
        if self._frozen:
            raise ValueError("a mapped PDQ index is read-only; add to the index beside it")
        words = hashes_to_words(np.asarray(hashes, np.uint8).reshape(-1, 32))
        n = len(words)
        if self._size + n > len(self._words):
            cap = max(1024, 2 * (self._size + n))
            self._words = np.resize(self._words, (cap, 4))
            self._alive = np.resize(self._alive, cap)
        self._words[self._size: self._size + n] = words
        self._alive[self._size: self._size + n] = True
        rows = np.arange(self._size, self._size + n)
        self._size += n
        return rows  # the tables are rebuilt by the next search if the unsealed tail has grown large

    def remove(self, row: int) -> None:
        self._alive[row] = False

    def seal(self) -> None:
        """Rebuild the substring tables over every hash added so far."""
        n, n_tables, b = self._size, self._place.shape[1], self.BITS
        dtype = np.uint32 if n_tables * n < 1 << 32 else np.uint64
        keys = np.empty((n_tables, n), np.uint32)
        chunk = 1 << 16
        for lo in range(0, n, chunk):
            keys[:, lo: lo + chunk] = self._keys(self._words[lo: min(n, lo + chunk)]).T
        self._offsets = np.zeros((n_tables << b) + 1, dtype)
        self._rows = np.empty(n_tables * n, dtype)
        row = np.arange(n, dtype=np.uint64)
        for t in range(n_tables):
            counts = np.cumsum(np.bincount(keys[t], minlength=1 << b)) + t * n
            self._offsets[(t << b) + 1: ((t + 1) << b) + 1] = counts
            # rows by key, ties by row: one sort of (key, row) packed in 64 bits
            packed = (keys[t].astype(np.uint64) << np.uint64(32)) | row
            self._rows[t * n: (t + 1) * n] = np.sort(packed) & np.uint64(0xFFFFFFFF)
        self._sealed = n

    def _keys(self, words: np.ndarray) -> np.ndarray:
        """(N, 4) uint64 words → (N, tables) keys: each table's bits, its first bit highest."""
        bits = np.unpackbits(words.astype(">u8").view(np.uint8).reshape(-1, 32), axis=1)
        # a matrix product with the place values (exact in float32: keys are below 2**24)
        return (bits.astype(np.float32) @ self._place).astype(np.uint32)

    def prepare(self) -> None:
        """Rebuild the tables if many hashes were added since the last seal. Searches call it; a caller
        that searches from several threads calls it first, under its write lock, so searches only read."""
        if not self._frozen and self._size - self._sealed > max(4096, self._sealed // 16):
            self.seal()  # here, not in `add`: loading N works one by one seals once, not N / 4096 times

    def search(self, hashes: np.ndarray) -> dict[int, int]:
        """Rows within the threshold of any of the query hashes: {row: smallest distance}."""
        self.prepare()
        q = hashes_to_words(np.asarray(hashes, np.uint8).reshape(-1, 32))
        cand_rows, cand_q = [], []
        if self._sealed:
            probes = (self._keys(q)[:, self._probe_table].astype(np.int64) ^ self._probe_xor).ravel()
            starts = self._offsets[probes]
            lengths = self._offsets[probes + 1] - starts
            hit = np.flatnonzero(lengths)  # most probes find an empty bucket
            starts = starts[hit].astype(np.int64)
            lengths = lengths[hit].astype(np.int64)
            total = int(lengths.sum())
            if total:
                # positions of every bucket member, without a Python loop over buckets
                first = np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
                cand_rows.append(self._rows[first + np.arange(total)].astype(np.int64))
                cand_q.append(np.repeat(hit // len(self._probe_xor), lengths))
        if self._size > self._sealed:  # recent additions: scan them
            tail = np.arange(self._sealed, self._size)
            cand_rows.append(np.tile(tail, len(q)))
            cand_q.append(np.repeat(np.arange(len(q)), len(tail)))
        if not cand_rows:
            return {}
        rows = np.concatenate(cand_rows)
        qi = np.concatenate(cand_q)
        d = hamming_words(np.take(self._words, rows, axis=0), np.take(q, qi, axis=0))
        keep = np.flatnonzero((d <= self.threshold) & self._alive[rows])
        found: dict[int, int] = {}
        for row, dist in zip(rows[keep].tolist(), d[keep].tolist(), strict=True):
            if dist < found.get(row, 257):
                found[row] = dist
        return found


def _flip_masks(bits: int, flips: int) -> np.ndarray:
    """Every `bits`-bit mask with at most `flips` bits set."""
    masks = [0]
    frontier = [0]
    for _ in range(flips):
        frontier = sorted({m | (1 << b) for m in frontier for b in range(bits) if not m >> b & 1})
        masks.extend(frontier)
    return np.array(masks, np.int64)


# ---------------------------------------------------------------------------------------------
# Local features: descriptor votes, then verification


class VocabularyTree:
    """A hierarchical k-majority quantiser of 256-bit descriptors (Nistér & Stewénius' vocabulary
    tree, binary): `branching` children per node, `depth` levels, branching**depth leaves.

    Assigning a descriptor costs branching × depth Hamming distances, so millions of registered
    descriptors can be bucketed at start-up in seconds, where FAISS's flat-quantised IVF would
    compare each with every one of its tens of thousands of centroids (measured: minutes).
    """

    def __init__(self, centroids: list[np.ndarray], branching: int) -> None:
        self.centroids = centroids  # per level: (nodes_at_level, branching, 4) uint64
        self.branching = branching
        self._faiss: dict[tuple[int, int], faiss.IndexBinaryFlat] = {}

    @property
    def leaves(self) -> int:
        return int(self.centroids[-1].shape[0] * self.branching)

    @classmethod
    def train(cls, words: np.ndarray, depth: int, branching: int = 16, iterations: int = 4,
              seed: int = 0) -> VocabularyTree:
        rng = np.random.default_rng(seed)
        bits = np.unpackbits(np.ascontiguousarray(words).view(np.uint8).reshape(len(words), 32), axis=1)
        node = np.zeros(len(words), np.int64)
        levels = []
        for level in range(depth):
            nodes = branching**level
            # start each node's children at distinct members of the node (or anything, if too few)
            cent = np.empty((nodes, branching, 4), np.uint64)
            order = np.lexsort((rng.random(len(words)), node))
            first = np.searchsorted(node[order], np.arange(nodes))
            count = np.bincount(node, minlength=nodes)
            for b in range(branching):
                pick = order[np.minimum(first + b % np.maximum(count, 1), len(words) - 1)]
                cent[:, b] = words[pick]
            for _ in range(iterations):
                cluster = node * branching + _nearest_child(words, np.take(cent, node, axis=0))
                # majority vote of each bit within each cluster
                order_c = np.argsort(cluster, kind="stable")
                present, starts = np.unique(cluster[order_c], return_index=True)
                sums = np.add.reduceat(np.take(bits, order_c, axis=0), starts, axis=0, dtype=np.int32)
                sizes = np.diff(np.append(starts, len(words)))
                majority = np.packbits((2 * sums > sizes[:, None]).astype(np.uint8), axis=1).view(np.uint64)
                cent.reshape(-1, 4)[present] = majority
            levels.append(cent)
            node = node * branching + _nearest_child(words, np.take(cent, node, axis=0))
        return cls(levels, branching)

    def assign(self, words: np.ndarray, probes: int = 1) -> np.ndarray:
        """Leaves of each descriptor, (N, probes), nearest first.

        With one probe, a greedy descent. With more, a beam search keeping the `probes` nearest
        nodes at every level: a near neighbour that fell on the other side of an upper-level split
        is still found, which a greedy descent followed by the best children of one node misses.
        """
        if probes == 1 and len(words) > 50_000:
            return self._assign_bulk(words)[:, None]
        n = len(words)
        beam = np.zeros((n, 1), np.int64)
        for cent in self.centroids:
            children = np.take(cent, beam, axis=0)  # (n, width, branching, 4)
            d = hamming_words(children, words[:, None, None, :]).reshape(n, -1)
            keep = min(probes, d.shape[1])
            best = np.argsort(d, axis=1, kind="stable")[:, :keep]
            beam = (np.take_along_axis(beam, best // self.branching, axis=1) * self.branching
                    + best % self.branching)
        return beam


    def _assign_bulk(self, words: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
        """The same descent for millions of descriptors: grouped by node, each group searched by FAISS
        against its node's children (several times faster than NumPy broadcasting)."""
        out = np.empty(len(words), np.int64)
        for lo in range(0, len(words), chunk):
            codes = np.ascontiguousarray(words[lo: lo + chunk]).view(np.uint8).reshape(-1, 32)
            node = np.zeros(len(codes), np.int64)
            for level in range(len(self.centroids)):
                child = np.empty(len(codes), np.int64)
                order = np.argsort(node, kind="stable")
                present, starts = np.unique(node[order], return_index=True)
                ends = np.append(starts[1:], len(codes))
                for n, s, e in zip(present.tolist(), starts.tolist(), ends.tolist(), strict=True):
                    rows = order[s:e]
                    _, nearest = self._children_index(level, n).search(codes[rows], 1)
                    child[rows] = nearest[:, 0]
                node = node * self.branching + child
            out[lo: lo + len(codes)] = node
        return out

    def _children_index(self, level: int, node: int) -> faiss.IndexBinaryFlat:
        key = (level, node)
        index = self._faiss.get(key)
        if index is None:
            index = faiss.IndexBinaryFlat(256)
            index.add(np.ascontiguousarray(self.centroids[level][node]).view(np.uint8).reshape(-1, 32))
            self._faiss[key] = index
        return index


def _nearest_child(words: np.ndarray, children: np.ndarray) -> np.ndarray:
    """words (N, 4), children (N, B, 4) → index of the nearest child per row."""
    return np.argmin(hamming_words(children, words[:, None, :]), axis=1)


def train_vocabulary(codes: np.ndarray, *, leaf_size: int = 256, tree_sample: int = 65_536) -> VocabularyTree:
    """Train a tree on a sample of `codes` (every descriptor, in row order): leaves of about
    `leaf_size` descriptors (at most 16**4), trained on ~8 descriptors per leaf. Deterministic: the
    same descriptors give the same tree, in memory or in a build."""
    depth = min(4, max(1, math.ceil(math.log(max(len(codes) / leaf_size, 2), 16))))
    n_sample = min(len(codes), max(tree_sample, 8 * 16**depth))
    sample = np.sort(np.random.default_rng(0).choice(len(codes), n_sample, replace=False))
    return VocabularyTree.train(np.ascontiguousarray(codes[sample]).view(np.uint64), depth)


def bucket(tree: VocabularyTree, codes: np.ndarray, chunk: int = 1 << 22) -> Iterator[tuple[int, np.ndarray]]:
    """Each descriptor's leaf, by chunks of rows: (first row, leaves). The chunking is part of the
    result (small chunks descend greedily in NumPy, large ones through FAISS), so memory and builds
    use this one function."""
    for lo in range(0, len(codes), chunk):
        part = np.ascontiguousarray(codes[lo: lo + chunk])
        yield lo, np.ascontiguousarray(tree.assign(part.view(np.uint64))[:, 0], np.int64)


def empty_lists(tree: VocabularyTree, probes: int = 2) -> Any:
    """A FAISS IndexBinaryIVF whose lists are the tree's leaves (its quantiser is never searched)."""
    quantizer = faiss.IndexBinaryFlat(256)
    quantizer.add(np.ascontiguousarray(tree.centroids[-1]).view(np.uint8).reshape(-1, 32))
    index = faiss.IndexBinaryIVF(quantizer, 256, tree.leaves)
    index.nprobe = probes
    index.own_fields = True
    quantizer.this.disown()  # type: ignore[attr-defined]  # the IVF index frees it
    return index


@dataclass(frozen=True)
class VoteBase:
    """A build's descriptors, memory-mapped (`ownership.index_store`): the inverted lists (FAISS, on the
    mapped file, ids are slots), every descriptor in row order, each slot's rows and the leaf sizes."""

    index: Any  # faiss.IndexBinaryIVF over OnDiskInvertedLists
    tree: VocabularyTree
    leaf_sizes: np.ndarray  # (leaves,) int64
    codes: np.ndarray  # (N, 32) uint8, row order
    first: np.ndarray  # (slots,) int64: a slot's first row
    count: np.ndarray  # (slots,) int32: its number of rows
    alive: np.ndarray  # (slots,) bool


class DescriptorVotes:
    """ORB descriptors of registered works; a query's descriptors vote for the works they come near.

    Below `tree_from` descriptors the search is exact (FAISS IndexBinaryFlat). Above, a vocabulary
    tree buckets the descriptors into the inverted lists of a FAISS IndexBinaryIVF (ids: slots), and
    a query descriptor is compared (in C++) only with the lists of its `probes` nearest leaves, which
    the tree finds: `search_preassigned`, so FAISS's flat quantiser is never used. Additions are
    buffered and bucketed in bulk at the next search, so loading many works at start-up is one
    pass; the tree is retrained when the collection has grown eightfold since it was trained.
    Removed works are masked out, not deleted.

    With a `base` (a build opened memory-mapped), the base's lists are searched beside the lists of
    the works added since (bucketed by the base's tree, never retrained: the next build retrains),
    and the nearest neighbours of both are merged.
    """

    def __init__(self, *, max_hamming: int = 48, ratio: float = 0.8, neighbours: int = 4, probes: int = 2,
                 tree_from: int = 8_192, leaf_size: int = 256, tree_sample: int = 65_536,
                 scan_budget: int = 2_048, base: VoteBase | None = None) -> None:
        self.max_hamming = max_hamming
        self.scan_budget = scan_budget
        self.ratio = ratio
        self.neighbours = neighbours
        self.probes = probes
        self.tree_from = tree_from
        self.leaf_size = leaf_size
        self.tree_sample = tree_sample
        self._base = base
        self._offset = 0 if base is None else len(base.first)  # slots below this are the base's
        self._slot_rows: list[tuple[int, int]] = []  # slot - offset → (first row, count) in `_codes`
        self._alive = np.zeros(0, bool) if base is None else np.array(base.alive, bool)  # every slot
        self._row_slot = np.zeros(0, np.int32)
        self._codes = np.zeros((0, 32), np.uint8)  # descriptors added here, in row order, for verification
        self._size = 0
        self._indexed = 0  # rows [indexed, size) are not in the FAISS index yet
        self._index: Any = faiss.IndexBinaryFlat(256)  # IndexBinaryIVF once there is a tree
        self._tree: VocabularyTree | None = None
        self._leaf_sizes = np.zeros(0, np.int64)  # descriptors per leaf of the tree
        self._trained_on = 0
        if base is not None:
            self._tree = base.tree
            self._index = empty_lists(base.tree, probes)
            self._leaf_sizes = np.array(base.leaf_sizes, np.int64)

    @property
    def ntotal(self) -> int:
        return self._size + (0 if self._base is None else len(self._base.codes))

    @property
    def slots(self) -> int:
        return self._offset + len(self._slot_rows)

    def add(self, slot: int, descriptors: np.ndarray) -> None:
        if slot != self.slots:
            raise ValueError(f"descriptor slots must be added in order: expected {self.slots}, got {slot}")
        codes = np.ascontiguousarray(descriptors, np.uint8).reshape(-1, 32)
        n = len(codes)
        self._slot_rows.append((self._size, n))
        if slot >= len(self._alive):
            self._alive = np.resize(self._alive, max(1024, 2 * slot + 2))
        self._alive[slot] = True
        if n == 0:
            return
        if self._size + n > len(self._row_slot):
            self._row_slot = np.resize(self._row_slot, max(4096, 2 * (self._size + n)))
            self._codes = np.resize(self._codes, (len(self._row_slot), 32))
        self._row_slot[self._size: self._size + n] = slot
        self._codes[self._size: self._size + n] = codes
        self._size += n

    def remove(self, slot: int) -> None:
        self._alive[slot] = False

    def codes(self, slot: int) -> np.ndarray:
        """The descriptors of a work, (N, 32) uint8, in the order they were added.

        Kept in row order beside the FAISS lists (in memory, or in the build's mapped file): reading
        them back from the inverted lists cost 2-3 ms per candidate, most of a look-up's time."""
        if slot < self._offset:
            assert self._base is not None
            first, count = int(self._base.first[slot]), int(self._base.count[slot])
            return np.asarray(self._base.codes[first: first + count])
        first, count = self._slot_rows[slot - self._offset]
        return self._codes[first: first + count]

    def flush(self) -> None:
        """Put the buffered descriptors into the FAISS index (bucketing them if there is a tree)."""
        if self._indexed == self._size:
            return
        pending = self._codes[self._indexed: self._size]
        if self._base is not None:
            self._add_bucketed(pending, self._row_slot[self._indexed: self._size])
        elif self._size < self.tree_from:
            self._index.add(pending)
        elif self._tree is None or self._size >= 8 * self._trained_on:
            self._rebuild(self._codes[: self._size])
        else:
            self._add_bucketed(pending, self._row_slot[self._indexed: self._size])
        self._indexed = self._size

    def _rebuild(self, codes: np.ndarray) -> None:
        """Train a tree on a sample of `codes` (every descriptor, in row order) and bucket them all."""
        self._tree = train_vocabulary(codes, leaf_size=self.leaf_size, tree_sample=self.tree_sample)
        self._trained_on = len(codes)
        self._index = empty_lists(self._tree, self.probes)
        self._leaf_sizes = np.zeros(self._tree.leaves, np.int64)
        for lo, leaves in bucket(self._tree, codes):
            self._add_leaves(codes[lo: lo + len(leaves)], self._row_slot[lo: lo + len(leaves)], leaves)

    def _add_bucketed(self, codes: np.ndarray, slots: np.ndarray) -> None:
        assert self._tree is not None
        for lo, leaves in bucket(self._tree, codes):
            self._add_leaves(codes[lo: lo + len(leaves)], slots[lo: lo + len(leaves)], leaves)

    def _add_leaves(self, codes: np.ndarray, slots: np.ndarray, leaves: np.ndarray) -> None:
        codes = np.ascontiguousarray(codes)
        ids = np.ascontiguousarray(slots, np.int64)  # the lists' ids are slots: no row → slot table
        self._index.add_core(len(codes), faiss.swig_ptr(codes), faiss.swig_ptr(ids), faiss.swig_ptr(leaves))
        self._leaf_sizes += np.bincount(leaves, minlength=len(self._leaf_sizes))

    def _preassigned(self, q: np.ndarray, leaves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The `neighbours` nearest registered descriptors of each query descriptor in the given
        leaves: (distances, slots), -1 where none. A base's lists and ours are searched apart and
        merged, the base's first among equals (its works were added first)."""
        k = self.neighbours
        found = []
        for index in ([self._base.index] if self._base is not None else []) + [self._index]:
            if index is self._index and self._base is not None and index.ntotal == 0:
                continue
            index.nprobe = leaves.shape[1]
            found.append(index.search_preassigned(q, k, leaves, None))
        if len(found) == 1:
            return found[0]
        dist = np.concatenate([d for d, _ in found], axis=1)
        slots = np.concatenate([s for _, s in found], axis=1)
        dist = np.where(slots >= 0, dist, np.iinfo(np.int32).max)
        order = np.argsort(dist, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(dist, order, axis=1), np.take_along_axis(slots, order, axis=1)

    def votes(self, descriptors: np.ndarray, limit: int | None = None) -> dict[int, float]:
        """{slot: weighted votes} for one set of query descriptors; see `votes_many`."""
        return self.votes_many([descriptors], limit)[0]

    def votes_many(self, views: list[np.ndarray], limit: int | None = None) -> list[dict[int, float]]:
        """For each set of query descriptors (a view of the query), {slot: weighted votes}: each
        descriptor gives one vote to the work of its nearest registered descriptor (within
        `max_hamming`), shared equally with the other works whose descriptors among its `neighbours`
        nearest are nearly as near (within 1/`ratio` of it). One index search serves every view.

        With `limit`, only that many descriptors of each view vote: once the tree is built, those
        whose leaves hold the fewest registered descriptors. Why: the leaves are uneven (at 100k works
        the median leaf holds 156 descriptors, the largest 42k), a descriptor in a crowded leaf is
        common to many works, says little, and cost most of the scan. Measured: the robust look-up
        at 100k works 1.9x faster, and crops of 35 % caught more often than with the first 250 in
        spread order (`gate_check_speed`, `gate_evasion`). Without a tree, the first `limit`.

        Why shared and not a plain count: busy works (scribbles, hatching, lettering) hold generic
        descriptors that every query comes near; counting those let a busy distinct work outvote the
        original of a small or cropped copy. Sharing rather than Lowe's drop keeps a work that is
        registered twice (a portfolio work also opted out) a candidate under both entries.
        """
        parts = [np.ascontiguousarray(v, np.uint8).reshape(-1, 32) for v in views]
        self.flush()
        view_leaves: list[np.ndarray] = []  # each view's descriptors' nearest leaves, when there is a tree
        if self._tree is not None:
            # scan about `scan_budget` descriptors per query descriptor: more leaves while they are small
            per_leaf = self.ntotal / self._tree.leaves
            probes = int(min(16, max(self.probes, self.scan_budget // max(per_leaf, 1))))
            view_leaves = [self._tree.assign(p.view(np.uint64), probes) if len(p) else np.zeros((0, probes), np.int64)
                           for p in parts]
            if limit is not None:
                # the `limit` descriptors of each view whose leaves are smallest: the cheapest to search
                # and the most telling (a crowded leaf holds descriptors that many works share)
                keep = [np.sort(np.argsort(self._leaf_sizes[lv].sum(axis=1), kind="stable")[:limit])
                        for lv in view_leaves]
                parts = [p[k] for p, k in zip(parts, keep, strict=True)]
                view_leaves = [lv[k] for lv, k in zip(view_leaves, keep, strict=True)]
        elif limit is not None:
            parts = [p[:limit] for p in parts]
        q = np.concatenate(parts) if parts else np.zeros((0, 32), np.uint8)
        if self.ntotal == 0 or len(q) == 0:
            return [{} for _ in views]
        if self._tree is not None:
            leaves = np.concatenate(view_leaves)
            # beyond its nearest leaf, a descriptor searches further leaves only within the scan budget
            # (-1: no list); the tree's leaves are uneven, and a few crowded ones held most of the scan
            beyond = np.cumsum(self._leaf_sizes[leaves], axis=1) > self.scan_budget
            beyond[:, 0] = False
            leaves[beyond] = -1
            dist, slots = self._preassigned(q, leaves)
        else:  # few descriptors, searched exactly; the flat index's ids are rows
            dist, rows = self._index.search(q, self.neighbours)
            slots = np.where(rows >= 0, self._row_slot[np.maximum(rows, 0)], -1)
        ok = slots >= 0
        ok[ok] &= self._alive[slots[ok]]
        ok &= dist <= self.max_hamming
        view_of = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        out: list[dict[int, float]] = [{} for _ in views]
        if not ok.any():
            return out
        qi, col = np.nonzero(ok)
        slot = slots[qi, col].astype(np.int64)
        d = dist[qi, col]
        best = np.where(ok, dist, np.iinfo(np.int32).max).min(axis=1)
        near = d <= best[qi] / self.ratio
        n_slots = self.slots
        key = np.unique(qi[near] * n_slots + slot[near])  # (query descriptor, work) pairs
        pair_q, pair_slot = np.divmod(key, n_slots)
        share = 1.0 / np.bincount(pair_q)[pair_q]
        view_slot, inverse = np.unique(view_of[pair_q] * n_slots + pair_slot, return_inverse=True)
        weights = np.bincount(inverse, weights=share)
        for vs, w in zip(view_slot.tolist(), weights.tolist(), strict=True):
            view, s = divmod(vs, n_slots)
            out[view][s] = w
        return out


# ---------------------------------------------------------------------------------------------
# The index the gate uses


@dataclass(frozen=True)
class _Robust:
    """A registered work's keypoint positions and alignment thumbnail, stored compactly (its
    descriptors live in `DescriptorVotes`); decoded only when the work is a candidate. For a work in
    a build, `points` is a view of the mapped file and `thumb_png` is read from it on demand."""

    width: int
    height: int
    points: np.ndarray  # (N, 2) float32
    thumb_png: bytes

    @classmethod
    def of(cls, fp: Fingerprint) -> _Robust:
        reg = registered_from(fp.robust)
        ok, png = cv2.imencode(".png", reg.thumbnail())
        if not ok:
            raise ValueError("could not encode a registered thumbnail")
        return cls(reg.width, reg.height, reg.keypoints.points, png.tobytes())

    def registered(self, descriptors: np.ndarray) -> Registered:
        return Registered(self.width, self.height, Keypoints(self.points, descriptors), thumb_png=self.thumb_png)


@dataclass
class _Entry:
    key: str  # the item's key: its SHA-256, or e.g. "pdq:<hex>" for an imported hash-only opt-out
    owner: str
    sha256: str | None  # exact-bytes identity, when known
    robust: _Robust | None  # None for hash-only entries
    pdq_row: int | None


SHA_NONE, SHA_IS_KEY, SHA_OTHER = 0, 1, 2


@dataclass(frozen=True)
class IndexBase:
    """The works of a build, as `ownership.index_store` maps them: one row per slot in flat arrays
    (nothing per work in Python objects), an entry decoded only when a look-up returns it."""

    keys: np.ndarray  # (slots,) bytes (utf-8)
    sorted_keys: np.ndarray  # the live slots' keys, sorted, and their slots: a key look-up is a bisection
    sorted_key_slots: np.ndarray
    sorted_shas: np.ndarray  # (n,) S64: the SHA-256 of the live slots that have one, sorted
    sorted_sha_slots: np.ndarray
    owners: list[str]
    owner_of: np.ndarray  # (slots,) int32 into owners
    alive: np.ndarray  # (slots,) bool: False for a slot replaced while the build was written
    has_robust: np.ndarray  # (slots,) bool
    sha_kind: np.ndarray  # (slots,) uint8: SHA_NONE, SHA_IS_KEY or SHA_OTHER (then in sorted_shas)
    width: np.ndarray  # (slots,) int32
    height: np.ndarray
    points: np.ndarray  # (N, 2) float32, in descriptor row order
    thumb_offset: np.ndarray  # (slots,) int64 into thumbs
    thumb_size: np.ndarray  # (slots,) int32
    thumbs: np.ndarray  # uint8: every thumbnail's PNG, once, in its final encoding
    pdq: PdqMultiIndex  # mapped
    pdq_slot: np.ndarray  # (pdq rows,) int32
    slot_pdq_row: np.ndarray  # (slots,) int32, -1 for none
    votes: VoteBase

    @property
    def slots(self) -> int:
        return len(self.keys)

    def find(self, sorted_values: np.ndarray, slots: np.ndarray, value: str) -> list[int]:
        encoded = value.encode()
        lo = int(np.searchsorted(sorted_values, encoded, side="left"))
        hi = int(np.searchsorted(sorted_values, encoded, side="right"))
        return [int(s) for s in slots[lo:hi]]

    def entry(self, slot: int, *, robust: bool = False) -> _Entry:
        """The slot's entry; its keypoints and thumbnail (read from the mapped file) only with `robust`."""
        features = None
        if robust and self.has_robust[slot]:
            first, count = int(self.votes.first[slot]), int(self.votes.count[slot])
            offset, size = int(self.thumb_offset[slot]), int(self.thumb_size[slot])
            points = np.asarray(self.points[first: first + count])
            features = _Robust(int(self.width[slot]), int(self.height[slot]), points,
                               self.thumbs[offset: offset + size].tobytes())
        key = bytes(self.keys[slot]).decode()
        kind = int(self.sha_kind[slot])
        sha = None if kind == SHA_NONE else key if kind == SHA_IS_KEY else self._sha_of(slot)
        row = int(self.slot_pdq_row[slot])
        return _Entry(key, self.owners[int(self.owner_of[slot])], sha, features, row if row >= 0 else None)

    def _sha_of(self, slot: int) -> str | None:
        where = np.flatnonzero(self.sorted_sha_slots == slot)
        return bytes(self.sorted_shas[where[0]]).decode() if len(where) else None


_VERIFY_FIELDS = {f.name for f in fields(VerifyParams)}
_SEARCH_FIELDS = {"candidates", "min_votes", "relative_votes", "descriptor_max_hamming", "vote_descriptors",
                  "probes"}


def check_hashes(sha256: str | None, pdq: bytes | None) -> None:
    """What a work known only by hashes must bring: at least one of them, and a whole PDQ hash."""
    if sha256 is None and pdq is None:
        raise ValueError("add_hashes needs sha256 or pdq")
    if pdq is not None and len(pdq) != 32:
        raise ValueError(f"pdq must be 32 bytes, got {len(pdq)}")


class MatchIndex:
    """Registered works (verified portfolios, the opt-out registry, our generated images).

    In memory, or over a build (`ownership.index_store.open_build`): the build's works are read from
    its memory-mapped files and the works added since live in memory beside them. Changes (`add`,
    `remove`) must not run beside searches; searches may run concurrently with each other once
    `prepare` has run after the last change (the product holds a readers-writer lock).

    `robust_thresholds` are `VerifyParams` fields (min_inliers, min_coverage, min_area, …) and the
    candidate search's `candidates` (works verified per query, default 8), `min_votes` (default 4),
    `relative_votes` (a candidate needs this share of the best-voted work's votes, default 0.35),
    `descriptor_max_hamming` (a descriptor votes for works within this distance, default 48),
    `vote_descriptors` (descriptors per query view that vote, default 250: those in the least crowded
    vocabulary-tree leaves) and `probes` (leaves searched per descriptor, default 2; more while the
    leaves are small, fewer where the nearest leaf is crowded).
    """

    def __init__(self, *, pdq_threshold: int = 31, min_pdq_quality: int = MIN_PDQ_QUALITY,
                 verify_params: VerifyParams | None = None, base: IndexBase | None = None,
                 **robust_thresholds: Any) -> None:
        _single_threaded_faiss()
        unknown = set(robust_thresholds) - _VERIFY_FIELDS - _SEARCH_FIELDS
        if unknown:
            raise TypeError(f"unknown robust threshold(s) {sorted(unknown)}; known: "
                            f"{sorted(_VERIFY_FIELDS | _SEARCH_FIELDS)}")
        self.min_pdq_quality = min_pdq_quality
        self.candidates = int(robust_thresholds.pop("candidates", 8))
        self.min_votes = float(robust_thresholds.pop("min_votes", 4))
        self.relative_votes = float(robust_thresholds.pop("relative_votes", 0.35))
        self.vote_descriptors = int(robust_thresholds.pop("vote_descriptors", 250))
        probes = int(robust_thresholds.pop("probes", 2))
        max_hamming = int(robust_thresholds.pop("descriptor_max_hamming", 48))
        self.verify_params = replace(verify_params or VerifyParams(), **robust_thresholds)
        if base is not None and base.pdq.threshold != pdq_threshold:
            raise ValueError(f"the build's PDQ tables are for threshold {base.pdq.threshold}, not {pdq_threshold}")
        self._base = base
        self._offset = 0 if base is None else base.slots  # slots below this are the build's
        self._base_alive = np.zeros(0, bool) if base is None else np.array(base.alive, bool)
        self._base_count = int(self._base_alive.sum())
        self._pdq_offset = 0 if base is None else len(base.pdq_slot)  # PDQ rows below this are the build's
        self._pdq = PdqMultiIndex(pdq_threshold)
        self._votes = DescriptorVotes(max_hamming=max_hamming, probes=probes,
                                      base=None if base is None else base.votes)
        self._slots: list[_Entry | None] = []  # slot - offset → entry, for works added in memory
        self._by_key: dict[str, int] = {}
        self._by_sha: dict[str, set[str]] = {}
        self._by_pdq_row: dict[int, int] = {}

    def __len__(self) -> int:
        return self._base_count + len(self._by_key)

    # changes --------------------------------------------------------------------------------------
    def add(self, *, item_sha256: str, owner: str, fingerprint: Fingerprint) -> None:
        """Register a work under `item_sha256` (its key); adding the same key again replaces it.

        A PDQ hash of low quality (a flat image) is not indexed: such hashes collide with other flat
        images. The local features are always indexed; verification judges them.
        """
        pdq = fingerprint.pdq if fingerprint.pdq_quality >= self.min_pdq_quality else None
        self._insert(item_sha256, owner, sha256=item_sha256 if _is_sha256(item_sha256) else None, pdq=pdq,
                     robust=_Robust.of(fingerprint), descriptors=fingerprint.robust.view.descriptors)

    def add_hashes(self, *, item_sha256: str, owner: str, sha256: str | None, pdq: bytes | None) -> None:
        """Register a work known only by hashes (an imported opt-out list): exact and PDQ matching only."""
        check_hashes(sha256, pdq)
        self._insert(item_sha256, owner, sha256=sha256, pdq=pdq, robust=None, descriptors=np.zeros((0, 32), np.uint8))

    def remove(self, item_sha256: str) -> None:
        """Forget the entry with this key (no error if there is none)."""
        slot = self._by_key.pop(item_sha256, None)
        if slot is None:
            self._remove_base(item_sha256)
            return
        entry = self._slots[slot - self._offset]
        assert entry is not None
        self._slots[slot - self._offset] = None
        if entry.sha256 is not None:
            keys = self._by_sha[entry.sha256]
            keys.discard(entry.key)
            if not keys:
                del self._by_sha[entry.sha256]
        if entry.pdq_row is not None:
            self._pdq.remove(entry.pdq_row - self._pdq_offset)
            del self._by_pdq_row[entry.pdq_row]
        self._votes.remove(slot)

    def _remove_base(self, key: str) -> None:
        if self._base is None:
            return
        for slot in self._base.find(self._base.sorted_keys, self._base.sorted_key_slots, key):
            if self._base_alive[slot]:
                self._base_alive[slot] = False
                self._base_count -= 1
                row = int(self._base.slot_pdq_row[slot])
                if row >= 0:
                    self._base.pdq.remove(row)
                self._votes.remove(slot)

    def _insert(self, key: str, owner: str, *, sha256: str | None, pdq: bytes | None, robust: _Robust | None,
                descriptors: np.ndarray) -> None:
        self.remove(key)
        slot = self._offset + len(self._slots)
        pdq_row = None
        if pdq is not None:
            pdq_row = self._pdq_offset + int(self._pdq.add(np.frombuffer(pdq, np.uint8))[0])
            self._by_pdq_row[pdq_row] = slot
        self._slots.append(_Entry(key, owner, sha256, robust, pdq_row))
        self._votes.add(slot, descriptors)
        self._by_key[key] = slot
        if sha256 is not None:
            self._by_sha.setdefault(sha256, set()).add(key)

    def prepare(self) -> None:
        """Index what was added since the last search (PDQ tables, descriptor lists): after this and
        until the next change, searches only read and may run in parallel."""
        self._pdq.prepare()
        self._votes.flush()

    # lookup ---------------------------------------------------------------------------------------
    def search(self, fingerprint: Fingerprint, *, sha256: str | None = None,
               compared: int | None = None) -> list[Match]:
        """Every registered work the image matches, best evidence first: SHA-256, then PDQ (closest
        first), then local features (copies, then variants, then shared elements; most verified inliers
        first). One match per registered work."""
        found: dict[int, Match] = {}
        for key, slot in self._sha_slots(sha256) if sha256 else ():
            found[slot] = Match(self._entry(slot).owner, key, "sha256", 0.0)
        if fingerprint.pdq_quality >= self.min_pdq_quality:
            queries = np.frombuffer(b"".join(fingerprint.pdq_dihedral), np.uint8).reshape(-1, 32)
            for slot, dist in self._pdq_search(queries):
                if slot not in found:
                    found[slot] = Match(self._entry(slot).owner, self._entry(slot).key, "pdq", float(dist))
        for slot, views in self._candidates(fingerprint, exclude=set(found)):
            entry = self._entry(slot, robust=True)
            assert entry.robust is not None
            registered = entry.robust.registered(self._votes.codes(slot))
            # compared: every registered work was a chance for a false match, not only the candidates
            # (`compared`: the whole registry's size when this index is one shard of it)
            result = verify(fingerprint.robust, registered, self.verify_params, views,
                            compared=len(self) if compared is None else compared)
            if result.matched:
                found[slot] = Match(entry.owner, entry.key, "local_features", float(result.inliers), result.kind)
        order = {"sha256": 0, "pdq": 1, "local_features": 2}
        kinds = {kind: i for i, kind in enumerate(EVIDENCE_KINDS)}  # a copy before a variant before an element
        return sorted(found.values(), key=lambda m: (order[m.method], kinds[m.kind],
                                                     m.score if m.method != "local_features" else -m.score))

    def _sha_slots(self, sha256: str) -> list[tuple[str, int]]:
        """(key, slot) of the live entries with this SHA-256, by key."""
        pairs = [(key, self._by_key[key]) for key in self._by_sha.get(sha256, ())]
        if self._base is not None:
            pairs += [(bytes(self._base.keys[s]).decode(), s)
                      for s in self._base.find(self._base.sorted_shas, self._base.sorted_sha_slots, sha256)
                      if self._base_alive[s]]
        return sorted(pairs)

    def _pdq_search(self, queries: np.ndarray) -> list[tuple[int, int]]:
        """(slot, distance) of the live entries within the PDQ threshold, closest first."""
        hits: list[tuple[int, int]] = []
        if self._base is not None:
            hits += [(int(self._base.pdq_slot[row]), dist) for row, dist in self._base.pdq.search(queries).items()]
        hits += [(self._by_pdq_row[row + self._pdq_offset], dist) for row, dist in self._pdq.search(queries).items()]
        return sorted(hits, key=lambda kv: kv[1])

    def _entry(self, slot: int, *, robust: bool = False) -> _Entry:
        if slot < self._offset:
            assert self._base is not None and self._base_alive[slot], "a removed entry was returned by a sub-index"
            return self._base.entry(slot, robust=robust)
        entry = self._slots[slot - self._offset]
        assert entry is not None, "a removed entry was returned by a sub-index"
        return entry

    def _candidates(self, fingerprint: Fingerprint, *, exclude: set[int]) -> list[tuple[int, tuple[str, ...]]]:
        """The best-voted works not matched already, most votes first, each with the views of the
        query (image, mirror, inset) that voted for it, most votes first."""
        robust = fingerprint.robust
        views = {"image": robust.view.descriptors, "mirror": robust.mirror.descriptors}
        if robust.inset is not None:
            views["inset"] = robust.inset.view.descriptors
        votes: dict[int, dict[str, float]] = {}
        top = 0.0
        for name, view_votes in zip(views, self._votes.votes_many(list(views.values()), self.vote_descriptors),
                                    strict=True):
            for slot, count in view_votes.items():
                top = max(top, count)
                if count >= self.min_votes and slot not in exclude:
                    votes.setdefault(slot, {})[name] = count
        if not votes:
            return []
        # far fewer votes than the best-voted work: not worth verifying (a collage of several
        # registered works still gives each a good share of the best one's votes). The best-voted
        # work counts even when PDQ matched it already: beside a whole-image match, a work with a
        # few per cent of its votes is noise (an oversaturated copy of one work, matched by PDQ,
        # once passed the verification of another artist's work with 11 inliers over 6 % of it).
        floor = max(self.min_votes, self.relative_votes * top)
        ranked = sorted((s for s in votes if max(votes[s].values()) >= floor),
                        key=lambda s: (-max(votes[s].values()), s))[: self.candidates]
        return [(s, tuple(v for v in sorted(votes[s], key=lambda v: -votes[s][v]) if votes[s][v] >= floor))
                for s in ranked]


def _single_threaded_faiss() -> None:
    """One FAISS thread per search. A lookup is a few hundred descriptors, too small to gain from
    threads, and OpenMP threads that spin-wait beside OpenCV's and beside other requests' made a
    search 5-40x slower on a busy 2-core machine (measured with benchmarks.gate_evasion)."""
    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)
