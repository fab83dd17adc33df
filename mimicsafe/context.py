"""The running instance: settings plus the database and blob store they point at.

Built once per process (`open_instance`) and passed down; services receive a session, never globals.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from mimicsafe.blobs import BlobStore
from mimicsafe.db import migrate
from mimicsafe.db.engine import (
    database_errors,
    make_engine,
    make_read_session_factory,
    make_session_factory,
    transaction,
)
from mimicsafe.errors import ValidationFailed
from mimicsafe.registry import Registry
from mimicsafe.settings import Settings
from mimicsafe.trust.index import AcceptedIndex


@dataclass
class Instance:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    blobs: BlobStore
    registry: Registry = field(init=False)
    accepted: AcceptedIndex = field(init=False)  # the accepted uploads, for re-scans (mimicsafe.trust)
    read_sessions: sessionmaker[Session] = field(init=False)

    def __post_init__(self) -> None:
        self.registry = Registry(self.settings)
        self.accepted = AcceptedIndex(self.settings)
        self.read_sessions = make_read_session_factory(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with transaction(self.sessions) as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction for work that only reads: on SQLite it does not wait for the write lock."""
        with transaction(self.read_sessions) as session:
            yield session

    def close(self) -> None:
        self.engine.dispose()


def _make_home(home: Path) -> None:
    if home.exists() and not home.is_dir():
        raise ValidationFailed(f"home {home} is a file, not a directory: pass --home DIR (or MIMICSAFE_HOME) "
                               "naming a directory")
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ValidationFailed(f"cannot create the home directory {home}: {exc.strerror}; pass --home DIR "
                               "(or MIMICSAFE_HOME) naming a directory you can write") from exc


def open_instance(settings: Settings, *, upgrade: bool = True) -> Instance:
    """Create the home directory, connect, and (by default) bring the schema to the latest migration."""
    # Private to its owner when we create it: it holds the database (password hashes), the blobs
    # (artists' works) and the instance's keys. An existing directory keeps the mode it was given.
    _make_home(settings.home_dir)
    engine = make_engine(settings.sqlalchemy_url)
    if upgrade:
        with database_errors():  # the first contact with a database server: say clearly if it is down
            migrate.upgrade(engine)
    return Instance(settings=settings, engine=engine, sessions=make_session_factory(engine),
                    blobs=BlobStore(settings.blob_dir))
