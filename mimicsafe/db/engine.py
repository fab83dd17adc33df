"""Engine and session helpers. SQLite gets WAL, foreign keys and serialised write transactions;
PostgreSQL goes through psycopg 3 with connections checked before use.

Database faults (a lost connection, a server that is down, a lock held too long, a full disk) leave
these helpers as one domain error, `DatabaseUnavailable`, whose message says what happened without
the SQL, its parameters or the connection URL — so the CLI prints it and the app shows it, instead of
a traceback that could carry secrets. A value the database refuses becomes `ValidationFailed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from mimicsafe.errors import DatabaseUnavailable, ValidationFailed

SQLITE_BUSY_TIMEOUT_S = 30.0


def make_engine(url: str, *, sqlite_busy_timeout_s: float = SQLITE_BUSY_TIMEOUT_S) -> Engine:
    """An engine for a SQLite file or a server. `postgresql://` URLs use psycopg 3 (the installed driver).

    SQL parameters (password hashes, tokens) are kept out of error messages and SQL logs alike.
    """
    if url.startswith("sqlite"):
        path = url.removeprefix("sqlite:///")
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, hide_parameters=True,
                               connect_args={"timeout": sqlite_busy_timeout_s, "check_same_thread": False})
        _configure_sqlite(engine, sqlite_busy_timeout_s)
        return engine
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    # pre_ping: a connection the server dropped (restart, failover, idle timeout) is replaced on checkout
    # instead of failing the next request.
    return create_engine(parsed, pool_pre_ping=True, hide_parameters=True)


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    # pysqlite's own transaction handling defers BEGIN; we take it over (SQLAlchemy's documented recipe)
    # and begin every transaction IMMEDIATE so that a read-then-write can never fail half-way with
    # SQLITE_BUSY. Writes are serialised; they are short. Sessions from `make_read_session_factory`
    # begin DEFERRED instead: they only read (a login cookie, a public verify), and must not queue
    # behind uploads for the write lock (the load test saw them time out behind it).
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # type: ignore[no-untyped-def]
        mode = "DEFERRED" if connection.get_execution_options().get(READ_ONLY_OPTION) else "IMMEDIATE"
        connection.exec_driver_sql(f"BEGIN {mode}")


# Execution option marking the connections of read-only sessions (see `make_read_session_factory`).
READ_ONLY_OPTION = "mimicsafe_read_only"


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def make_read_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions for work that only reads. On SQLite they do not take the write lock at BEGIN, so they
    run beside a writer (WAL); a write attempted in one may fail with "database is locked". Elsewhere
    they are ordinary sessions."""
    return sessionmaker(engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: committed when the block ends, rolled back on any exception."""
    with database_errors(), factory() as session, session.begin():
        yield session


@contextmanager
def database_errors() -> Iterator[None]:
    """Turn a database fault into `DatabaseUnavailable`, a value the database refuses (PostgreSQL: NUL in
    text, a number out of range) into `ValidationFailed`; other errors (constraint violations…) pass."""
    try:
        yield
    except DataError as exc:
        raise ValidationFailed(f"the database refused a value: {_driver_message(exc)}") from exc
    except DBAPIError as exc:
        if not (isinstance(exc, OperationalError) or exc.connection_invalidated):
            raise
        raise DatabaseUnavailable(describe_fault(exc)) from exc


def _driver_message(exc: DBAPIError) -> str:
    lines = str(exc.orig).strip().splitlines() if exc.orig is not None else []
    return (lines[0] if lines else type(exc.orig).__name__)[:200]


def describe_fault(exc: DBAPIError) -> str:
    """What went wrong, in one line: the driver's own first line, never the SQL or its parameters."""
    detail = _driver_message(exc)
    lowered = detail.lower()
    if "locked" in lowered or "busy" in lowered:
        return (f"the database is busy ({detail}): another process has held its write lock too long; "
                "nothing was saved, try again")
    check = "If this persists, check that the database server is running and MIMICSAFE_DATABASE_URL points at it"
    if exc.connection_invalidated or "server closed" in lowered or "terminat" in lowered:
        return f"lost the connection to the database ({detail}); try again. {check}"
    if "connect" in lowered or "resolve" in lowered or "translate host" in lowered:
        return f"cannot connect to the database ({detail}). {check}"
    return f"the database could not complete the request ({detail}); try again"
