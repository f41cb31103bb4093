"""``GET /v1/serials/{serial}``: every lifecycle event of a serial, from the log's own movements."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.serials import SerialRange, parse_block, parse_serial
from ledger.state import State
from ledger.storage import store
from ledger.storage.engine import read_transaction
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


# --- paging -------------------------------------------------------------------------------------------------

ROUNDS = 30  # a serial passed back and forth: 1 + 2 * ROUNDS movements, more than a default page


@pytest.fixture
def busy(told: Story) -> tuple[Story, str, str]:
    """The story, then one serial sent between two holders `ROUNDS` times, and one transfer of three blocks.

    Returns the story, that serial and the whole batch as a block.
    """
    (batch,) = told.ledger.state().records("batches")
    serial = SerialRange(batch.id, 1000, 1000)
    for _ in range(ROUNDS):
        told.world.transfer_blocks("owner", "buyer", [str(serial)])
        told.world.transfer_blocks("buyer", "owner", [str(serial)])
    # One entry that moves three blocks of different lengths: its movements share an entry index.
    three = [SerialRange(batch.id, 990, 990), SerialRange(batch.id, 1000, 1000), SerialRange(batch.id, 1010, 1013)]
    told.world.transfer_blocks("owner", "buyer", [str(block) for block in three])
    told.sync()
    return told, f"CDCER-{batch.id}-001000", str(SerialRange(batch.id, 1, batch.quantity))


def scanned_history(story: Story, text: str) -> list[tuple[int, str]]:
    """What every stored movement says about `text`, found by scanning them all: (entry, block), in order."""
    if text.count("-") == 5:
        wanted = parse_block(text)
    else:
        batch_id, number = parse_serial(text)
        wanted = SerialRange(batch_id, number, number)
    with read_transaction(story.ledger.engine) as conn:
        rows = [
            row
            for row in store.iter_movement_rows(conn)
            if row["batch_id"] == wanted.batch_id and row["first"] <= wanted.last and row["last"] >= wanted.first
        ]
    return [(row["entry"], str(SerialRange(row["batch_id"], row["first"], row["last"]))) for row in rows]


def walk(client: TestClient, serial: str, limit: int) -> list[dict[str, Any]]:
    """Every page of `serial`'s history at `limit` a page, checking each page's size and cursor."""
    pages = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({} if cursor is None else {"cursor": cursor})
        response = client.get(f"/v1/serials/{serial}", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page)
        cursor = page["next_cursor"]
        if cursor is None:
            return pages
        assert len(page["history"]) == limit
        assert len(pages) < 1000, "the cursor does not advance"


@pytest.mark.parametrize("limit", [1, 2, 7, 50, 500])
def test_paging_walks_a_busy_serials_history_once_in_order(
    busy: tuple[Story, str, str], client: TestClient, limit: int
) -> None:
    story, serial, whole = busy
    for text in (serial, whole):
        expected = scanned_history(story, text)
        assert len(expected) > 2 * ROUNDS
        pages = walk(client, text, limit)
        walked = [(move["entry"], move["block"]) for page in pages for move in page["history"]]
        assert walked == expected, text
        assert len(pages) == max(1, -(-len(expected) // limit))
        assert all(page["blocks"] == pages[0]["blocks"] and page["batch"] == pages[0]["batch"] for page in pages)
    # The whole batch's history holds the entry that moved three blocks; small pages split it between them.
    entries = [entry for entry, _ in scanned_history(story, whole)]
    assert max(entries.count(entry) for entry in set(entries)) >= 3


def test_the_first_page_is_the_default_size_and_says_where_the_next_starts(
    busy: tuple[Story, str, str], client: TestClient
) -> None:
    story, serial, _ = busy
    first = history(client, serial)
    assert len(first["history"]) == 50
    assert first["history"][0]["action"] == "issued"
    rest = client.get(f"/v1/serials/{serial}", params={"cursor": first["next_cursor"], "limit": 500}).json()
    assert rest["next_cursor"] is None
    moves = first["history"] + rest["history"]
    assert [(m["entry"], m["block"]) for m in moves] == scanned_history(story, serial)
    assert moves[-1]["to_holder"] == "buyer"


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        _cursor([1]),
        _cursor([1, 2, 3]),
        _cursor(["1", 2]),
        _cursor([1, 2.0]),
        _cursor([True, 2]),
        _cursor({"entry": 1, "first": 2}),
        _cursor([2**63, 1]),
    ],
)
def test_a_cursor_the_api_did_not_hand_out_is_a_bad_request(client: TestClient, cursor: str) -> None:
    response = client.get("/v1/serials/CDCER-P0001-2023-001-000001", params={"cursor": cursor})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"].endswith("/invalid-cursor")
    assert "next_cursor" in problem["detail"]


@pytest.mark.parametrize("limit", ["0", "-1", "501", "many"])
def test_a_limit_out_of_bounds_is_a_validation_problem(client: TestClient, limit: str) -> None:
    response = client.get("/v1/serials/CDCER-P0001-2023-001-000001", params={"limit": limit})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "limit" in response.text


def test_openapi_declares_the_paging(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/v1/serials/{serial}"]["get"]
    parameters = {p["name"]: p for p in operation["parameters"]}
    assert parameters["limit"]["schema"]["maximum"] == 500
    assert parameters["limit"]["schema"]["default"] == 50
    assert "cursor" in parameters
    assert {"400", "422"} <= set(operation["responses"])
    body = client.get("/openapi.json").json()["components"]["schemas"]["SerialHistory"]
    assert "next_cursor" in body["properties"]
