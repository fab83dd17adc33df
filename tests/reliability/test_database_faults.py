"""The database goes away during a request: a clear error, nothing half-saved, and the next request works.

Faults: the PostgreSQL server drops the connections (what a restart, failover or crash does), both in
the middle of a request and between requests; a SQLite write lock held past the busy timeout; a
database server that is not there at all, through the command line.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest
from sqlalchemy import func, select, text

from mimicsafe import accounts, audit, portfolio, uploads
from mimicsafe.context import Instance
from mimicsafe.db.engine import make_engine, make_session_factory, transaction
from mimicsafe.db.models import AuditEntry, Upload, User
from mimicsafe.errors import DatabaseUnavailable, ValidationFailed
from mimicsafe.imaging import NamedFile
from tests.reliability.helpers import PASSWORD, make_people, work
from tests.servers import POSTGRES_URL, SERVER_ONLY, SQLITE_ONLY, PostgresServer


def _upload(instance: Instance, name: str, data: bytes) -> uploads.Outcome:
    with instance.transaction() as session:
        (outcome,) = uploads.upload_files(session=session, blobs=instance.blobs, registry=instance.registry,
                                          settings=instance.settings, username="alice",
                                          files=[NamedFile(name, data)])
    return outcome


def _counts(instance: Instance) -> tuple[int, int]:
    with instance.transaction() as session:
        return (session.scalar(select(func.count()).select_from(Upload)) or 0,
                session.scalar(select(func.count()).select_from(AuditEntry)) or 0)


@SERVER_ONLY
def test_connection_lost_mid_request(instance: Instance) -> None:
    make_people(instance, {"alice": "artist"})
    assert POSTGRES_URL is not None
    server = PostgresServer(POSTGRES_URL)
    database = instance.engine.url.database
    assert database is not None
    before = _counts(instance)
    try:
        with pytest.raises(DatabaseUnavailable, match="lost the connection to the database") as caught, \
                instance.transaction() as session:
            session.execute(text("SELECT 1"))  # the request holds its connection…
            assert server.terminate_connections(database) >= 1  # …which the server now drops
            uploads.upload_files(session=session, blobs=instance.blobs, registry=instance.registry,
                                 settings=instance.settings, username="alice", files=[NamedFile("a.png", work(3, 0))])
        assert "SELECT" not in str(caught.value) and PASSWORD not in str(caught.value)

        # Nothing was half-saved, and the very next request works on a fresh connection.
        assert _counts(instance) == before
        outcome = _upload(instance, "a.png", work(3, 0))
        assert outcome.upload_id is not None
        assert _counts(instance) == (before[0] + 1, before[1] + 1)

        # Connections dropped while idle in the pool are replaced before use: no error at all.
        assert server.terminate_connections(database) >= 1
        with instance.transaction() as session:
            assert audit.verify_chain(session).ok
    finally:
        server.close()


@SQLITE_ONLY
def test_sqlite_write_lock_held_past_the_busy_timeout(instance: Instance) -> None:
    """Another process holds the write lock (a stuck job, a backup tool): refuse clearly, then recover."""
    engine = make_engine(instance.settings.sqlalchemy_url, sqlite_busy_timeout_s=0.2)
    sessions = make_session_factory(engine)
    holder = sqlite3.connect(instance.settings.sqlalchemy_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(DatabaseUnavailable, match="the database is busy .*nothing was saved"), \
                transaction(sessions) as session:
            accounts.create_user(session=session, username="carol", role="artist", password=PASSWORD)
        holder.execute("ROLLBACK")
        with transaction(sessions) as session:
            accounts.create_user(session=session, username="carol", role="artist", password=PASSWORD)
        with transaction(sessions) as session:
            assert session.scalar(select(func.count()).select_from(User)) == 1
    finally:
        holder.close()
        engine.dispose()


def test_unreachable_database_server_from_the_command_line(tmp_path, free_port: int) -> None:
    """No server listens there: one line naming the problem, exit status 2, no traceback, no password."""
    secret = "s3cret-db-password"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "MIMICSAFE_HOME": str(tmp_path / "home"),
           "MIMICSAFE_DATABASE_URL": f"postgresql://mimicsafe:{secret}@127.0.0.1:{free_port}/mimicsafe"}
    result = subprocess.run([sys.executable, "-m", "ui", "user", "list"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: cannot connect to the database"), result.stderr
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize("backend", ["sqlite", "server"], indirect=True)
def test_a_value_the_database_refuses_is_a_clear_refusal(instance: Instance) -> None:
    """PostgreSQL refuses NUL in text, SQLite keeps it: either way no crash, and a refusal is explained."""
    make_people(instance, {"alice": "artist", "root": "admin"})
    with instance.transaction() as session:
        (item,) = portfolio.add_items(session=session, blobs=instance.blobs, settings=instance.settings,
                                      username="alice", files=[NamedFile("a.png", work(3, 1))], evidence_url=None,
                                      actor="alice")
    note = "no evidence\x00"  # (an evidence link with NUL is refused before the database: portfolio.py)
    try:
        with instance.transaction() as session:
            portfolio.deny_items(session=session, username="alice", admin="root", note=note, item_ids=[item.id])
    except ValidationFailed as exc:
        assert instance.engine.dialect.name == "postgresql"
        assert "the database refused a value" in str(exc) and "NUL" in str(exc)
    else:
        assert instance.engine.dialect.name == "sqlite"
