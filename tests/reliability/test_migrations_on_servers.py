"""The same Alembic migrations on PostgreSQL: up, down to nothing, up again, and the result equals the
models (tests/test_migrations.py checks the same on SQLite)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from mimicsafe.db import migrate
from mimicsafe.db.engine import make_engine
from mimicsafe.db.models import Base
from tests.servers import POSTGRES_URL, PostgresServer

pytestmark = pytest.mark.skipif(POSTGRES_URL is None, reason="needs a PostgreSQL server: run .ci/run")


@pytest.fixture
def empty_database() -> Iterator[Engine]:
    assert POSTGRES_URL is not None
    server = PostgresServer(POSTGRES_URL)
    name = server.create_database(f"mimicsafe_migrations_{uuid.uuid4().hex[:12]}")
    engine = make_engine(server.url_for(name))
    try:
        yield engine
    finally:
        engine.dispose()
        server.drop_database(name)
        server.close()


def test_upgrade_downgrade_upgrade_on_postgresql(empty_database: Engine) -> None:
    engine = empty_database
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    tables = set(inspect(engine).get_table_names())
    assert {"users", "uploads", "audit_log", "audit_head"} <= tables
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) == tables


def test_migrations_match_the_models_on_postgresql(empty_database: Engine) -> None:
    migrate.upgrade(empty_database)
    with empty_database.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert diff == []
