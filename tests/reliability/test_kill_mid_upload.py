"""A `mimicsafe upload` killed with SIGKILL in the middle of a batch: no half record, and nothing left
behind that breaks the retry. And a blob writer killed in the middle of a file.

The batch is one unit: each file's blob is stored and the file judged, one by one, in a read-only
transaction; then the rows and audit entries of the whole batch are committed together in one write
transaction (mimicsafe/uploads.py `upload`). The test kills the process as soon as its first blob
appears (it is then mid-batch, nothing committed), then retries the same command.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from mimicsafe import audit
from mimicsafe.blobs import STALE_TEMPORARY_S, BlobStore
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry, Upload
from ownership.signatures import sign_manifest, write_keypair
from tests.reliability.helpers import child_env, make_people, register_key, work
from tests.waiting import wait_until

BATCH = 8


def _blobs(instance: Instance) -> set[str]:
    root = instance.blobs.root
    return {p.name for p in root.glob("??/??/*")} if root.is_dir() else set()


def _upload_command(instance: Instance, files: list[Path], manifest: Path) -> list[str]:
    return [sys.executable, "-m", "ui", "--json", "upload", "alice", *map(str, files), "--signature", str(manifest)]


def test_upload_killed_mid_batch_then_retried(instance: Instance, tmp_path: Path) -> None:
    make_people(instance, {"alice": "artist"})
    private, public = write_keypair(tmp_path / "keys")
    register_key(instance, "alice", public)
    files = []
    for i in range(BATCH):
        path = tmp_path / f"new{i}.png"
        path.write_bytes(work(7, i))
        files.append(path)
    manifest = tmp_path / "batch.json"
    manifest.write_bytes(sign_manifest(private_key_path_or_bytes=private, artist="alice", files=files))
    command = _upload_command(instance, files, manifest)

    proc = subprocess.Popen(command, env=child_env(instance), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: _blobs(instance) or proc.poll() is not None, seconds=300, what="the upload's first blob",
               poll=0.01)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"the upload ended before it could be killed: {stderr!r}"
    orphans = _blobs(instance)
    assert 1 <= len(orphans) < BATCH

    # No half record: no upload row, no audit entry; the log is intact; the orphan blobs are whole.
    with instance.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action.like("upload.%"))) == 0
        assert audit.verify_chain(session).ok
    for sha in orphans:
        instance.blobs.get(sha)  # raises BlobCorrupted if a partial file had been published

    # The retry stores every file once, reusing the orphans.
    retry = subprocess.run(command, env=child_env(instance), capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stderr
    verdicts = json.loads(retry.stdout)
    assert [v["decision"] for v in verdicts] == ["accepted"] * BATCH
    with instance.transaction() as session:
        rows = session.scalars(select(Upload).order_by(Upload.id)).all()
        assert [r.file_name for r in rows] == [f.name for f in files]
        logged = session.scalars(select(AuditEntry.details).where(AuditEntry.action == "upload.accepted")).all()
        assert sorted(d["upload_id"] for d in logged) == [r.id for r in rows]
        assert audit.verify_chain(session).ok
    assert _blobs(instance) == {r.sha256 for r in rows} >= orphans
    for row in rows:
        instance.blobs.get(row.sha256)


def test_writer_killed_mid_blob_publishes_nothing_and_its_temporary_is_swept(tmp_path: Path) -> None:
    root = tmp_path / "blobs"
    code = "import sys; from mimicsafe.blobs import BlobStore; BlobStore(__import__('pathlib').Path(sys.argv[1]))" \
           ".put_stream(sys.stdin.buffer)"
    writer = subprocess.Popen([sys.executable, "-c", code, str(root)], stdin=subprocess.PIPE)
    assert writer.stdin is not None
    writer.stdin.write(b"x" * (3 << 20))  # three 1 MiB chunks; the stream stays open
    writer.stdin.flush()
    wait_until(lambda: any(p.stat().st_size >= 2 << 20 for p in root.glob("tmp/*")), seconds=120,
               what="2 MiB in the writer's temporary file", poll=0.01)
    writer.send_signal(signal.SIGKILL)  # mid-file: more data was coming
    writer.wait(timeout=60)
    (partial,) = root.glob("tmp/*")
    assert list(root.glob("??/??/*")) == []  # never visible as a blob

    store = BlobStore(root)
    store.put(b"a later write")  # a fresh temporary may be a live writer's: left alone
    assert partial.exists()
    old = time.time() - STALE_TEMPORARY_S - 60
    os.utime(partial, (old, old))
    store2 = BlobStore(root)
    store2.put(b"another later write")
    assert not partial.exists()
    assert list(root.glob("tmp/*")) == []
