"""``GET /metrics``: per-app Prometheus counters that move with requests and appends, gauges read live."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ledger.ledger import Ledger
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.transactions import Selection, Transfer
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def make_client(ledger: Ledger) -> TestClient:
    return TestClient(create_app(Settings(origin=ORIGIN), ledger=ledger))


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with make_client(ledger) as test_client:
        yield test_client


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """A sample's value; 0 for a labelled series that has not been counted yet."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, method: str, route: str, status: int) -> float:
    return value(samples, "cdcer_http_requests_total", method=method, route=route, status=str(status))


def send_pending(client: TestClient, story: Story) -> dict[str, int]:
    """Post what the world signed and the ledger lacks; how many of each kind were appended."""
    kinds: dict[str, int] = {}
    for tx, _ in story.world.log[story.ledger.size() :]:
        response = client.post("/v1/transactions", json=tx.to_json())
        assert response.status_code == 201, response.text
        kinds[tx.body.kind] = kinds.get(tx.body.kind, 0) + 1
    return kinds


def test_requests_are_counted_by_route_template_method_and_status(client: TestClient) -> None:
    before = scrape(client)
    assert requests(before, "GET", "/v1/projects/{project_id}", 404) == 0
    for project in ("P0001", "P0002", "P0003"):
        assert client.get(f"/v1/projects/{project}").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.get("/nowhere/at/all").status_code == 404
    assert client.delete("/healthz").status_code == 405
    after = scrape(client)
    assert requests(after, "GET", "/v1/projects/{project_id}", 404) == 3
    assert requests(after, "GET", "/healthz", 200) == 1
    assert requests(after, "GET", "unmatched", 404) == 1
    assert requests(after, "DELETE", "/healthz", 405) == 1
    assert requests(after, "GET", "/metrics", 200) == requests(before, "GET", "/metrics", 200) + 1
    routes = {dict(labels).get("route") for _, labels in after}
    assert not any(route and "P000" in route for route in routes), "a raw path became a label"
    duration = value(after, "cdcer_http_request_duration_seconds_count", route="/v1/projects/{project_id}")
    assert duration == 3
    assert value(after, "cdcer_http_request_duration_seconds_bucket", route="/v1/projects/{project_id}", le="+Inf") == 3


def test_appends_duplicates_and_refusals_are_counted(client: TestClient, story: Story) -> None:
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    kinds = send_pending(client, story)
    assert kinds["project.submit"] == 1
    samples = scrape(client)
    for kind, count in kinds.items():
        assert value(samples, "cdcer_transactions_appended_total", kind=kind) == count, kind
    assert value(samples, "cdcer_transactions_appended_total", kind="units.transfer") == 0

    last, _ = story.world.log[-1]
    assert client.post("/v1/transactions", json=last.to_json()).status_code == 200
    too_many = story.world.sign("owner", Transfer(to="buyer", selection=Selection(quantity=10_000)))
    assert client.post("/v1/transactions", json=too_many.to_json()).status_code == 409
    assert client.post("/v1/transactions", content=b"{not json").status_code == 400
    samples = scrape(client)
    assert value(samples, "cdcer_transactions_duplicate_total") == 1
    assert value(samples, "cdcer_transactions_refused_total", code="insufficient_units") == 1
    assert value(samples, "cdcer_transactions_refused_total", code="malformed-json") == 1
    assert sum(v for (name, _), v in samples.items() if name == "cdcer_transactions_appended_total") == sum(
        kinds.values()
    )
    assert requests(samples, "POST", "/v1/transactions", 201) == sum(kinds.values())


def test_log_and_checkpoint_sizes_are_read_at_scrape_time(client: TestClient, story: Story) -> None:
    samples = scrape(client)
    assert value(samples, "cdcer_database_up") == 1
    assert value(samples, "cdcer_log_size") == story.ledger.size() == 1
    story.full_story()  # appended straight to the ledger, as another server process would
    with read_transaction(story.ledger.engine) as conn:
        latest = store.latest_checkpoint(conn)
    assert latest is not None
    samples = scrape(client)
    assert value(samples, "cdcer_log_size") == story.ledger.size() > 1
    assert value(samples, "cdcer_checkpoint_size") == latest.size == story.ledger.size()


def test_each_app_counts_on_its_own(ledger: Ledger) -> None:
    with make_client(ledger) as first, make_client(ledger) as second:
        for _ in range(2):
            first.get("/healthz")
        assert requests(scrape(first), "GET", "/healthz", 200) == 2
        assert requests(scrape(second), "GET", "/healthz", 200) == 0


def test_a_scrape_answers_when_the_database_does_not(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/registry.db")
    with TestClient(create_app(settings)) as client:
        samples = scrape(client)
    assert value(samples, "cdcer_database_up") == 0
    assert ("cdcer_log_size", frozenset()) not in samples
    assert requests(samples, "GET", "/metrics", 200) == 0  # counted once its response is sent


def test_openmetrics_when_asked(client: TestClient) -> None:
    response = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n")
