"""The servers `.ci/run` starts for the tests, and test databases on PostgreSQL: create, copy, drop, cut off;
and the waiting for and stopping of a server process a test started."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import urllib.request
from collections.abc import Callable

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from mimicsafe.db import migrate
from mimicsafe.db.engine import make_engine
from tests.waiting import wait_until

# Read at import (collection time): tests/conftest.py's autouse fixture hides every MIMICSAFE_* variable.
POSTGRES_URL = os.environ.get("MIMICSAFE_TEST_POSTGRES_URL") or None
REDIS_URL = os.environ.get("MIMICSAFE_TEST_REDIS_URL") or None

# For a test about one backend's own faults, in place of the usual sqlite/server pair. Without a
# PostgreSQL server, a SERVER_ONLY test is skipped.
SERVER_ONLY = pytest.mark.parametrize("backend", ["server"], indirect=True)
SQLITE_ONLY = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

_NAME = re.compile(r"^[a-z0-9_]{1,63}$")


def _quoted(name: str) -> str:
    if not _NAME.match(name):
        raise ValueError(f"database name {name!r}: lowercase letters, digits and '_' only")
    return f'"{name}"'


class PostgresServer:
    """Administrative connection to a server, given the URL of any database on it."""

    def __init__(self, url: str) -> None:
        self._url = make_url(url)
        self._admin = create_engine(self._url, isolation_level="AUTOCOMMIT", poolclass=NullPool)

    def url_for(self, database: str) -> str:
        return self._url.set(database=database).render_as_string(hide_password=False)

    def create_database(self, name: str, *, template: str | None = None, migrated: bool = False) -> str:
        """Create `name` (a copy of `template` if given); with `migrated`, apply the migrations to head."""
        copy = f" TEMPLATE {_quoted(template)} STRATEGY FILE_COPY" if template else ""
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"CREATE DATABASE {_quoted(name)}{copy}")
        if migrated:
            engine = make_engine(self.url_for(name))
            try:
                migrate.upgrade(engine)
            finally:
                engine.dispose()
        return name

    def drop_database(self, name: str) -> None:
        with self._admin.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {_quoted(name)} WITH (FORCE)")

    def terminate_connections(self, name: str) -> int:
        """Close every server-side connection to `name`, as a crash or restart of the server would."""
        with self._admin.connect() as connection:
            killed = connection.execute(
                text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                     "WHERE datname = :name AND pid <> pg_backend_pid()"), {"name": name}).scalar_one()
        return int(killed)

    def close(self) -> None:
        self._admin.dispose()


def free_port_number() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, proc: subprocess.Popen, seconds: float = 180,
                  output: Callable[[], str] | None = None) -> int:
    """Wait until `url` answers (its HTTP status, redirects followed); fail if `proc` exits or time runs out.

    `seconds` is a hang guard for a start on a busy machine, not a speed assertion.
    """
    def status() -> int | None:
        if proc.poll() is not None:
            said = output() if output is not None else proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the server exited early ({proc.returncode}):\n{said}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except OSError:
            return None

    return wait_until(status, seconds=seconds, what=f"{url} to answer", poll=0.5)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a server or worker we started: SIGTERM, then SIGKILL if it does not exit in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
