"""Fixtures shared by the whole suite: a ledger database on SQLite and on PostgreSQL.

``database_url`` runs a test once per engine (through the parametrised session fixture
``databases``). The SQLite database is a file under the test's ``tmp_path``; the PostgreSQL one is a
fresh, uniquely named database created for the test on the server named by
``CDCER_TEST_POSTGRES_URL`` and dropped afterwards, so tests are isolated and safe under xdist.
When that server does not answer, PostgreSQL tests are skipped, unless ``CDCER_REQUIRE_POSTGRES=1``
(CI) makes the absence a failure.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from ledger.errors import RuleViolation
from ledger.ledger import Ledger, Receipt, found_registry
from ledger.note import NoteSigner
from ledger.storage import schema
from ledger.storage.engine import make_engine
from tests.ledger.scenario import ORIGIN, World, seeded_key

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
AUTHORITY = "authority"
AUTHORITY_NAME = "Chengdu Ecology and Environment Bureau"


@pytest.fixture(scope="session", autouse=True)
def _fast_key_files() -> None:
    """Key files written by tests use the cheap KDF profile (an explicit setting still wins)."""
    os.environ.setdefault("CDCER_KDF_PROFILE", "interactive")


def postgres_base_url() -> str:
    """The PostgreSQL server (and maintenance database) the tests create their databases on."""
    return os.environ.get("CDCER_TEST_POSTGRES_URL") or DEFAULT_POSTGRES_URL


@cache
def _postgres_admin() -> Engine | str:
    """An AUTOCOMMIT engine on the base database, or why the server cannot be used (once per process)."""
    url = make_url(postgres_base_url())
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    try:
        admin = create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (SQLAlchemyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        return f"PostgreSQL at {url.render_as_string(hide_password=True)} is unreachable: {first}"
    return admin


@dataclass
class Databases:
    """Makes private databases of one kind: empty ones, or copies of a template built once per process.

    A template (`SQLite`: a file copy; PostgreSQL: ``CREATE DATABASE ... TEMPLATE``) saves migrating and
    appending the same story again for every test that starts from it.
    """

    kind: str
    root: Path
    admin: Engine | None = None
    templates: dict[str, str] = field(default_factory=dict)

    def create(self, *, directory: Path | None = None, template: str | None = None) -> str:
        """A new database (a copy of the named template, or empty); the caller drops it."""
        name = f"cdcer_test_{uuid.uuid4().hex[:16]}"
        source = None if template is None else make_url(self.templates[template]).database
        if self.admin is None:
            path = (directory or self.root) / f"{name}.db"
            if source is not None:
                shutil.copyfile(source, path)
            return f"sqlite:///{path}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"' + ("" if source is None else f' TEMPLATE "{source}"')))
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Remove a database made by `create`."""
        name = make_url(url).database
        assert name is not None
        if self.admin is None:
            for suffix in ("", "-wal", "-shm"):
                Path(name + suffix).unlink(missing_ok=True)
            return
        with self.admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def from_template(self, name: str, build: Callable[[Engine], None], *, directory: Path | None = None) -> str:
        """A new copy of template `name`, which `build` fills (on an empty database) the first time."""
        if name not in self.templates:
            url = self.create()
            engine = make_engine(url)
            try:
                build(engine)
                if engine.dialect.name == "sqlite":
                    with engine.connect() as conn:  # everything into the main file, which is what is copied
                        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                engine.dispose()  # PostgreSQL copies only a template nobody is connected to
            self.templates[name] = url
        return self.create(directory=directory, template=name)

    def close(self) -> None:
        for url in self.templates.values():
            self.drop(url)
        self.templates.clear()


@pytest.fixture(
    scope="session",
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)],
)
def databases(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    """The database server of each kind the suite runs on (PostgreSQL skipped, or failed in CI, if absent)."""
    root = tmp_path_factory.mktemp(f"databases-{request.param}")
    if request.param == "sqlite":
        made = Databases("sqlite", root)
    else:
        admin = _postgres_admin()
        if isinstance(admin, str):
            if os.environ.get("CDCER_REQUIRE_POSTGRES") == "1":
                pytest.fail(f"CDCER_REQUIRE_POSTGRES=1 but {admin}", pytrace=False)
            pytest.skip(admin)
        made = Databases("postgres", root, admin)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def database_url(databases: Databases, tmp_path: Path) -> Iterator[str]:
    """An empty database of each kind, private to the test (SQLite: a file in ``tmp_path``)."""
    url = databases.create(directory=tmp_path)
    try:
        yield url
    finally:
        databases.drop(url)


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the test's database, migrated to the latest schema."""
    eng = make_engine(database_url)
    schema.upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


def log_signer() -> NoteSigner:
    """The registry's checkpoint signer (the same key the scenario's World uses)."""
    return NoteSigner(ORIGIN, seeded_key("log").seed)


@pytest.fixture
def ledger(engine: Engine) -> Ledger:
    """A founded registry: entry 0 is the genesis by ``authority`` with the scenario's keys."""
    led = Ledger(engine, log_signer())
    found_registry(led, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
    return led


@dataclass
class Story:
    """A `World` (the clients, predicting outcomes on their own state) driving a real `Ledger`.

    The world's clock starts at the real time, so its transactions are fresh; each one is submitted
    with the world's clock as the registry's time (stories may jump ahead by days).
    """

    ledger: Ledger
    world: World = field(default_factory=lambda: World(clock=datetime.now(UTC)))

    def __post_init__(self) -> None:
        self.world.found()  # the world's own genesis matches the ledger's entry 0; sync() skips it
        self.receipts: dict[int, Receipt] = {}

    def sync(self, *, together: bool = False) -> list[Receipt]:
        """Submit every transaction the world made that the ledger does not have yet.

        One by one (a checkpoint per entry), or ``together`` as one batch under one checkpoint.
        """
        pending = self.world.log[self.ledger.size() :]
        if together and pending:
            batches = [([tx for tx, _ in pending], pending[-1][1])]
        else:
            batches = [([tx], at) for tx, at in pending]
        receipts = []
        for txs, at in batches:
            for tx, result in zip(txs, self.ledger.submit(txs, now=at), strict=True):
                assert isinstance(result, Receipt), f"{tx.body.kind} refused: {result}"
                self.receipts[result.index] = result
                receipts.append(result)
        return receipts

    def submit(self, who: str, payload: BaseModel) -> Receipt:
        """One transaction through the world and the ledger."""
        self.world.submit(who, payload)
        (receipt,) = self.sync()
        return receipt

    def refused(self, who: str, payload: BaseModel) -> RuleViolation:
        """A transaction the ledger must refuse (the world does not apply it)."""
        tx = self.world.sign(who, payload)
        (result,) = self.ledger.submit([tx], now=self.world.clock)
        assert isinstance(result, RuleViolation), f"{tx.body.kind} was accepted"
        return result

    def full_story(self) -> None:
        """`scenario.full_story` (participants, a project, an issuance, a transfer, an event's claim)."""
        project = self.world.registered_project()
        self.world.issued_batch(project, 2023, 1200, 1150)
        self.world.transfer("owner", "organiser", 300)
        self.world.event_with_claim()
        self.sync()


@pytest.fixture
def story(ledger: Ledger) -> Story:
    """The founded ledger with its clients; nothing beyond the genesis is appended yet."""
    return Story(ledger)
