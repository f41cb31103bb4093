"""Database engines for the ledger: SQLite (WAL, synchronous=FULL) and PostgreSQL (psycopg 3).

Appends must be linear across processes. On SQLite a write transaction first locks a file beside the
database (`append_lock`, so appenders hand over without SQLite's sleeping busy wait), then starts with
``BEGIN IMMEDIATE``, which takes the database's write lock up front; on PostgreSQL it takes a
transaction-scoped advisory lock. Either way one appender at a time reads the log's tail and extends it.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from ledger.errors import StorageError

APPEND_LOCK_KEY = 0x43444345  # "CDCE": the PostgreSQL advisory lock that serialises appends


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` URLs and pick the psycopg 3 driver for them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for a SQLite file or a PostgreSQL database, configured for the ledger's durability."""
    try:
        parsed = make_url(normalise_url(url))
    except ArgumentError as exc:
        raise StorageError(f"database URL {url!r} is not valid: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            raise StorageError("the ledger needs a SQLite file (sqlite:///path/to/registry.db), not memory")
        engine = create_engine(parsed, connect_args={"timeout": 60}, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    raise StorageError(f"unsupported database {parsed.get_backend_name()!r}: use sqlite:/// or postgresql://")


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's begin event, not the driver, decide how transactions start.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ledger_write") else "BEGIN")


def is_sqlite(engine: Engine) -> bool:
    """Whether the engine talks to SQLite."""
    return engine.dialect.name == "sqlite"


APPEND_LOCK_TIMEOUT = 60.0
"""Seconds an appender waits for another process's append (as SQLite's busy timeout)."""


def append_lock_path(engine: Engine) -> Path | None:
    """The file beside a SQLite database that its appenders lock (`append_lock`); None on PostgreSQL."""
    if not is_sqlite(engine) or not engine.url.database:
        return None
    return Path(f"{engine.url.database}-append.lock")


@contextmanager
def append_lock(engine: Engine) -> Iterator[None]:
    """On SQLite, an exclusive lock on a file beside the database, held for a whole append.

    ``BEGIN IMMEDIATE`` alone would serialise appenders too, but SQLite's busy handler waits for the
    write lock in sleeps that grow to 100 ms, so with several server processes the log would sit idle
    between appends. Here a waiting appender retries every millisecond at most, and the kernel drops the
    lock of a process that dies. PostgreSQL needs nothing of this: its advisory lock wakes the next
    appender at once.
    """
    path = append_lock_path(engine)
    if path is None:
        yield
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open the append lock {path}: {exc.strerror}") from None
    try:
        deadline = time.monotonic() + APPEND_LOCK_TIMEOUT
        pause = 0.0001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(
                        f"another process has held the append lock {path} for over {APPEND_LOCK_TIMEOUT:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.001)
        yield
    finally:
        os.close(fd)  # and with it the lock


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """One append transaction holding the log's write lock; commits on success, rolls back on error."""
    try:
        with append_lock(engine), engine.connect() as conn:
            conn = conn.execution_options(ledger_write=True)
            with conn.begin():
                if not is_sqlite(engine):
                    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": APPEND_LOCK_KEY})
                yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"database write failed: {exc.__class__.__name__}: {_first_line(exc)}") from exc


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A read-only unit of work with a consistent snapshot of the log."""
    try:
        with engine.connect() as conn, conn.begin():
            if not is_sqlite(engine):
                conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            yield conn
    except SQLAlchemyError as exc:
        raise StorageError(f"database read failed: {exc.__class__.__name__}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
