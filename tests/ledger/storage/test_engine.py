"""The append lock: SQLite appenders take a file lock beside the database before ``BEGIN IMMEDIATE``."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ledger.errors import StorageError
from ledger.storage import engine as engine_module
from ledger.storage import schema, store
from ledger.storage.engine import append_lock, append_lock_path, read_transaction, write_transaction


def test_the_append_lock_lies_beside_a_sqlite_database_and_postgres_has_none(engine: Engine) -> None:
    path = append_lock_path(engine)
    if engine.dialect.name != "sqlite":
        assert path is None
        with write_transaction(engine) as conn:  # the advisory lock alone serialises PostgreSQL's appenders
            store.set_meta(conn, "origin", "lock.example/log")
        return
    assert engine.url.database is not None
    assert path == Path(f"{engine.url.database}-append.lock")
    with write_transaction(engine) as conn:
        assert path.exists()
        store.set_meta(conn, "origin", "lock.example/log")
    with read_transaction(engine) as conn:
        assert store.get_meta(conn, "origin") == "lock.example/log"


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database (the append file lock is SQLite's alone)."""
    eng = engine_module.make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    schema.upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def test_an_appender_waits_while_another_holds_the_lock(sqlite_engine: Engine) -> None:
    released = threading.Event()
    entered: list[float] = []
    held = threading.Event()

    def holder() -> None:
        with append_lock(sqlite_engine):
            held.set()
            time.sleep(0.3)
            released.set()

    def appender() -> None:
        with write_transaction(sqlite_engine) as conn:
            entered.append(time.monotonic())
            assert released.is_set(), "entered the append while another held its lock"
            store.set_meta(conn, "origin", "lock.example/log")

    first = threading.Thread(target=holder)
    first.start()
    assert held.wait(5)
    second = threading.Thread(target=appender)
    second.start()
    first.join(5)
    second.join(5)
    assert len(entered) == 1
    with read_transaction(sqlite_engine) as conn:
        assert store.get_meta(conn, "origin") == "lock.example/log"


def test_a_lock_held_past_the_timeout_is_a_storage_error_and_nothing_is_written(
    sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "APPEND_LOCK_TIMEOUT", 0.2)
    path = append_lock_path(sqlite_engine)
    assert path is not None
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # another open file: flock conflicts even in one process
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        with (
            pytest.raises(StorageError, match=r"append lock .* for over 0.2 s"),
            write_transaction(sqlite_engine) as conn,
        ):
            store.set_meta(conn, "origin", "never.example/log")
        assert time.monotonic() - started < 5
    finally:
        os.close(fd)
    with read_transaction(sqlite_engine) as conn:
        assert store.get_meta(conn, "origin") is None


def test_the_lock_of_a_process_killed_while_holding_it_is_free_at_once(sqlite_engine: Engine) -> None:
    path = append_lock_path(sqlite_engine)
    assert path is not None
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o644)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)
        started = time.monotonic()
        with write_transaction(sqlite_engine) as conn:
            store.set_meta(conn, "origin", "after.example/log")
        assert time.monotonic() - started < 5
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with read_transaction(sqlite_engine) as conn:
        assert store.get_meta(conn, "origin") == "after.example/log"


def test_an_unwritable_lock_file_is_a_storage_error(tmp_path: Path) -> None:
    # A database whose folder holds a directory where the lock file should be: the lock cannot be opened.
    database = tmp_path / "registry.db"
    (tmp_path / "registry.db-append.lock").mkdir()
    eng = engine_module.make_engine(f"sqlite:///{database}")
    try:
        with pytest.raises(StorageError, match="cannot open the append lock"), write_transaction(eng):
            pass
    finally:
        eng.dispose()
