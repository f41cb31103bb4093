"""The public read API: what it lists and shows is what the ledger's state holds, page by page."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ledger.ledger import Ledger
from ledger.serials import SerialRange
from ledger.state import State
from ledger.storage.engine import read_transaction
from ledger.transactions import CancellationReason, RetirementPurpose, Selection
from registry.app import create_app
from registry.public import repository
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN

PROBLEM = "application/problem+json"
FOOTPRINTS = ("planned_footprint", "final_footprint", "footprint")

# list path -> (projection table, the item's primary key)
LISTS: dict[str, tuple[str, Callable[[dict[str, Any]], tuple[Any, ...]]]] = {
    "/v1/participants": ("participants", lambda item: (item["id"],)),
    "/v1/methodologies": ("methodologies", lambda item: (item["code"], item["version"])),
    "/v1/projects": ("projects", lambda item: (item["id"],)),
    "/v1/batches": ("batches", lambda item: (item["id"],)),
    "/v1/retirements": ("retirements", lambda item: (item["id"],)),
    "/v1/cancellations": ("cancellations", lambda item: (item["id"],)),
    "/v1/events": ("events", lambda item: (item["id"],)),
    "/v1/claims": ("claims", lambda item: (item["id"],)),
}


@pytest.fixture
def rich_story(story: Story) -> Story:
    """The full story, a second project, and more transfers, retirements and two cancellations."""
    story.full_story()
    world = story.world
    second = world.registered_project()
    world.issued_batch(second, 2024, 100, 90)
    world.transfer("owner", "buyer", 120)
    story.sync(together=True)  # one checkpoint per step; a step's transactions are all fresh at its end
    world.advance(timedelta(days=2))
    world.retire("owner", Selection(quantity=5))
    world.retire("buyer", Selection(quantity=7), purpose=RetirementPurpose.INDIVIDUAL)
    world.cancel("owner", Selection(quantity=3))
    story.sync(together=True)
    world.advance(timedelta(days=2))
    world.cancel("buyer", Selection(quantity=2), CancellationReason.INVALIDATION)
    world.retire("buyer", Selection(quantity=4))
    story.sync(together=True)
    return story


@pytest.fixture
def state(rich_story: Story) -> State:
    return rich_story.ledger.state()


def make_client(ledger: Ledger) -> TestClient:
    return TestClient(create_app(Settings(origin=ORIGIN), engine=ledger.engine, ledger=ledger))


@pytest.fixture
def client(rich_story: Story) -> Iterator[TestClient]:
    with make_client(rich_story.ledger) as test_client:
        yield test_client


def jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    return value


def expected(record: Any) -> dict[str, Any]:
    """A record as the API shows it: lists for tuples, footprints as {source: kg}."""
    shown = {f.name: jsonable(getattr(record, f.name)) for f in dataclasses.fields(record)}
    for name in FOOTPRINTS:
        if name in shown:
            shown[name] = dict(shown[name])
    return shown


def get_ok(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def walk(client: TestClient, path: str, limit: int = 500, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list, following next_cursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": limit} | ({} if cursor is None else {"cursor": cursor})
        page = get_ok(client, path, **query)
        assert set(page) == {"items", "next_cursor"}
        assert len(page["items"]) <= limit
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert problem["title"]
    for word in words:
        assert word in problem["detail"], problem
    return problem


def ids(items: list[dict[str, Any]]) -> set[str]:
    return {item["id"] for item in items}


# --- lists and details hold what the state holds ----------------------------------------------------------


@pytest.mark.parametrize("path", list(LISTS))
def test_list_is_the_states_table(client: TestClient, state: State, path: str) -> None:
    table, key = LISTS[path]
    items = walk(client, path)
    records = [expected(r) for r in state.records(table)]
    assert records, f"the story left {table} empty"
    assert {key(item): item for item in items} == {key(r): r for r in records}
    assert len(items) == len(records)


def test_participant_detail_has_its_public_keys(client: TestClient, state: State) -> None:
    for participant in state.participants.values():
        shown = get_ok(client, f"/v1/participants/{participant.id}")
        keys = sorted(
            (expected(k) for k in state.keys.values() if k.participant_id == participant.id),
            key=lambda k: k["key_id"],
        )
        assert keys
        for key in keys:
            del key["participant_id"]
        assert sorted(shown.pop("keys"), key=lambda k: k["key_id"]) == keys
        assert shown == expected(participant)


def test_methodology_detail(client: TestClient, state: State) -> None:
    (methodology,) = state.methodologies.values()
    assert get_ok(client, f"/v1/methodologies/{methodology.code}/{methodology.version}") == expected(methodology)


def test_project_detail_has_its_reports_and_batches(client: TestClient, state: State) -> None:
    assert len(state.projects) == 2
    for project in state.projects.values():
        shown = get_ok(client, f"/v1/projects/{project.id}")
        reports = [expected(r) for r in state.reports.values() if r.project_id == project.id]
        batches = [expected(b) for b in state.batches.values() if b.project_id == project.id]
        assert len(reports) == len(batches) == 1
        assert shown.pop("reports") == reports
        assert shown.pop("batches") == batches
        assert shown == expected(project)


def test_batch_detail_has_its_current_blocks(client: TestClient, state: State) -> None:
    for batch in state.batches.values():
        shown = get_ok(client, f"/v1/batches/{batch.id}")
        blocks = shown.pop("blocks")
        assert shown == expected(batch)
        assert [(b["first"], b["last"], b["state"], b["holder"], b["ref"]) for b in blocks] == [
            (b.first, b.last, b.state, b.holder, b.ref) for b in state.blocks[batch.id]
        ]
        for block in blocks:
            assert block["block"] == str(SerialRange(batch.id, block["first"], block["last"]))
            assert block["quantity"] == block["last"] - block["first"] + 1
        assert sum(b["quantity"] for b in blocks) == batch.quantity
    first_batch = get_ok(client, f"/v1/batches/{min(state.batches)}")
    assert {b["state"] for b in first_batch["blocks"]} == {"held", "retired", "cancelled"}


@pytest.mark.parametrize(
    ("path", "table"),
    [("/v1/retirements", "retirements"), ("/v1/cancellations", "cancellations"), ("/v1/claims", "claims")],
)
def test_record_details(client: TestClient, state: State, path: str, table: str) -> None:
    for record in state.records(table):
        assert get_ok(client, f"{path}/{record.id}") == expected(record)


def test_event_detail_has_its_footprint_by_source_retired_units_and_claim(client: TestClient, state: State) -> None:
    (event,) = state.events.values()
    shown = get_ok(client, f"/v1/events/{event.id}")
    assert shown == expected(event)
    assert shown["final_footprint"] == {"venue_energy": 9000, "catering": 600}
    assert shown["retired_units"] == 10
    assert shown["claim_id"] == next(iter(state.claims))


def test_stats(client: TestClient, state: State) -> None:
    blocks = [b for bid in state.blocks for b in state.blocks[bid]]

    def units(kind: str) -> int:
        return sum(b.quantity for b in blocks if b.state == kind)

    assert get_ok(client, "/v1/stats") == {
        "projects_registered": 2,
        "units_issued": sum(b.quantity for b in state.batches.values()),
        "units_held": units("held"),
        "units_retired": units("retired"),
        "units_cancelled": units("cancelled"),
        "claims": 1,
    }
    assert units("retired") == sum(r.quantity for r in state.retirements.values()) == 10 + 5 + 7 + 4
    assert units("cancelled") == 5


def test_an_empty_registry_lists_nothing(ledger: Ledger) -> None:
    with make_client(ledger) as client:
        assert get_ok(client, "/v1/projects") == {"items": [], "next_cursor": None}
        assert get_ok(client, "/v1/stats")["units_issued"] == 0
        assert [p["id"] for p in walk(client, "/v1/participants")] == ["authority"]


# --- retirement and cancellation are never mixed ----------------------------------------------------------


def test_retirements_and_cancellations_are_separate(client: TestClient, state: State) -> None:
    retirements = walk(client, "/v1/retirements")
    cancellations = walk(client, "/v1/cancellations")
    assert ids(retirements) == set(state.retirements)
    assert ids(cancellations) == set(state.cancellations)
    assert not ids(retirements) & ids(cancellations)
    assert all("purpose" in r and "reason_code" not in r for r in retirements)
    assert all("reason_code" in c and "purpose" not in c for c in cancellations)
    assert_problem(client.get(f"/v1/retirements/{min(state.cancellations)}"), 404)
    assert_problem(client.get(f"/v1/cancellations/{min(state.retirements)}"), 404)


# --- filters ----------------------------------------------------------------------------------------------


FILTERS: list[tuple[str, dict[str, Any], str, Callable[[Any], bool]]] = [
    ("/v1/participants", {"role": "verifier"}, "participants", lambda r: "verifier" in r.roles),
    ("/v1/participants", {"status": "active"}, "participants", lambda r: r.status == "active"),
    ("/v1/methodologies", {"status": "withdrawn"}, "methodologies", lambda r: r.status == "withdrawn"),
    ("/v1/projects", {"methodology": "CDCER-PV"}, "projects", lambda r: r.methodology_code == "CDCER-PV"),
    ("/v1/projects", {"district": "Pidu", "state": "registered"}, "projects", lambda r: r.state == "registered"),
    ("/v1/projects", {"owner": "buyer"}, "projects", lambda r: False),
    ("/v1/batches", {"project": "P0002"}, "batches", lambda r: r.project_id == "P0002"),
    ("/v1/batches", {"vintage": 2023}, "batches", lambda r: r.vintage == 2023),
    ("/v1/batches", {"vintage": 2023, "project": "P0002"}, "batches", lambda r: False),
    ("/v1/retirements", {"holder": "buyer"}, "retirements", lambda r: r.holder == "buyer"),
    ("/v1/retirements", {"purpose": "voluntary"}, "retirements", lambda r: r.purpose == "voluntary"),
    ("/v1/retirements", {"event": "E0001"}, "retirements", lambda r: r.event_id == "E0001"),
    (
        "/v1/retirements",
        {"project": "P0001"},
        "retirements",
        lambda r: any(b.startswith("CDCER-P0001-") for b in r.blocks),
    ),
    ("/v1/retirements", {"project": "P9"}, "retirements", lambda r: False),
    ("/v1/cancellations", {"holder": "owner"}, "cancellations", lambda r: r.holder == "owner"),
    ("/v1/cancellations", {"reason_code": "invalidation"}, "cancellations", lambda r: r.reason_code == "invalidation"),
    ("/v1/cancellations", {"project": "P0001"}, "cancellations", lambda r: True),
    ("/v1/events", {"organiser": "organiser", "kind": "forum"}, "events", lambda r: True),
    ("/v1/events", {"kind": "sports"}, "events", lambda r: False),
    ("/v1/claims", {"event": "E0001"}, "claims", lambda r: True),
    ("/v1/claims", {"organiser": "owner"}, "claims", lambda r: False),
]


@pytest.mark.parametrize(("path", "params", "table", "keep"), FILTERS)
def test_filters_narrow_the_list(
    client: TestClient, state: State, path: str, params: dict[str, Any], table: str, keep: Callable[[Any], bool]
) -> None:
    _, key = LISTS[path]
    wanted = {key(expected(r)) for r in state.records(table) if keep(r)}
    assert {key(item) for item in walk(client, path, **params)} == wanted


def test_filters_keep_some_and_drop_some(client: TestClient, state: State) -> None:
    by_holder = walk(client, "/v1/retirements", holder="buyer")
    assert 0 < len(by_holder) < len(state.retirements)
    assert 0 < len(walk(client, "/v1/batches", project="P0002")) < len(state.batches)


def test_retirements_between_times(client: TestClient, state: State) -> None:
    times = sorted(r.retired_time for r in state.retirements.values())
    middle = times[len(times) // 2]
    since = walk(client, "/v1/retirements", since=middle)
    until = walk(client, "/v1/retirements", until=middle)
    assert {r["retired_time"] for r in since} == {t for t in times if t >= middle}
    assert {r["retired_time"] for r in until} == {t for t in times if t < middle}
    assert ids(since) | ids(until) == set(state.retirements)
    assert walk(client, "/v1/retirements", since="2000-01-01", until="2000-01-02") == []
    assert len(walk(client, "/v1/cancellations", since="2000-01-01T00:00:00+08:00")) == len(state.cancellations)


# --- pagination -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(LISTS))
def test_limit_one_walks_every_item_once(client: TestClient, path: str) -> None:
    _, key = LISTS[path]
    everything = walk(client, path)
    one_by_one = walk(client, path, limit=1)
    assert [key(item) for item in one_by_one] == [key(item) for item in everything]
    assert len({key(item) for item in one_by_one}) == len(one_by_one)


def test_pages_compose_with_filters(client: TestClient) -> None:
    page = get_ok(client, "/v1/retirements", holder="buyer", limit=1)
    assert len(page["items"]) == 1
    rest = walk(client, "/v1/retirements", holder="buyer", limit=1)
    assert rest[0] == page["items"][0]
    assert all(item["holder"] == "buyer" for item in rest)


def cursor_of(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/v1/projects", "***"),
        ("/v1/projects", "bm90IGpzb24"),  # base64url of "not json"
        ("/v1/projects", cursor_of({"id": "P0001"})),
        ("/v1/projects", cursor_of([1])),
        ("/v1/projects", cursor_of(["P0001", "x"])),
        ("/v1/methodologies", cursor_of(["CDCER-PV"])),
    ],
)
def test_a_malformed_cursor_is_a_bad_request(client: TestClient, path: str, cursor: str) -> None:
    assert_problem(client.get(path, params={"cursor": cursor}), 400, "next_cursor")


def test_a_cursor_is_base64url_of_the_last_key(client: TestClient) -> None:
    page = get_ok(client, "/v1/methodologies", limit=1)
    assert page["next_cursor"] is None
    page = get_ok(client, "/v1/projects", limit=1)
    cursor = page["next_cursor"]
    padded = cursor + "=" * (-len(cursor) % 4)
    assert json.loads(base64.urlsafe_b64decode(padded)) == [page["items"][0]["id"]]


# --- errors -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "listing"),
    [
        ("/v1/participants/nobody", "/v1/participants"),
        ("/v1/methodologies/CDCER-PV/9.9", "/v1/methodologies"),
        ("/v1/projects/P9999", "/v1/projects"),
        ("/v1/batches/P0001-2023-009", "/v1/batches"),
        ("/v1/retirements/RT999999", "/v1/retirements"),
        ("/v1/cancellations/CX999999", "/v1/cancellations"),
        ("/v1/events/E9999", "/v1/events"),
        ("/v1/claims/CN9999", "/v1/claims"),
    ],
)
def test_unknown_ids_are_not_found(client: TestClient, path: str, listing: str) -> None:
    problem = assert_problem(client.get(path), 404, path.rsplit("/", 1)[-1], listing)
    assert problem["type"].endswith("-not-found")


@pytest.mark.parametrize(
    ("path", "params", "status", "word"),
    [
        ("/v1/batches", {"vintage": "abc"}, 422, "vintage"),
        ("/v1/retirements", {"since": "yesterday"}, 422, "since"),
        ("/v1/cancellations", {"until": "2025-13-01"}, 422, "until"),
        ("/v1/retirements", {"purpose": "gift"}, 422, "purpose"),
        ("/v1/events", {"kind": "party"}, 422, "kind"),
        # Enumerated filters: a value outside them is refused, not an empty page.
        ("/v1/participants", {"role": "wizard"}, 422, "'wizard' is not one of 'authority', 'verifier'"),
        ("/v1/participants", {"status": "gone"}, 422, "'gone' is not one of 'active' or 'suspended'"),
        ("/v1/methodologies", {"status": "retired"}, 422, "'retired' is not one of 'active' or 'withdrawn'"),
        ("/v1/projects", {"state": "registred"}, 422, "'state': 'registred' is not one of 'submitted', 'validated'"),
        ("/v1/cancellations", {"reason_code": "oops"}, 422, "reason_code"),
        # A query parameter the route does not take is refused, not ignored.
        ("/v1/retirements", {"purpos": "event"}, 422, "unknown query parameter 'purpos'"),
        ("/v1/projects", {"status": "registered"}, 422, "unknown query parameter 'status'"),
        ("/v1/stats", {"project": "P0001"}, 422, "this route takes no query parameters"),
        ("/v1/projects/P0001", {"expand": "batches"}, 422, "unknown query parameter 'expand'"),
        ("/v1/projects", {"limit": 0}, 422, "limit"),
        ("/v1/claims", {"limit": 501}, 422, "limit"),
        ("/v1/retirements", {"since": "2025-02-01", "until": "2025-01-01"}, 400, "since"),
    ],
)
def test_bad_filter_values_are_problems(
    client: TestClient, path: str, params: dict[str, Any], status: int, word: str
) -> None:
    assert_problem(client.get(path, params=params), status, word)


def test_openapi_declares_the_error_statuses(client: TestClient) -> None:
    paths = get_ok(client, "/openapi.json")["paths"]
    public = {
        path: ops["get"]
        for path, ops in paths.items()
        if "public" in ops.get("get", {}).get("tags", [])
        and path.removeprefix("/v1/").split("/")[0]
        in {
            "participants",
            "methodologies",
            "projects",
            "batches",
            "retirements",
            "cancellations",
            "events",
            "claims",
            "stats",
        }
    }
    assert len(public) == 17
    for path, operation in public.items():
        responses = operation["responses"]
        if path == "/v1/stats":
            wanted = {"503"}
        elif "{" in path:
            wanted = {"404", "503"}
        else:
            wanted = {"400", "422", "503"}
            names = {p["name"] for p in operation["parameters"]}
            assert {"limit", "cursor"} <= names
        assert wanted <= set(responses), path
        for status in wanted:
            assert set(responses[status]["content"]) == {PROBLEM}, (path, status)


# --- the pages' aggregate queries ------------------------------------------------------------------------


def test_a_projects_units_are_summed_over_its_batches_by_state(rich_story: Story, state: State) -> None:
    totals_seen = []
    with read_transaction(rich_story.ledger.engine) as conn:
        for project_id in sorted(state.projects):
            batches = [bid for bid, batch in state.batches.items() if batch.project_id == project_id]
            blocks = [block for bid in batches for block in state.blocks.get(bid, [])]
            totals = repository.project_units(conn, project_id)
            assert totals == {
                "issued": sum(state.batches[bid].quantity for bid in batches),
                "retired": sum(b.quantity for b in blocks if b.state == "retired"),
                "cancelled": sum(b.quantity for b in blocks if b.state == "cancelled"),
                "outstanding": sum(b.quantity for b in blocks if b.state == "held"),
            }
            assert totals["issued"] == totals["retired"] + totals["cancelled"] + totals["outstanding"]
            totals_seen.append(totals)
        nothing = repository.project_units(conn, "P9999")
    assert nothing == {"issued": 0, "retired": 0, "cancelled": 0, "outstanding": 0}
    assert len(totals_seen) == 2
    assert totals_seen[0] != totals_seen[1]  # each project is summed over its own batches only
    assert any(t["retired"] and t["cancelled"] for t in totals_seen)


def test_participant_names_are_looked_up_in_one_query(rich_story: Story, state: State) -> None:
    with read_transaction(rich_story.ledger.engine) as conn:
        found = repository.names(conn, [*state.participants, None, "", "nobody"])
        assert repository.names(conn, []) == {}
    assert found == {pid: p.name for pid, p in state.participants.items()}
