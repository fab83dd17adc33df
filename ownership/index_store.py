"""An index build: every registered work's index data in flat files, written once, opened memory-mapped.

A build is a directory. `BuildWriter` streams works into it (one work at a time: descriptors, keypoint
positions and thumbnails go straight to their files) and, at `finish`, trains the vocabulary tree,
buckets every descriptor, writes the inverted lists and the PDQ tables, and last `meta.json`, which
records what the build covers (the caller's `position`, e.g. the audit log's sequence number).
`open_build` maps the files read-only and returns a `MatchIndex` over them: the operating system
shares the pages between every process that opens the same build, nothing is parsed or trained at
open, and only what a look-up touches is read from disk. Works added after the build live in memory
beside it (`MatchIndex.add`); removed ones are masked.

Files (N descriptors in row order; slot = one registered work, in the order they were added):

| file | per | bytes | read by |
| --- | --- | --- | --- |
| `lists.faissb` | descriptor | 32 code + 8 id | every look-up: the lists of its ~1.5k query descriptors' leaves |
| `pdq_words.npy`, `pdq_rows.npy` | PDQ hash | 32 + 4 × 17 tables | every look-up: a few thousand random rows |
| `pdq_offsets.npy` | — | 285 MB (17 × 2²² buckets) | every look-up: 391 buckets |
| `descriptors.u8` | descriptor | 32 | shortlisted candidates only (verification) |
| `points.f32` | descriptor | 8 | shortlisted candidates only |
| `thumbs.png` | work | a 256-px grey PNG, ~6-28 KB | candidates that pass the geometric check |
| `slot_*.npy`, `keys.npy`, `sorted_*.npy` | work | ~40 + 2 × key length | results, key look-ups |
| `tree.npz`, `leaf_sizes.npy` | — | 2.6 MB (65,536 leaves) | every look-up |

Below `tree_from` descriptors a build holds no tree (the in-memory index searches such a small
collection exactly): `open_build` then loads it into memory, which is as fast as mapping it.
"""

from __future__ import annotations

import json
import os
from array import array
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from ownership.fingerprint import Fingerprint
from ownership.index import (
    SHA_IS_KEY,
    SHA_NONE,
    SHA_OTHER,
    DescriptorVotes,
    IndexBase,
    MatchIndex,
    PdqMultiIndex,
    VocabularyTree,
    VoteBase,
    _is_sha256,
    _Robust,
    _single_threaded_faiss,
    bucket,
    check_hashes,
    empty_lists,
    train_vocabulary,
)

FORMAT = 1
META = "meta.json"


class BuildError(ValueError):
    """A build cannot be opened: missing, of another format, or for other index settings."""


