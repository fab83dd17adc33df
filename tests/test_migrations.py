from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from mimicsafe.db import migrate
from mimicsafe.db.engine import make_engine
from mimicsafe.db.models import Base

EXPECTED_TABLES = {
    "users", "artist_keys", "portfolio_items", "optout_items", "uploads", "review_decisions",
    "datasets", "training_jobs", "lora_models", "generations", "audit_log", "audit_head",
    "dataset_uploads", "rescans", "suspensions", "disputes",
}


def test_upgrade_downgrade_upgrade_on_sqlite(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES

    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

    migrate.upgrade(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
    engine.dispose()


def test_migrations_match_the_models(tmp_path) -> None:
    """A model change without a migration (or the reverse) fails here, not in production."""
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(engine)
    with engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert diff == []
