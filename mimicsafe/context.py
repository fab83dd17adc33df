"""The running instance: settings plus the database and blob store they point at.

Built once per process (`open_instance`) and passed down; services receive a session, never globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mimicsafe.blobs import BlobStore
from mimicsafe.db import migrate
from mimicsafe.db.engine import make_engine, make_session_factory, transaction
from mimicsafe.registry import Registry
from mimicsafe.settings import Settings


@dataclass
class Instance:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    registry: Registry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = Registry(self.settings)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def open_instance(settings: Settings, *, upgrade: bool = True) -> Instance:
    """Create the home directory, connect, and (by default) bring the schema to the latest migration."""
    settings.home_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.sqlalchemy_url)
    if upgrade:
        migrate.upgrade(engine)
    return Instance(settings=settings, engine=engine, sessions=make_session_factory(engine),
                    blobs=BlobStore(settings.blob_dir))
