"""The web server SIGKILLed while an upload is in flight: no half record, nothing left that breaks later,
and the same upload, sent again to the restarted server, is stored once.

An artist sends a batch of three signed works through the running app (`mimicsafe serve`, gradio_client,
/artist_uploads_submit). The first is large, so that judging it takes a while. The server stores each
file's blob first (mimicsafe/uploads.py `prepare_uploads`), then judges it, then commits its row, verdict
and audit entry in one transaction. The test kills the server the moment the blob store is first
written to: the upload's bytes have all arrived and its first file is being stored or judged, with
nothing committed yet. A blob or a temporary file may be left; the database must hold no trace.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image
from sqlalchemy import func, select

from mimicsafe import audit
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry, Upload
from ownership.signatures import sign_manifest, write_keypair
from tests.gate_helpers import artwork, png_bytes
from tests.reliability.app_server import AppServer, audit_verify, files_under
from tests.reliability.helpers import PASSWORD, make_people, register_key, work
from tests.waiting import wait_until

KILL_GUARD_S = 300  # a hang guard, not a speed assertion


def _large_work(size: int = 2400) -> bytes:
    """A big, detailed image: several MB of PNG that takes the gate a noticeable time to judge."""
    image = np.asarray(Image.fromarray(artwork(21, 0)).resize((size, size), Image.Resampling.BICUBIC))
    noise = np.random.default_rng(21).integers(-12, 13, image.shape)
    return png_bytes(np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8))


def _blob_store_files(instance: Instance) -> tuple[set[str], set[Path]]:
    """(published blobs by name, temporaries in blobs/tmp)."""
    root = instance.blobs.root
    published = {p.name for p in root.glob("??/??/*")} if root.is_dir() else set()
    return published, files_under(root / "tmp")


def _send(url: str, files: list[Path], manifest: Path) -> object:
    client = Client(url + "/", auth=("alice", PASSWORD), verbose=False, httpx_kwargs={"timeout": 300})
    return client.submit([handle_file(str(f)) for f in files], [handle_file(str(manifest))],
                         api_name="/artist_uploads_submit")


def test_server_killed_mid_upload_then_restarted_and_retried(instance: Instance, tmp_path: Path) -> None:
    make_people(instance, {"alice": "artist"})
    private, public = write_keypair(tmp_path / "keys")
    register_key(instance, "alice", public)
    files = [tmp_path / "large.png", tmp_path / "second.png", tmp_path / "third.png"]
    for path, data in zip(files, [_large_work(), work(22, 1), work(22, 2)], strict=True):
        path.write_bytes(data)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(sign_manifest(private_key_path_or_bytes=private, artist="alice", files=files))
    assert _blob_store_files(instance) == (set(), set())
    instance.engine.dispose()  # the server is the only writer while it runs

    server = AppServer(instance, tmp_path / "first").start()
    try:
        job = _send(server.url, files, manifest)
        wait_until(lambda: _blob_store_files(instance) != (set(), set()) or not server.alive(),
                   seconds=KILL_GUARD_S, what="the upload's first bytes in the blob store", poll=0.002)
        assert server.alive(), f"the server ended before it could be killed: {server.log()}"
        server.kill()
    finally:
        server.stop()
    try:
        job.result(timeout=120)  # type: ignore[attr-defined]
        answered = True
    except Exception:  # noqa: BLE001 - the connection died with the server, as it should
        answered = False
    assert not answered, "the upload was answered: the server was killed too late"

    # No half record: no row, no verdict, no audit entry; the chain is intact.
    with instance.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Upload)) == 0
        assert session.scalar(select(func.count()).select_from(AuditEntry)
                              .where(AuditEntry.action.like("upload.%"))) == 0
        assert audit.verify_chain(session).ok
    verified = audit_verify(instance)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    # What the kill may leave: whole blobs (a blob is published only complete), or a temporary that is
    # never visible as a blob. Neither may stop the retry.
    orphans, _ = _blob_store_files(instance)
    for sha in orphans:
        instance.blobs.get(sha)  # raises BlobCorrupted if a partial blob had been published

    # The restarted server takes the same upload; every file is stored once, with one verdict and one entry.
    restarted = AppServer(instance, tmp_path / "second").start()
    try:
        cards, *_ = _send(restarted.url, files, manifest).result(timeout=KILL_GUARD_S)  # type: ignore[attr-defined]
    finally:
        restarted.stop()
    for path in files:
        assert f"{path.name} — ACCEPTED" in cards, cards
    with instance.transaction() as session:
        rows = session.scalars(select(Upload).order_by(Upload.id)).all()
        assert [(r.file_name, r.decision, r.verdict["decision"]) for r in rows] == \
            [(f.name, "accepted", "accepted") for f in files]
        entries = session.scalars(select(AuditEntry.details).where(AuditEntry.action.like("upload.%"))).all()
        assert sorted(e["upload_id"] for e in entries) == [r.id for r in rows]
    verified = audit_verify(instance)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    published, _ = _blob_store_files(instance)
    assert published == {r.sha256 for r in rows} >= orphans  # an orphan blob was reused, not duplicated
    for row in rows:
        instance.blobs.get(row.sha256)
