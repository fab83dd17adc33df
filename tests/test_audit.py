import subprocess
import sys

import pytest
from sqlalchemy import select, text

from mimicsafe import audit
from mimicsafe.context import Instance
from mimicsafe.db.models import AuditEntry


def _write_entries(instance: Instance, n: int) -> None:
    for i in range(n):
        with instance.transaction() as session:
            audit.append(session, actor="tester", action="test.event", subject=f"item-{i}", details={"i": i})


def _verify(instance: Instance) -> audit.ChainReport:
    with instance.transaction() as session:
        return audit.verify_chain(session)


def test_intact_chain(instance: Instance) -> None:
    _write_entries(instance, 5)
    report = _verify(instance)
    assert report.ok and report.entries == 5


def test_an_edit_is_detected_and_located(instance: Instance) -> None:
    _write_entries(instance, 5)
    with instance.transaction() as session:
        session.execute(text("UPDATE audit_log SET subject = 'forged' WHERE seq = 3"))
    report = _verify(instance)
    assert not report.ok and report.first_bad_seq == 3 and "edited" in report.problem


def test_an_edit_of_details_is_detected(instance: Instance) -> None:
    _write_entries(instance, 3)
    with instance.transaction() as session:
        entry = session.scalar(select(AuditEntry).where(AuditEntry.seq == 2))
        assert entry is not None
        entry.details = {"i": 99}
    assert _verify(instance).first_bad_seq == 2


def test_a_deletion_is_detected_and_located(instance: Instance) -> None:
    _write_entries(instance, 5)
    with instance.transaction() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    report = _verify(instance)
    assert not report.ok and report.first_bad_seq == 2


def test_a_deleted_tail_is_detected(instance: Instance) -> None:
    _write_entries(instance, 4)
    with instance.transaction() as session:
        session.execute(text("DELETE FROM audit_log WHERE seq = 4"))
    report = _verify(instance)
    assert not report.ok and report.first_bad_seq == 4 and "tail" in report.problem


def test_a_reordering_is_detected_and_located(instance: Instance) -> None:
    _write_entries(instance, 5)
    # Swap the contents of entries 2 and 3 (keeping each row's own hashes), as a reordering would.
    with instance.transaction() as session:
        rows = {e.seq: e for e in session.scalars(select(AuditEntry).where(AuditEntry.seq.in_([2, 3])))}
        a, b = rows[2], rows[3]
        fields = ("created_at", "actor", "action", "subject", "details", "prev_hash", "entry_hash")
        va, vb = ({f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields})
        for f in fields:
            setattr(a, f, vb[f])
            setattr(b, f, va[f])
    report = _verify(instance)
    assert not report.ok and report.first_bad_seq == 2


@pytest.mark.parametrize("tamper", [False, True])
def test_cli_exit_status(instance: Instance, tamper: bool) -> None:
    _write_entries(instance, 3)
    if tamper:
        with instance.transaction() as session:
            session.execute(text("UPDATE audit_log SET actor = 'mallory' WHERE seq = 1"))
    result = subprocess.run(
        [sys.executable, "-m", "ui", "--home", str(instance.settings.home_dir), "audit", "verify"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == (1 if tamper else 0), result.stderr
    assert ("BROKEN at entry 1" in result.stdout) == tamper
