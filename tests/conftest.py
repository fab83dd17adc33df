"""Shared fixtures: every test gets its own home directory and no stray MIMICSAFE_* variables.

Database and queue tests run on the embedded defaults (SQLite files under home). When real servers
are given — `.ci/run` starts them and sets MIMICSAFE_TEST_POSTGRES_URL (a PostgreSQL role allowed to
create databases) and MIMICSAFE_TEST_REDIS_URL — the tests selected below run a second time with
`backend` = "server": a fresh PostgreSQL database per test (copied from a template that the Alembic
migrations built once) and a flushed Redis database. Selected: the modules in SERVER_BACKEND_PATHS and
any test marked `server_backends`. Tests that start the CLI or a worker in a subprocess reach the same
servers, because the `settings` fixture exports MIMICSAFE_DATABASE_URL and MIMICSAFE_QUEUE_URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# Offline, always: no analytics pings from Gradio, no Hugging Face Hub look-ups.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ["HF_HUB_OFFLINE"] = "1"

from mimicsafe.context import Instance, open_instance  # noqa: E402
from mimicsafe.settings import Settings, load_settings  # noqa: E402
from tests.servers import POSTGRES_URL, REDIS_URL, PostgresServer, free_port_number  # noqa: E402

# Tests that also run against PostgreSQL + Redis: node ids relative to the repository root — a module,
# a folder (ending with "/") or one test. Those that exercise storage, not the gate's image work, to keep
# the second pass short. Elsewhere, mark a test or module with `pytest.mark.server_backends`.
_WORKFLOW = "tests/test_gate_workflow.py::"
SERVER_BACKEND_PATHS = (
    "tests/test_accounts.py",
    "tests/test_audit.py",
    "tests/test_jobs.py",
    "tests/reliability/",
    "tests/security/test_logins.py",  # failed-login counts in Redis, sessions in PostgreSQL
    _WORKFLOW + "test_optout_hash_list_import",
    _WORKFLOW + "test_duplicate_and_low_detail",
    _WORKFLOW + "test_every_verdict_is_stored_once_with_its_audit_entry",
    _WORKFLOW + "test_review_queue_decisions",
    _WORKFLOW + "test_the_same_rejected_file_sent_six_times_is_one_review_item",
    _WORKFLOW + "test_verify_refuses_a_work_already_protected_for_someone_else",
    _WORKFLOW + "test_registry_follows_changes_made_by_another_process",
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "server_backends: also run on PostgreSQL + Redis when MIMICSAFE_TEST_POSTGRES_URL is set"
    )


def pytest_report_header(config: pytest.Config) -> str:
    if POSTGRES_URL is None:
        return "backends: sqlite (for PostgreSQL + Redis too: .ci/run, or set MIMICSAFE_TEST_POSTGRES_URL)"
    return f"backends: sqlite, server (PostgreSQL{' + Redis' if REDIS_URL else ''})"


def _runs_on_servers(metafunc: pytest.Metafunc) -> bool:
    if metafunc.definition.get_closest_marker("server_backends") is not None:
        return True
    node = metafunc.definition.nodeid
    return any(node.startswith(p) if p.endswith("/") else node == p or node.startswith(p + "::")
               for p in SERVER_BACKEND_PATHS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    chosen = any("backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))
    if POSTGRES_URL and "backend" in metafunc.fixturenames and not chosen and _runs_on_servers(metafunc):
        metafunc.parametrize("backend", ["sqlite", "server"], indirect=True)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("MIMICSAFE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """"sqlite" (the embedded defaults) or "server" (PostgreSQL + Redis); see the module docstring."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A database migrated to head once per session; each test's database is a copy of it."""
    assert POSTGRES_URL is not None
    server = PostgresServer(POSTGRES_URL)
    name = server.create_database(f"mimicsafe_template_{uuid.uuid4().hex[:8]}", migrated=True)
    yield name
    server.drop_database(name)
    server.close()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for SQLite under home, else the URL of a fresh PostgreSQL database dropped afterwards."""
    if backend == "sqlite":
        yield None
        return
    if POSTGRES_URL is None:
        pytest.skip("needs a PostgreSQL server: run .ci/run, or set MIMICSAFE_TEST_POSTGRES_URL")
    template = request.getfixturevalue("postgres_template")
    server = PostgresServer(POSTGRES_URL)
    name = server.create_database(f"mimicsafe_test_{uuid.uuid4().hex[:12]}", template=template)
    try:
        yield server.url_for(name)
    finally:
        server.drop_database(name)
        server.close()


@pytest.fixture
def queue_url(backend: str) -> Iterator[str | None]:
    """None for the SQLite queue under home, else an emptied Redis database."""
    if backend == "sqlite" or REDIS_URL is None:
        yield None
        return
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()


@pytest.fixture
def settings(home: Path, database_url: str | None, queue_url: str | None, monkeypatch: pytest.MonkeyPatch,
             _clean_environment: None) -> Settings:
    # Exported too, so that a CLI command or worker started by the test uses the same database and queue.
    for name, value in (("MIMICSAFE_DATABASE_URL", database_url), ("MIMICSAFE_QUEUE_URL", queue_url)):
        if value is not None:
            monkeypatch.setenv(name, value)
    return load_settings(home=home)


@pytest.fixture
def instance(settings: Settings) -> Iterator[Instance]:
    inst = open_instance(settings)
    yield inst
    inst.close()


@pytest.fixture
def free_port() -> int:
    return free_port_number()
