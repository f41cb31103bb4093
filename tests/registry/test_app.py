"""The app factory's lifespan: what it sets up before serving."""

from __future__ import annotations

import gc
import re

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


def test_the_api_docs_load_nothing_from_outside_the_registry(ledger: Ledger) -> None:
    # Swagger UI and ReDoc come from the fastapi-offline wheel: a registry on a closed network has its docs.
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=ledger)) as client:
        for path in ("/docs", "/redoc"):
            page = client.get(path)
            assert page.status_code == 200
            assert "default-src 'self'" in page.headers["content-security-policy"]
            sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
            assert sources, page.text
            assert all(source.startswith("/") for source in sources), sources
            for source in sources:
                asset = client.get(source)
                assert asset.status_code == 200, source
                assert len(asset.content) > 1000, source
        assert "'/openapi.json'" in client.get("/docs").text
