"""``GET /v1/serials/{serial}``: every lifecycle event of a serial, from the log's own movements."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.serials import SerialRange, parse_block
from ledger.state import State
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN

PROBLEM = "application/problem+json"


@pytest.fixture
def told(story: Story) -> Story:
    story.full_story()
    story.world.transfer("owner", "buyer", 20)
    story.sync()
    return story


@pytest.fixture
def client(told: Story) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=told.ledger)) as test_client:
        yield test_client


def history(client: TestClient, serial: str) -> dict[str, Any]:
    response = client.get(f"/v1/serials/{serial}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_retired_serial_shows_issuance_transfer_retirement_and_claim(client: TestClient, told: Story) -> None:
    state = told.ledger.state()
    (claim,) = state.records("claims")
    retired = parse_block(claim.blocks[0])
    serial = f"CDCER-{retired.batch_id}-{retired.first:06d}"
    body = history(client, serial)
    assert body["serial"] == serial
    assert (body["first"], body["last"]) == (retired.first, retired.first)
    assert body["batch"]["id"] == retired.batch_id
    assert [m["action"] for m in body["history"]] == ["issued", "transferred", "retired", "claimed"]
    issued, transferred, retirement, claimed = body["history"]
    assert (issued["from_holder"], issued["to_holder"]) == (None, "owner")
    assert (transferred["from_holder"], transferred["to_holder"]) == ("owner", "organiser")
    assert retirement["from_holder"] == "organiser"
    assert retirement["to_holder"] is None
    assert retirement["ref"] == claim.retirements[0]
    assert claimed["ref"] == claim.id
    assert [m["entry"] for m in body["history"]] == sorted(m["entry"] for m in body["history"])
    assert all(m["time"].endswith("Z") for m in body["history"])
    (block,) = body["blocks"]
    assert block["state"] == "retired"
    assert block["holder"] == "organiser"
    assert block["ref"] == claim.retirements[0]


def test_a_held_serial_ends_with_its_holder(client: TestClient, told: Story) -> None:
    (held,) = told.world.holdings("buyer")
    rng = parse_block(held)
    body = history(client, f"CDCER-{rng.batch_id}-{rng.last:06d}")
    assert [m["action"] for m in body["history"]] == ["issued", "transferred"]
    assert body["history"][-1]["to_holder"] == "buyer"
    assert [(b["holder"], b["state"]) for b in body["blocks"]] == [("buyer", "held")]


def test_a_block_spanning_several_holders(client: TestClient, told: Story) -> None:
    state: State = told.ledger.state()
    (batch,) = state.records("batches")
    whole = str(SerialRange(batch.id, 1, batch.quantity))
    body = history(client, whole)
    blocks = body["blocks"]
    assert sum(b["quantity"] for b in blocks) == batch.quantity
    assert [b["first"] for b in blocks] == sorted(b["first"] for b in blocks)
    assert {b["holder"] for b in blocks} == {"owner", "organiser", "buyer"}
    actions = [m["action"] for m in body["history"]]
    assert actions[0] == "issued"
    assert actions.count("transferred") == 2
    assert {"retired", "claimed"} <= set(actions)
    for move in body["history"]:
        moved = parse_block(move["block"])
        assert move["quantity"] == moved.quantity


def test_every_range_shows_exactly_the_blocks_that_hold_its_serials(client: TestClient, told: Story) -> None:
    state: State = told.ledger.state()
    (batch,) = state.records("batches")
    blocks = sorted(state.records("unit_blocks"), key=lambda b: b.first)
    edges = sorted({b.first for b in blocks} | {b.last for b in blocks})
    ranges = [(s, s) for s in edges] + [(a, b) for a, b in zip(edges, edges[2:], strict=False)]
    ranges += [(edge + 1, edge + 1) for edge in edges if edge < batch.quantity]
    for first, last in ranges:
        body = history(client, str(SerialRange(batch.id, first, last)))
        want = [(b.first, b.last, b.holder) for b in blocks if b.first <= last and b.last >= first]
        assert [(b["first"], b["last"], b["holder"]) for b in body["blocks"]] == want, (first, last)


@pytest.mark.parametrize(
    "serial",
    [
        "P0001-2023-001-000001",
        "CDCER-P0001-2023-001-1",
        "CDCER-P0001-2023-001-0000001",
        "CDCER-P0001-2023-001-000000",
        "CDCER-P0001-2023-001-000009-000001",
        "anything",
    ],
)
def test_a_malformed_serial_is_a_bad_request(client: TestClient, serial: str) -> None:
    response = client.get(f"/v1/serials/{serial}")
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/invalid-serial")
    assert "CDCER-P0007-2023-001-000042" in problem["detail"]


def test_an_unknown_batch_or_serial_is_not_found(client: TestClient) -> None:
    unknown = client.get("/v1/serials/CDCER-P0999-2023-001-000001")
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("/batch-not-found")
    beyond = client.get("/v1/serials/CDCER-P0001-2023-001-001151")
    assert beyond.status_code == 404
    assert beyond.json()["type"].endswith("/serial-not-found")
    assert "1 to 1150" in beyond.json()["detail"]


def test_openapi_declares_the_route_and_its_errors(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/serials/{serial}"]["get"]
    assert {"200", "400", "404", "503"} <= set(operation["responses"])
    assert PROBLEM in operation["responses"]["404"]["content"]
