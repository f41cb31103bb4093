"""A registry filled by the demo (projects, issuances, events with claims), for the public pages' tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from demo import run_demo
from ledger.ledger import Ledger, found_registry
from ledger.storage import schema
from ledger.storage.engine import make_engine
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key

PUBLIC_URL = "https://registry.test"
"""The public base URL the demo app is configured with (the test client's own host is ``testserver``)."""


@dataclass(frozen=True)
class Demo:
    """A demo registry: its database URL, the ledger over it, and a client of the app with the pages."""

    url: str
    ledger: Ledger
    client: TestClient


def build_demo(engine: Engine, keys: Path) -> None:
    """Found a registry on `engine` and append the demo story (its participants' keys go under `keys`)."""
    schema.upgrade(engine)
    ledger = Ledger(engine, log_signer())
    found_registry(ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
    run_demo(ledger, authority_key=seeded_key(AUTHORITY), data_dir=keys, entries=1)


def demo_url(databases: Databases, directory: Path) -> str:
    """A private copy of the demo registry (built once per engine and worker)."""
    return databases.from_template(
        "pages-demo", lambda engine: build_demo(engine, directory / "demo"), directory=directory
    )


@contextmanager
def open_demo(url: str) -> Iterator[Demo]:
    engine = make_engine(url)
    ledger = Ledger(engine, log_signer())
    try:
        with TestClient(create_app(Settings(origin=ORIGIN, public_base_url=PUBLIC_URL), ledger=ledger)) as client:
            yield Demo(url, ledger, client)
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def demo(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    """One demo registry per engine, shared by a module's tests (they only read it)."""
    url = demo_url(databases, tmp_path_factory.mktemp("pages"))
    try:
        with open_demo(url) as made:
            yield made
    finally:
        databases.drop(url)


@pytest.fixture
def private_demo(databases: Databases, tmp_path: Path) -> Iterator[Demo]:
    """A demo registry of the test's own, which it may damage."""
    url = demo_url(databases, tmp_path)
    try:
        with open_demo(url) as made:
            yield made
    finally:
        databases.drop(url)
