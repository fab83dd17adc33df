"""Read-only work does not queue behind a writer on SQLite (the load test's "database is locked")."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from mimicsafe.blobs import BlobStore
from mimicsafe.context import Instance
from mimicsafe.db import migrate
from mimicsafe.db.engine import make_engine, make_session_factory
from mimicsafe.db.models import User
from mimicsafe.errors import DatabaseUnavailable
from mimicsafe.settings import Settings


def _impatient_instance(settings: Settings) -> Instance:
    """An instance whose SQLite connections give up on a held lock after 0.2 s instead of 30 s."""
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url, sqlite_busy_timeout_s=0.2)
    migrate.upgrade(engine)
    return Instance(settings=settings, engine=engine, sessions=make_session_factory(engine),
                    blobs=BlobStore(settings.blob_dir))


def test_reading_runs_beside_a_writer_that_blocks_other_writers(settings: Settings) -> None:
    if settings.sqlalchemy_url.startswith("postgresql"):
        pytest.skip("SQLite's write lock only")
    instance = _impatient_instance(settings)
    try:
        with instance.transaction() as writer:  # BEGIN IMMEDIATE: holds the write lock until the block ends
            writer.execute(select(func.count()).select_from(User))
            with instance.reading() as reader:
                assert reader.scalar(select(func.count()).select_from(User)) == 0
            with pytest.raises(DatabaseUnavailable, match="busy"), instance.transaction() as other_writer:
                other_writer.execute(select(func.count()).select_from(User))
    finally:
        instance.close()