class BuildWriter:
    """Writes a build into `directory` (which must not exist): `add`/`add_hashes` each work in the order
    a `MatchIndex` would be given them, then `finish`. Adding a key again replaces it, as in memory.
    Memory while writing: the PDQ hashes, the keys and a few numbers per work; at `finish`, 16 bytes
    per descriptor for bucketing (the descriptors themselves are read back from the file, mapped)."""

    def __init__(self, directory: Path, *, pdq_threshold: int = 31, min_pdq_quality: int = 50) -> None:
        _single_threaded_faiss()  # as MatchIndex does: OpenMP threads made bucketing 15x slower here
        directory.mkdir(parents=True)
        self.directory = directory
        self.pdq_threshold = pdq_threshold
        self.min_pdq_quality = min_pdq_quality
        probe = DescriptorVotes()  # the in-memory index's tree parameters: a build must bucket alike
        self._tree_from, self._leaf_size, self._tree_sample = probe.tree_from, probe.leaf_size, probe.tree_sample
        self._descriptors = open(directory / "descriptors.u8", "wb")  # noqa: SIM115 (closed in finish)
        self._points = open(directory / "points.f32", "wb")  # noqa: SIM115
        self._thumbs = open(directory / "thumbs.png", "wb")  # noqa: SIM115
        self._keys: list[bytes] = []
        self._slot_of_key: dict[str, int] = {}
        self._owners: dict[str, int] = {}
        self._owner_of, self._width, self._height = array("i"), array("i"), array("i")
        self._count, self._thumb_size, self._slot_pdq_row = array("i"), array("i"), array("i")
        self._first, self._thumb_offset = array("q"), array("q")
        self._alive, self._has_robust, self._sha_kind = bytearray(), bytearray(), bytearray()
        self._other_shas: list[tuple[bytes, int]] = []
        self._pdq = bytearray()
        self._pdq_slot = array("i")
        self._rows = 0
        self._thumb_bytes = 0

    def __len__(self) -> int:
        return len(self._slot_of_key)

    def add(self, *, item_sha256: str, owner: str, fingerprint: Fingerprint) -> None:
        """As `MatchIndex.add`."""
        pdq = fingerprint.pdq if fingerprint.pdq_quality >= self.min_pdq_quality else None
        self._insert(
            item_sha256,
            owner,
            sha256=item_sha256 if _is_sha256(item_sha256) else None,
            pdq=pdq,
            robust=_Robust.of(fingerprint),
            descriptors=fingerprint.robust.view.descriptors,
        )

    def add_hashes(self, *, item_sha256: str, owner: str, sha256: str | None, pdq: bytes | None) -> None:
        """As `MatchIndex.add_hashes`."""
        check_hashes(sha256, pdq)
        self._insert(item_sha256, owner, sha256=sha256, pdq=pdq, robust=None, descriptors=np.zeros((0, 32), np.uint8))

    def _insert(
        self,
        key: str,
        owner: str,
        *,
        sha256: str | None,
        pdq: bytes | None,
        robust: _Robust | None,
        descriptors: np.ndarray,
    ) -> None:
        slot = len(self._keys)
        old = self._slot_of_key.get(key)
        if old is not None:
            self._alive[old] = 0
        self._slot_of_key[key] = slot
        self._keys.append(key.encode())
        self._owner_of.append(self._owners.setdefault(owner, len(self._owners)))
        self._alive.append(1)
        self._sha_kind.append(SHA_NONE if sha256 is None else SHA_IS_KEY if sha256 == key else SHA_OTHER)
        if sha256 is not None and sha256 != key:
            self._other_shas.append((sha256.encode(), slot))
        if pdq is not None:
            self._slot_pdq_row.append(len(self._pdq_slot))
            self._pdq_slot.append(slot)
            self._pdq += pdq
        else:
            self._slot_pdq_row.append(-1)
        codes = np.ascontiguousarray(descriptors, np.uint8).reshape(-1, 32)
        self._first.append(self._rows)
        self._count.append(len(codes))
        self._has_robust.append(robust is not None)
        if robust is not None:
            if len(robust.points) != len(codes):
                raise ValueError("a work needs one keypoint per descriptor")
            self._descriptors.write(codes.tobytes())
            self._points.write(np.ascontiguousarray(robust.points, "<f4").tobytes())
            self._rows += len(codes)
            self._width.append(robust.width)
            self._height.append(robust.height)
            self._thumb_offset.append(self._thumb_bytes)
            self._thumb_size.append(len(robust.thumb_png))
            self._thumbs.write(robust.thumb_png)
            self._thumb_bytes += len(robust.thumb_png)
        else:
            self._width.append(0)
            self._height.append(0)
            self._thumb_offset.append(self._thumb_bytes)
            self._thumb_size.append(0)

    def finish(self, position: dict[str, Any]) -> dict[str, Any]:
        """Index what was added, write the tables and, last, `meta.json` with `position`; fsync it all."""
        for f in (self._descriptors, self._points, self._thumbs):
            f.flush()
            os.fsync(f.fileno())
            f.close()
        d = self.directory
        slots = len(self._keys)
        alive = np.frombuffer(bytes(self._alive), np.uint8).astype(bool)
        self._save("slot_alive", alive)
        for name, values in (
            ("slot_owner", self._owner_of),
            ("slot_width", self._width),
            ("slot_height", self._height),
            ("slot_count", self._count),
            ("slot_thumb_size", self._thumb_size),
            ("slot_pdq_row", self._slot_pdq_row),
        ):
            self._save(name, np.frombuffer(values, np.int32) if len(values) else np.zeros(0, np.int32))
        for name, values in (("slot_first", self._first), ("slot_thumb_offset", self._thumb_offset)):
            self._save(name, np.frombuffer(values, np.int64) if len(values) else np.zeros(0, np.int64))
        self._save("slot_has_robust", np.frombuffer(bytes(self._has_robust), np.uint8).astype(bool))
        self._save("slot_sha_kind", np.frombuffer(bytes(self._sha_kind), np.uint8))
        keys = np.array(self._keys, dtype=f"S{max([1, *map(len, self._keys)])}")
        self._save("keys", keys)
        live = np.flatnonzero(alive)
        by_key = live[np.argsort(keys[live], kind="stable")]
        self._save("sorted_keys", keys[by_key])
        self._save("sorted_key_slots", by_key.astype(np.int32))
        sha_kind = np.frombuffer(bytes(self._sha_kind), np.uint8)
        same = live[sha_kind[live] == SHA_IS_KEY]
        pairs = [(bytes(keys[s]), int(s)) for s in same] + [(h, s) for h, s in self._other_shas if alive[s]]
        pairs.sort()
        self._save("sorted_shas", np.array([h for h, _ in pairs], dtype="S64"))
        self._save("sorted_sha_slots", np.array([s for _, s in pairs], np.int32))
        (d / "owners.json").write_text(json.dumps(list(self._owners)))
        pdq = self._write_pdq(alive)
        small = self._rows < self._tree_from
        if not small:
            self._write_lists()
        meta = {
            "format": FORMAT,
            "position": position,
            "pdq_threshold": self.pdq_threshold,
            "min_pdq_quality": self.min_pdq_quality,
            "slots": slots,
            "works": int(alive.sum()),
            "descriptors": self._rows,
            "pdq_rows": pdq,
            "thumb_bytes": self._thumb_bytes,
            "small": small,
        }
        with open(d / META, "w") as text:
            json.dump(meta, text, indent=1)
            text.flush()
            os.fsync(text.fileno())
        fsync_dir(d)
        return meta

    def _save(self, name: str, values: np.ndarray) -> None:
        with open(self.directory / f"{name}.npy", "wb") as f:
            np.save(f, values)
            f.flush()
            os.fsync(f.fileno())

    def _write_pdq(self, slot_alive: np.ndarray) -> int:
        pdq = PdqMultiIndex(self.pdq_threshold)
        hashes = np.frombuffer(bytes(self._pdq), np.uint8).reshape(-1, 32)
        if len(hashes):
            pdq.add(hashes)
        slots = np.frombuffer(self._pdq_slot, np.int32) if len(self._pdq_slot) else np.zeros(0, np.int32)
        for row in np.flatnonzero(~slot_alive[slots]):
            pdq.remove(int(row))
        words, alive, offsets, rows = pdq.tables()
        self._save("pdq_words", words)
        self._save("pdq_alive", alive)
        self._save("pdq_slot", slots)
        if offsets is not None and rows is not None:
            self._save("pdq_offsets", offsets)
            self._save("pdq_rows", rows)
        return len(hashes)

    def _write_lists(self) -> None:
        """Train the tree as the in-memory index would on the same descriptors, and write the inverted
        lists in FAISS's own serialisation of an IndexBinaryIVF with array lists, list by list, so that
        `faiss.read_index_binary(..., IO_FLAG_MMAP)` maps them (OnDiskInvertedLists) instead of reading."""
        d = self.directory
        codes = np.memmap(d / "descriptors.u8", np.uint8, "r", shape=(self._rows, 32))
        tree = train_vocabulary(codes, leaf_size=self._leaf_size, tree_sample=self._tree_sample)
        levels: dict[str, Any] = {f"level_{i}": level for i, level in enumerate(tree.centroids)}
        np.savez(d / "tree.npz", branching=np.array(tree.branching), **levels)
        leaves = np.empty(self._rows, np.int32)
        for lo, part in bucket(tree, codes):
            leaves[lo : lo + len(part)] = part
        counts = np.frombuffer(self._count, np.int32)
        row_slot = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        sizes = np.bincount(leaves, minlength=tree.leaves).astype(np.int64)
        self._save("leaf_sizes", sizes)
        order = np.argsort(leaves, kind="stable")  # by leaf, rows ascending within a leaf (as FAISS appends)
        del leaves
        empty = empty_lists(tree)
        empty.ntotal = self._rows
        header = faiss.serialize_index_binary(empty).tobytes()
        tail = 4 + 8 + 8 + 4 + 8  # "ilar", nlist, code_size, "sprs", an empty vector
        if header[-tail : -tail + 4] != b"ilar":
            raise RuntimeError("unexpected FAISS serialisation of an empty IndexBinaryIVF")
        with open(d / "lists.faissb", "wb") as f:
            f.write(header[:-tail])
            f.write(b"ilar" + np.array([tree.leaves, 32], "<u8").tobytes() + b"full")
            f.write(np.array([tree.leaves], "<u8").tobytes() + sizes.astype("<u8").tobytes())
            start = 0
            for size in sizes.tolist():
                if size:
                    rows = order[start : start + size]
                    f.write(np.ascontiguousarray(codes[rows]).tobytes())
                    f.write(row_slot[rows].astype("<i8").tobytes())
                    start += size
            f.flush()
            os.fsync(f.fileno())


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_meta(directory: Path) -> dict[str, Any]:
    try:
        meta: dict[str, Any] = json.loads((directory / META).read_text())
    except (OSError, ValueError) as exc:
        raise BuildError(f"no readable index build at {directory}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise BuildError(f"index build {directory} is format {meta.get('format')}, this code reads {FORMAT}")
    return meta


def open_build(
    directory: Path, *, pdq_threshold: int = 31, min_pdq_quality: int = 50, **robust_thresholds: Any
) -> MatchIndex:
    """A `MatchIndex` over the build in `directory`, its files mapped read-only. The thresholds are
    `MatchIndex`'s; the PDQ ones must be those the build was written with (they shape its tables)."""
    meta = read_meta(directory)
    if (meta["pdq_threshold"], meta["min_pdq_quality"]) != (pdq_threshold, min_pdq_quality):
        raise BuildError(
            f"index build {directory} was written for pdq_threshold {meta['pdq_threshold']} and "
            f"pdq_min_quality {meta['min_pdq_quality']}; rebuild it for the current settings"
        )
    try:
        return _open(directory, meta, pdq_threshold=pdq_threshold, min_pdq_quality=min_pdq_quality, **robust_thresholds)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise BuildError(f"index build {directory} is unreadable: {exc}") from None


def _open(directory: Path, meta: dict[str, Any], **thresholds: Any) -> MatchIndex:
    def load(name: str) -> np.ndarray:
        return np.load(directory / f"{name}.npy", mmap_mode="r")

    def raw(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        if not np.prod(shape):
            return np.zeros(shape, dtype)
        return np.memmap(directory / name, dtype, "r", shape=shape)

    rows = int(meta["descriptors"])
    codes = raw("descriptors.u8", np.uint8, (rows, 32))
    points = raw("points.f32", np.float32, (rows, 2))
    thumbs = raw("thumbs.png", np.uint8, (int(meta["thumb_bytes"]),))
    owners: list[str] = json.loads((directory / "owners.json").read_text())
    words = load("pdq_words")
    tables = (load("pdq_offsets"), load("pdq_rows")) if (directory / "pdq_offsets.npy").exists() else (None, None)
    if meta["small"]:
        return _load_small(directory, load, codes, points, thumbs, owners, words, **thresholds)
    npz = np.load(directory / "tree.npz")
    levels = [npz[f"level_{i}"] for i in range(len(npz.files) - 1)]
    tree = VocabularyTree(levels, int(npz["branching"]))
    lists = faiss.read_index_binary(str(directory / "lists.faissb"), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    alive = load("slot_alive")
    votes = VoteBase(
        index=lists,
        tree=tree,
        leaf_sizes=np.array(load("leaf_sizes")),
        codes=codes,
        first=load("slot_first"),
        count=load("slot_count"),
        alive=alive,
    )
    base = IndexBase(
        keys=load("keys"),
        sorted_keys=load("sorted_keys"),
        sorted_key_slots=load("sorted_key_slots"),
        sorted_shas=load("sorted_shas"),
        sorted_sha_slots=load("sorted_sha_slots"),
        owners=owners,
        owner_of=load("slot_owner"),
        alive=alive,
        has_robust=load("slot_has_robust"),
        sha_kind=load("slot_sha_kind"),
        width=load("slot_width"),
        height=load("slot_height"),
        points=points,
        thumb_offset=load("slot_thumb_offset"),
        thumb_size=load("slot_thumb_size"),
        thumbs=thumbs,
        pdq=PdqMultiIndex.mapped(thresholds["pdq_threshold"], words, load("pdq_alive"), *tables),
        pdq_slot=load("pdq_slot"),
        slot_pdq_row=load("slot_pdq_row"),
        votes=votes,
    )
    return MatchIndex(base=base, **thresholds)


def _load_small(
    directory: Path,
    load: Any,
    codes: np.ndarray,
    points: np.ndarray,
    thumbs: np.ndarray,
    owners: list[str],
    words: np.ndarray,
    **thresholds: Any,
) -> MatchIndex:
    """A build without a tree, into memory: the same slots in the same order, replacements included."""
    index = MatchIndex(**thresholds)
    keys, sha_kind, pdq_row = load("keys"), load("slot_sha_kind"), load("slot_pdq_row")
    first, count, has_robust = load("slot_first"), load("slot_count"), load("slot_has_robust")
    width, height, owner_of = load("slot_width"), load("slot_height"), load("slot_owner")
    offset, size = load("slot_thumb_offset"), load("slot_thumb_size")
    other = dict(zip(load("sorted_sha_slots").tolist(), load("sorted_shas").tolist(), strict=True))
    for slot in range(len(keys)):
        key = bytes(keys[slot]).decode()
        kind = int(sha_kind[slot])
        sha = None if kind == SHA_NONE else key if kind == SHA_IS_KEY else other.get(slot, b"").decode() or None
        row = int(pdq_row[slot])
        pdq = np.asarray(words[row]).astype(">u8").tobytes() if row >= 0 else None
        robust = None
        lo, n = int(first[slot]), int(count[slot])
        if has_robust[slot]:
            o, s = int(offset[slot]), int(size[slot])
            robust = _Robust(
                int(width[slot]), int(height[slot]), np.array(points[lo : lo + n]), bytes(thumbs[o : o + s])
            )
        index._insert(
            key,
            owners[int(owner_of[slot])],
            sha256=sha,
            pdq=pdq,
            robust=robust,
            descriptors=np.array(codes[lo : lo + n]),
        )
    return index
