"""The gate's expensive work runs before the upload's write transaction, and the decision stays right.

`uploads.upload` judges each file in a read-only transaction, then stores it in a write transaction
where the inputs the decision used are checked again (mimicsafe/uploads.py, `_still_holds`). These
tests change the world in the gap between the two — another writer, a work verified, a key revoked —
and check that the writer was not blocked and that the stored verdict is the one the state at commit
time calls for.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import func, select

from mimicsafe import accounts, keys, portfolio, uploads
from mimicsafe.context import Instance
from mimicsafe.db.engine import make_engine, make_session_factory, transaction
from mimicsafe.db.models import AuditEntry, Upload
from mimicsafe.imaging import NamedFile
from ownership.signatures import load_public_key, sign_manifest, write_keypair
from tests.reliability.helpers import PASSWORD, make_people, register_key, submit_portfolio, work
from tests.servers import SQLITE_ONLY


def _gate_calls(monkeypatch: pytest.MonkeyPatch, meanwhile: Callable[[int], None]) -> list[int]:
    """Count the gate's evaluations; after each, run `meanwhile(call number)` — in the gap."""
    calls: list[int] = []
    real = uploads.evaluate

    def evaluate(*args, **kwargs):  # type: ignore[no-untyped-def]
        evidence = real(*args, **kwargs)
        calls.append(len(calls) + 1)
        meanwhile(len(calls))
        return evidence

    monkeypatch.setattr(uploads, "evaluate", evaluate)
    return calls


def _signed_upload(tmp_path: Path, instance: Instance, artist: str, data: bytes) -> tuple[NamedFile, NamedFile]:
    private, public = write_keypair(tmp_path / f"{artist}-keys")
    register_key(instance, artist, public)
    picture = tmp_path / f"{artist}-upload.png"
    picture.write_bytes(data)
    manifest = sign_manifest(private_key_path_or_bytes=private, artist=artist, files=[picture])
    return NamedFile(picture.name, data), NamedFile("manifest.json", manifest)


def _stored(instance: Instance) -> list[tuple[str, str]]:
    with instance.transaction() as session:
        rows = session.execute(select(Upload.file_name, Upload.decision).order_by(Upload.id)).all()
        audited = session.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.action.like("upload.%")))
    assert audited == len(rows)
    return [(name, decision) for name, decision in rows]


@SQLITE_ONLY
def test_another_writer_is_not_blocked_while_the_gate_works(instance: Instance, tmp_path: Path) -> None:
    make_people(instance, {"alice": "artist"})
    file, manifest = _signed_upload(tmp_path, instance, "alice", work(3, 1))
    # A second connection that gives up on the write lock after 1 s instead of the usual 30 s.
    impatient = make_engine(instance.settings.sqlalchemy_url, sqlite_busy_timeout_s=1.0)

    def write_meanwhile(call: int) -> None:
        with transaction(make_session_factory(impatient)) as session:
            accounts.create_user(session=session, username=f"newcomer{call}", role="artist", password=PASSWORD)

    searches: list[object] = []
    search = instance.registry.search
    try:
        with pytest.MonkeyPatch.context() as patch:
            calls = _gate_calls(patch, write_meanwhile)
            patch.setattr(instance.registry, "search", lambda *a, **k: searches.append(a) or search(*a, **k))
            (outcome,) = uploads.upload(instance=instance, username="alice", files=[file], signatures=[manifest])
    finally:
        impatient.dispose()
    assert outcome.evidence.verdict.decision == "accepted"
    assert calls == [1]  # judged once, before the write transaction; nothing changed, so not again
    # The writer changed no registered work, so the index was not searched again under the write lock.
    assert len(searches) == 1
    assert _stored(instance) == [(file.name, "accepted")]
    with instance.transaction() as session:
        assert accounts.get_user(session=session, username="newcomer1").role == "artist"


def test_a_work_verified_in_the_gap_is_not_missed(instance: Instance, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob uploads alice's pending portfolio work, signed with his own key. While his upload is being
    judged, an admin verifies alice's work: the stored verdict must be the rejection."""
    make_people(instance, {"alice": "artist", "bob": "artist", "root": "admin"})
    alices = work(5, 0)
    submit_portfolio(instance, "alice", [alices])
    file, manifest = _signed_upload(tmp_path, instance, "bob", alices)

    def verify_meanwhile(call: int) -> None:
        if call == 1:
            with instance.transaction() as session:
                portfolio.verify_items(session=session, registry=instance.registry, username="alice", admin="root")

    calls = _gate_calls(monkeypatch, verify_meanwhile)
    (outcome,) = uploads.upload(instance=instance, username="bob", files=[file], signatures=[manifest])
    codes = {r.code for r in outcome.evidence.verdict.reasons}
    assert outcome.evidence.verdict.decision == "rejected" and "matches_other_artist" in codes, codes
    assert calls == [1, 2]  # the index's answer changed, so the gate judged again under the write lock
    assert _stored(instance) == [(file.name, "rejected")]


def test_a_key_revoked_in_the_gap_is_not_missed(instance: Instance, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    make_people(instance, {"alice": "artist"})
    file, manifest = _signed_upload(tmp_path, instance, "alice", work(6, 1))
    fingerprint = load_public_key((tmp_path / "alice-keys").glob("*.pub").__next__().read_bytes()).fingerprint

    def revoke_meanwhile(call: int) -> None:
        if call == 1:
            with instance.transaction() as session:
                keys.revoke_key(session=session, username="alice", fingerprint=fingerprint, actor="alice")

    _gate_calls(monkeypatch, revoke_meanwhile)
    (outcome,) = uploads.upload(instance=instance, username="alice", files=[file], signatures=[manifest])
    codes = {r.code for r in outcome.evidence.verdict.reasons}
    assert outcome.evidence.verdict.decision == "rejected" and "key_revoked" in codes, codes
    assert _stored(instance) == [(file.name, "rejected")]


def test_the_same_file_twice_in_one_batch_is_a_duplicate(instance: Instance, tmp_path: Path) -> None:
    """Judged before the batch's transaction, both copies looked new; the second is caught at commit."""
    make_people(instance, {"alice": "artist"})
    file, manifest = _signed_upload(tmp_path, instance, "alice", work(8, 1))
    outcomes = uploads.upload(instance=instance, username="alice", files=[file, file], signatures=[manifest])
    assert [o.evidence.verdict.decision for o in outcomes] == ["accepted", "rejected"]
    assert {r.code for r in outcomes[1].evidence.verdict.reasons} >= {"duplicate"}
    assert _stored(instance) == [(file.name, "accepted"), (file.name, "rejected")]
