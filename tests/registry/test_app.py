"""The app factory's lifespan: what it sets up before serving."""

from __future__ import annotations

import gc

from fastapi.testclient import TestClient

from ledger.ledger import Ledger
from registry.app import create_app
from registry.settings import Settings
from tests.ledger.scenario import ORIGIN


def test_the_heap_is_settled_when_the_app_starts_serving(ledger: Ledger) -> None:
    # Everything alive before serving (modules, routes, schemas, the ledger) is moved out of the cyclic
    # collector's reach, so a full collection no longer walks it while requests wait.
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    app = create_app(Settings(origin=ORIGIN), ledger=ledger)
    assert gc.get_freeze_count() == 0  # building the app does not; starting it does
    with TestClient(app) as client:
        assert gc.get_freeze_count() > 10_000
        assert client.get("/healthz").status_code == 200
