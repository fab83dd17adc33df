from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from mimicsafe.db import migrate
from mimicsafe.db.engine import make_engine
from mimicsafe.db.models import Base

EXPECTED_TABLES = {
    "users", "artist_keys", "portfolio_items", "optout_items", "uploads", "review_decisions",
    "datasets", "training_jobs", "lora_models", "generations", "audit_log", "audit_head", "web_sessions",
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


def test_0004_lists_existing_manifests_uploads_as_rows(tmp_path) -> None:
    """Datasets made before migration 0004 get their dataset_uploads rows from their manifests."""
    from sqlalchemy import text

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    migrate.upgrade(engine, "0002")
    with engine.begin() as c:
        c.execute(text("INSERT INTO users (id, username, role, password_hash, disabled, created_at) "
                       "VALUES (1, 'alice', 'artist', 'x', 0, '2026-01-01')"))
        for upload_id in (1, 2):
            c.execute(text("INSERT INTO uploads (id, user_id, sha256, file_name, size_bytes, decision, verdict, "
                           "policy_version, review_state, created_at) VALUES (:i, 1, :s, 'a.png', 1, 'accepted', "
                           "'{}', '1', 'none', '2026-01-01')"), {"i": upload_id, "s": f"{upload_id:064x}"})
        c.execute(text("INSERT INTO datasets (id, user_id, manifest, manifest_sha256, item_count, policy_version, "
                       "created_at) VALUES (1, 1, :m, :h, 2, '1', '2026-01-01')"),
                  {"m": '{"items": [{"upload_id": 2}, {"upload_id": 1}]}', "h": "f" * 64})
    migrate.upgrade(engine)
    with engine.connect() as c:
        rows = c.execute(text("SELECT dataset_id, upload_id FROM dataset_uploads ORDER BY upload_id")).all()
    engine.dispose()
    assert [tuple(r) for r in rows] == [(1, 1), (1, 2)]
