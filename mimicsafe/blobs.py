"""Content-addressed blob store: files named by their SHA-256 under `<home>/blobs/ab/cd/<sha256>`.

Writes go to a temporary file in the same filesystem, are fsynced, then linked into place, so a
reader never sees a partial blob and a failure mid-write (a full disk, an I/O error) leaves nothing
behind and raises `BlobError`. A blob is never overwritten. Reads verify the hash.

A writer killed mid-write (SIGKILL, power loss) cannot clean up after itself: its temporary file stays
in `<home>/blobs/tmp`. It is never visible as a blob, and the first write of a later process removes
temporaries untouched for `STALE_TEMPORARY_S` (a live writer touches its file with every chunk).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from mimicsafe.errors import BlobCorrupted, BlobError, NotFoundError

_CHUNK = 1024 * 1024
STALE_TEMPORARY_S = 3600.0


def _is_sha256(value: str) -> bool:
    return len(value) == 64 and all(c in "0123456789abcdef" for c in value)


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._tmp = root / "tmp"
        self._swept = False

    def path_for(self, sha256: str) -> Path:
        if not _is_sha256(sha256):
            raise ValueError(f"sha256: expected 64 lowercase hex characters, got {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path_for(sha256).is_file()

    def put(self, data: bytes) -> str:
        """Store bytes; return their SHA-256. Storing the same content twice is a no-op."""
        sha256 = hashlib.sha256(data).hexdigest()
        if not self.exists(sha256):
            self._store([data])
        return sha256

    def put_stream(self, stream: BinaryIO) -> str:
        """Store a stream without holding it in memory; return its SHA-256."""
        return self._store(iter(lambda: stream.read(_CHUNK), b""))

    def get(self, sha256: str) -> bytes:
        """Return the blob's bytes after checking they still hash to its name."""
        path = self.path_for(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"blob {sha256} is not in the store") from None
        if hashlib.sha256(data).hexdigest() != sha256:
            raise BlobCorrupted(f"blob {sha256} is corrupted on disk ({path}); restore it from a backup")
        return data

    def delete(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def sweep_temporaries(self, *, older_than_s: float = STALE_TEMPORARY_S) -> int:
        """Remove temporary files left by writers that died mid-write; return how many."""
        cutoff = time.time() - older_than_s
        removed = 0
        for path in self._tmp.glob("*") if self._tmp.is_dir() else ():
            try:
                if path.is_file() and path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:  # another process swept it first
                continue
        return removed

    # internals ------------------------------------------------------------------------------------
    def _store(self, chunks: Iterable[bytes]) -> str:
        """Write chunks to a temporary file, fsync, and link it under its hash. Any OSError → BlobError."""
        tmp_path: Path | None = None
        try:
            self._prepare_tmp()
            fd, name = tempfile.mkstemp(dir=self._tmp)
            tmp_path = Path(name)
            digest = hashlib.sha256()
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            sha256 = digest.hexdigest()
            self._publish(tmp_path, sha256)
            return sha256
        except OSError as exc:
            raise BlobError(f"could not store the file: {exc.strerror or exc}") from exc
        finally:
            if tmp_path is not None:
                tmp_path.unlink(missing_ok=True)

    def _prepare_tmp(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True)
        if not self._swept:
            self._swept = True
            self.sweep_temporaries()

    def _publish(self, tmp_path: Path, sha256: str) -> None:
        final = self.path_for(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            # link() fails if the name exists, so a blob is never overwritten, even by a racing writer.
            os.link(tmp_path, final)
        except FileExistsError:
            return
        _fsync_dir(final.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
