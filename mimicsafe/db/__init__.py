"""Database: typed SQLAlchemy 2 models, engine/session helpers and Alembic migrations."""
