"""Structured access logs: one JSON line per request, a request id echoed, no bodies or signatures."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.ledger import Ledger
from ledger.transactions import Selection, Transfer
from registry.access_log import ACCESS_LOGGER, log_to_stream
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN

FIELDS = {"time", "request_id", "method", "path", "route", "status", "duration_ms", "bytes_out", "client"}


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@pytest.fixture
def access() -> Iterator[Lines]:
    """What the ``cdcer.access`` logger emits during the test, parsed line by line."""
    logger = logging.getLogger(ACCESS_LOGGER)
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def client(ledger: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=ledger)) as test_client:
        yield test_client


def test_one_json_line_per_request_with_every_field(client: TestClient, access: Lines) -> None:
    # A query string is not logged (the JSON API refuses an undeclared parameter, so a filter's value here).
    response = client.get("/v1/claims", params={"organiser": "not-logged"})
    assert response.status_code == 200
    (line,) = access.lines
    assert set(line) == FIELDS
    assert line["method"] == "GET"
    assert line["path"] == "/v1/claims"
    assert line["route"] == "/v1/claims"
    assert line["status"] == 200
    assert line["bytes_out"] == len(response.content) > 0
    assert line["client"] == "testclient"
    assert isinstance(line["duration_ms"], float)
    assert line["duration_ms"] >= 0
    when = datetime.fromisoformat(line["time"])
    assert when.utcoffset() is not None
    assert when.utcoffset() == UTC.utcoffset(None)
    assert line["time"].endswith("Z")
    assert abs((datetime.now(UTC) - when).total_seconds()) < 3600
    assert line["request_id"] == response.headers["x-request-id"]
    assert "not-logged" not in json.dumps(line)


def test_errors_and_unmatched_paths_are_logged(client: TestClient, access: Lines) -> None:
    client.get("/v1/projects/P9999")
    client.get("/no/such/page")
    client.get("/v1/projects", params={"limit": 0})
    assert [(line["route"], line["status"]) for line in access.lines] == [
        ("/v1/projects/{project_id}", 404),
        (None, 404),
        ("/v1/projects", 422),
    ]


def test_a_sane_request_id_is_echoed(client: TestClient, access: Lines) -> None:
    for given in ("3f1a9c0e-5b7d-4c2a-9e1f-0a1b2c3d4e5f", "req_42.retry:1", "abc+/="):
        response = client.get("/healthz", headers={"X-Request-ID": given})
        assert response.headers["x-request-id"] == given
        assert access.lines[-1]["request_id"] == given


@pytest.mark.parametrize("given", ["", "has space", 'quote"d', "x" * 129, "<script>", "ünïcode"])
def test_an_insane_request_id_is_replaced(client: TestClient, access: Lines, given: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": given.encode()})
    echoed = response.headers["x-request-id"]
    assert echoed != given
    assert len(echoed) == 32
    int(echoed, 16)
    assert access.lines[-1]["request_id"] == echoed


def test_without_a_request_id_each_request_gets_its_own(client: TestClient, access: Lines) -> None:
    ids = {client.get("/healthz").headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    assert {line["request_id"] for line in access.lines} == ids


def test_a_transaction_is_logged_without_its_body_or_signature(client: TestClient, story: Story, access: Lines) -> None:
    story.full_story()
    tx = story.world.sign("owner", Transfer(to="buyer", selection=Selection(quantity=1)))
    response = client.post("/v1/transactions", json=tx.to_json(), headers={"X-Request-ID": "append-1"})
    assert response.status_code == 201, response.text
    (line,) = access.lines
    assert (line["method"], line["route"], line["status"], line["request_id"]) == (
        "POST",
        "/v1/transactions",
        201,
        "append-1",
    )
    text = json.dumps(line)
    signed = tx.to_json()
    assert signed["signature"] not in text
    assert tx.body.nonce not in text
    assert "buyer" not in text


def test_a_streamed_export_is_logged_once_with_its_size(client: TestClient, story: Story, access: Lines) -> None:
    story.full_story()
    response = client.get("/v1/exports/issuances.csv")
    assert response.status_code == 200
    (line,) = access.lines
    assert line["route"] == "/v1/exports/issuances.{format}"
    assert line["bytes_out"] == len(response.content) > 0


def test_log_to_stream_prints_each_line_once(client: TestClient) -> None:
    stream = io.StringIO()
    logger = logging.getLogger(ACCESS_LOGGER)
    propagate, level = logger.propagate, logger.level
    handler = log_to_stream(stream)
    try:
        assert log_to_stream(io.StringIO()) is handler
        client.get("/healthz", headers={"X-Request-ID": "printed"})
        handler.flush()  # lines are written in batches
        (printed,) = stream.getvalue().splitlines()
        assert json.loads(printed)["request_id"] == "printed"
        assert stream.getvalue().endswith("\n")
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)


def test_lines_are_written_in_batches_within_the_interval_without_a_flush(client: TestClient) -> None:
    stream = io.StringIO()
    logger = logging.getLogger(ACCESS_LOGGER)
    propagate, level = logger.propagate, logger.level
    handler = log_to_stream(stream)
    try:
        for n in range(5):
            client.get("/healthz", headers={"X-Request-ID": f"batched-{n}"})
        deadline = time.monotonic() + 5  # the writer thread writes every 0.2 s
        while stream.getvalue().count("\n") < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        ids = [json.loads(line)["request_id"] for line in stream.getvalue().splitlines()]
        assert ids == [f"batched-{n}" for n in range(5)]  # each once, in order
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.propagate = propagate
        logger.setLevel(level)


def test_request_ids_made_here_are_unique_32_hex_digits(client: TestClient, access: Lines) -> None:
    for _ in range(50):
        client.get("/healthz")
    ids = [line["request_id"] for line in access.lines]
    assert len(set(ids)) == 50
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
