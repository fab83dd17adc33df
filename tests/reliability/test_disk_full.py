"""The disk fills up during a blob write: a clean error, nothing half-written, the upload not recorded.

The real thing where the machine allows it: a 1 MiB tmpfs mounted over the blob directory (needs root
and mount rights, as in CI). Everywhere, also the case a tmpfs cannot produce: a filesystem that reports
ENOSPC only at fsync (delayed allocation, network filesystems).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mimicsafe.blobs import BlobStore
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry, Upload
from mimicsafe.errors import BlobError
from tests.reliability.helpers import child_env, make_people, work
from tests.servers import SQLITE_ONLY

SIZE = 1 << 20


def _mount_tmpfs(where: Path, size: int, *, inodes: int | None = None) -> None:
    where.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    options = f"size={size},mode=0755" + (f",nr_inodes={inodes}" if inodes else "")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "small"
    _mount_tmpfs(where, SIZE)
    yield where
    subprocess.run(["umount", "-l", str(where)], check=True)


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_blob_larger_than_the_free_space(small_disk: Path) -> None:
    store = BlobStore(small_disk)
    with pytest.raises(BlobError, match="No space left on device"):
        store.put(os.urandom(2 * SIZE))
    assert _files(small_disk) == []  # the partial temporary is gone, no blob was published
    assert os.statvfs(small_disk).f_bfree == os.statvfs(small_disk).f_blocks  # every block is free again

    sha = store.put(b"small enough")  # the store keeps working
    assert store.get(sha) == b"small enough"


def test_no_inodes_left_for_the_temporary_file(tmp_path: Path) -> None:
    """Space left but no inode: the temporary file cannot even be created. Still a BlobError, which the
    CLI and the app explain, rather than a bare OSError and a traceback."""
    where = tmp_path / "few-inodes"
    _mount_tmpfs(where, SIZE, inodes=8)
    try:
        store = BlobStore(where / "blobs")
        store.put(b"the first blob")  # creates blobs/, blobs/tmp/ and the blob's directories
        used = 0
        with pytest.raises(OSError, match="No space left"):  # take every remaining inode
            while True:
                (where / f"inode{used}").touch()
                used += 1
        with pytest.raises(BlobError, match="No space left on device"):
            store.put(b"the second blob")
        assert list((where / "blobs" / "tmp").iterdir()) == []
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


@SQLITE_ONLY  # the database side (rollback of the whole batch) is the kill test's, on both backends
def test_disk_full_during_an_upload_from_the_command_line(instance: Instance, tmp_path: Path) -> None:
    make_people(instance, {"alice": "artist"})
    blob_dir = instance.blobs.root
    _mount_tmpfs(blob_dir, SIZE)
    try:
        data = work(9, 0)
        filler = blob_dir / "filler"
        filler.write_bytes(b"\0" * (SIZE - len(data) // 2))  # leaves less room than the upload needs
        image = tmp_path / "new.png"
        image.write_bytes(data)
        command = [sys.executable, "-m", "ui", "upload", "alice", str(image)]

        full = subprocess.run(command, env=child_env(instance), capture_output=True, text=True, timeout=300)
        assert full.returncode == 2
        assert full.stderr.strip() == "error: could not store the file: No space left on device"
        assert _files(blob_dir) == [filler]  # nothing half-written
        with instance.transaction() as session:  # not recorded, not even half
            assert session.scalar(select(func.count()).select_from(Upload)) == 0
            assert session.scalar(select(func.count()).select_from(AuditEntry)
                                  .where(AuditEntry.action.like("upload.%"))) == 0

        filler.unlink()  # space comes back: the same upload goes through
        retried = subprocess.run(command, env=child_env(instance), capture_output=True, text=True, timeout=300)
        assert retried.returncode == 1, retried.stderr  # rejected (no proof), and stored with its verdict
        with instance.transaction() as session:
            (row,) = session.scalars(select(Upload)).all()
        assert instance.blobs.get(row.sha256) == data
    finally:
        subprocess.run(["umount", "-l", str(blob_dir)], check=True)


def test_enospc_reported_at_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = BlobStore(tmp_path / "blobs")
    real_fsync = os.fsync

    def full_at_fsync(fd: int) -> None:
        if os.path.dirname(os.readlink(f"/proc/self/fd/{fd}")) == str(store.root / "tmp"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", full_at_fsync)
    with pytest.raises(BlobError, match="No space left on device"):
        store.put(b"written, but not durable")
    assert _files(store.root) == []
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert store.get(store.put(b"written, but not durable")) == b"written, but not durable"
