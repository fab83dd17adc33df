import hashlib
import io
import os
from pathlib import Path

import pytest

from mimicsafe.blobs import BlobStore
from mimicsafe.errors import BlobCorrupted, BlobError, NotFoundError


def test_put_get_roundtrip_is_content_addressed(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"hello")
    assert sha == hashlib.sha256(b"hello").hexdigest()
    assert store.path_for(sha) == tmp_path / sha[:2] / sha[2:4] / sha
    assert store.get(sha) == b"hello"
    assert store.put_stream(io.BytesIO(b"hello")) == sha


def test_a_blob_is_never_overwritten(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"original")
    inode = store.path_for(sha).stat().st_ino
    store.put(b"original")
    store.put_stream(io.BytesIO(b"original"))
    assert store.path_for(sha).stat().st_ino == inode


def test_read_verifies_the_hash(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    sha = store.put(b"precious")
    path = store.path_for(sha)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    with pytest.raises(BlobCorrupted, match=sha):
        store.get(sha)


def test_missing_blob(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        BlobStore(tmp_path).get("0" * 64)


def test_bad_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sha256"):
        BlobStore(tmp_path).path_for("../../etc/passwd")


class _DiskFullAfter(io.RawIOBase):
    """A stream that yields some bytes, then fails as a full disk would."""

    def __init__(self, good: bytes) -> None:
        self._good = good

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._good:
            chunk, self._good = self._good, b""
            return chunk
        raise OSError(28, "No space left on device")


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def test_failure_mid_stream_leaves_nothing(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    with pytest.raises(BlobError, match="No space left"):
        store.put_stream(_DiskFullAfter(b"x" * 5000))
    assert _files_under(tmp_path) == []


def test_failure_during_fsync_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path)

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(BlobError):
        store.put(b"data that never lands")
    monkeypatch.undo()
    assert _files_under(tmp_path) == []
    assert not store.exists(hashlib.sha256(b"data that never lands").hexdigest())
