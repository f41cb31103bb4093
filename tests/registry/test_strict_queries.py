"""Strict query strings on the JSON API: an unknown parameter or an unknown filter value is a 422 problem.

Before, ``/v1/retirements?purpos=event`` answered every retirement, as if filtered, and
``/v1/projects?state=registred`` an empty page. Every JSON API route now compares the query keys with
the parameters it declares (`registry.query.StrictQuery`), and each enumerated filter is typed, so its
values are checked and listed in the OpenAPI document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from enum import StrEnum
from typing import Annotated, Any, get_args

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Query
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from ledger.ledger import Ledger, found_registry
from ledger.storage import schema
from ledger.storage.engine import make_engine
from ledger.transactions import CancellationReason, EventKind, RetirementPurpose, Role
from registry.accounts import api as accounts_api
from registry.app import create_app
from registry.errors import PROBLEM_TYPE_BASE, install_error_handlers
from registry.exports import api as exports_api
from registry.log import api as log_api
from registry.public import api as public_api
from registry.public.schemas import MethodologyStatus, ParticipantStatus, ProjectState
from registry.query import StrictQuery, declared_query, strict_query
from registry.serials import api as serials_api
from registry.settings import Settings
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key

PROBLEM = "application/problem+json"

STRICT_ROUTERS = {
    "public": public_api.router,
    "exports": exports_api.router,
    "serials": serials_api.router,
    "log": log_api.router,
    "accounts": accounts_api.router,
}

# JSON API routes on routers this change does not own (their modules are others' to edit): not strict yet.
NOT_STRICT = {
    ("GET", "/v1/retirements/{retirement_id}/certificate"),
    ("GET", "/v1/claims/{claim_id}/certificate"),
    ("POST", "/v1/transactions"),
}


def json_api_operations() -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path, operation) of every ``/v1/`` operation the OpenAPI document declares."""
    document = create_app(Settings(origin=ORIGIN), engine=create_engine("sqlite://")).openapi()
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        if path.startswith("/v1/")
        for method, operation in operations.items()
        if (method.upper(), path) not in NOT_STRICT
    ]


OPERATIONS = json_api_operations()


def declared_names(operation: dict[str, Any]) -> list[str]:
    return [p["name"] for p in operation.get("parameters", []) if p["in"] == "query"]


@pytest.fixture(scope="module")
def client(databases: Databases) -> Iterator[TestClient]:
    """The app over a founded registry, on each engine, shared by the module's tests (they only read)."""
    url = databases.create()
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        ledger = Ledger(engine, log_signer())
        found_registry(
            ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY)
        )
        with TestClient(create_app(Settings(origin=ORIGIN), ledger=ledger)) as test_client:
            yield test_client
    finally:
        engine.dispose()
        databases.drop(url)


def assert_invalid(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["type"] == PROBLEM_TYPE_BASE + "validation-error"
    assert problem["title"] == "Invalid request"
    assert problem["status"] == 422
    for word in words:
        assert word in problem["detail"], problem
    detail: str = problem["detail"]
    return detail


def call(client: TestClient, method: str, path: str, query: list[tuple[str, str]]) -> httpx.Response:
    url = re.sub(r"\{format\}", "csv", path)
    url = re.sub(r"\{[^}]+\}", "x", url)
    response: httpx.Response
    if method == "POST":
        response = client.post(url, params=query, json={"size": 1, "cosignature": "— w AAAA"})
    else:  # GET, and the points uploads' PUT and DELETE (refused before their body or signature is read)
        response = client.request(method, url, params=query)
    return response


# --- unknown query parameters ------------------------------------------------------------------------------


def test_the_json_api_operations_are_all_listed() -> None:
    paths = {path.removeprefix("/v1/").split("/")[0] for _, path, _ in OPERATIONS}
    assert {"participants", "projects", "retirements", "stats", "serials", "log", "exports", "accounts"} <= paths
    assert len(OPERATIONS) >= 25


@pytest.mark.parametrize(("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS])
def test_an_unknown_query_parameter_is_refused_naming_what_the_route_takes(
    client: TestClient, method: str, path: str, operation: dict[str, Any]
) -> None:
    assert "422" in operation["responses"], "the document declares the 422"
    declared = declared_names(operation)
    detail = assert_invalid(call(client, method, path, [("zzz_unknown", "1")]), "unknown query parameter 'zzz_unknown'")
    if declared:
        assert detail.endswith(f"this route takes: {', '.join(declared)}"), detail
    else:
        assert detail.endswith("this route takes no query parameters"), detail


def test_a_misspelt_filter_is_refused_not_ignored(client: TestClient) -> None:
    detail = assert_invalid(client.get("/v1/retirements", params={"purpos": "event"}))
    assert detail == (
        "unknown query parameter 'purpos' (did you mean 'purpose'?); this route takes: "
        "project, purpose, holder, event, since, until, limit, cursor"
    )
    assert_invalid(client.get("/v1/projects", params={"State": "registered"}), "'State' (did you mean 'state'?)")
    assert_invalid(client.get("/v1/exports/retirements.csv", params={"Holder": "x"}), "(did you mean 'holder'?)")
    assert_invalid(client.get("/v1/exports/retirements.csv", params={"BOM": "true"}), "'BOM' (did you mean 'bom'?)")


def test_every_unknown_parameter_is_named(client: TestClient) -> None:
    response = client.get("/v1/stats", params=[("a", "1"), ("b", "2"), ("a", "3")])
    assert assert_invalid(response) == "unknown query parameters 'a', 'b'; this route takes no query parameters"


def test_unknown_parameters_are_refused_before_anything_else(client: TestClient) -> None:
    """Before a bad value, a missing record, a missing signature or a read of the database."""
    assert_invalid(client.get("/v1/projects", params={"state": "nope", "x": "1"}), "unknown query parameter 'x'")
    assert_invalid(client.get("/v1/projects/P9999", params={"x": "1"}), "'x'")
    assert_invalid(client.get("/v1/accounts/owner/holdings", params={"x": "1"}), "'x'")


def test_a_parameter_given_twice_is_refused(client: TestClient) -> None:
    response = client.get("/v1/projects", params=[("state", "registered"), ("state", "closed")])
    assert assert_invalid(response) == "query parameter given more than once: 'state' (2 times); each takes one value"
    assert_invalid(client.get("/v1/log/entries", params=[("limit", "1"), ("limit", "2"), ("limit", "3")]), "3 times")


def test_declared_parameters_and_an_empty_query_still_answer(client: TestClient) -> None:
    assert client.get("/v1/projects").status_code == 200
    assert client.get("/v1/projects?").status_code == 200
    assert client.get("/v1/projects", params={"state": "registered", "limit": 1}).status_code == 200
    assert client.get("/v1/log/entries", params={"start": 0, "limit": 1}).status_code == 200
    assert client.get("/v1/exports/issuances.csv", params={"vintage": 2023}).status_code == 200
    assert client.get("/v1/exports/issuances.csv", params={"bom": "false"}).status_code == 200


def test_every_route_of_the_json_api_routers_is_strict() -> None:
    for name, router in STRICT_ROUTERS.items():
        routes = [route for route in router.routes if isinstance(route, APIRoute)]
        assert routes, name
        for route in routes:
            assert any(d.call is strict_query for d in route.dependant.dependencies), (name, route.path)


# --- what a route declares: its own parameters and its dependencies' ---------------------------------------


def paging(page_size: Annotated[int, Query(alias="page-size")] = 10) -> int:
    return page_size


def tiny_app() -> tuple[FastAPI, APIRoute]:
    router = APIRouter(dependencies=[StrictQuery])

    @router.get("/things")
    def things(
        size: Annotated[int, Depends(paging)],
        tag: Annotated[list[str] | None, Query()] = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        return {"size": size, "tag": tag, "name": name}

    app = FastAPI()
    install_error_handlers(app)
    app.include_router(router)
    (route,) = router.routes
    assert isinstance(route, APIRoute)
    return app, route


def test_the_declared_parameters_come_from_the_route_and_its_dependencies() -> None:
    app, route = tiny_app()
    declared = declared_query(route)
    assert declared.names == ("page-size", "tag", "name")
    assert declared.repeatable == frozenset({"tag"})
    with TestClient(app) as client:
        response = client.get("/things", params=[("page-size", "3"), ("tag", "a"), ("tag", "b")])
        assert response.json() == {"size": 3, "tag": ["a", "b"], "name": None}
        assert_invalid(client.get("/things", params={"page_size": "3"}), "'page_size' (did you mean 'page-size'?)")
        assert_invalid(client.get("/things", params=[("name", "a"), ("name", "b")]), "'name' (2 times)")


# --- enumerated filters ------------------------------------------------------------------------------------


def values(kind: Any) -> list[str]:
    """An enum's values, or a ``Literal``'s."""
    if isinstance(kind, type) and issubclass(kind, StrEnum):
        return [member.value for member in kind]
    return list(get_args(kind))


ENUMERATED = [
    ("/v1/participants", "role", values(Role)),
    ("/v1/participants", "status", values(ParticipantStatus)),
    ("/v1/methodologies", "status", values(MethodologyStatus)),
    ("/v1/projects", "state", values(ProjectState)),
    ("/v1/retirements", "purpose", values(RetirementPurpose)),
    ("/v1/cancellations", "reason_code", values(CancellationReason)),
    ("/v1/events", "kind", values(EventKind)),
    ("/v1/exports/retirements.csv", "purpose", values(RetirementPurpose)),
    ("/v1/exports/cancellations.csv", "reason_code", values(CancellationReason)),
]


def test_the_project_states_are_the_ledgers() -> None:
    assert values(ProjectState) == [
        "submitted",
        "validated",
        "registered",
        "rejected",
        "changes_requested",
        "suspended",
        "closed",
    ]
    assert values(ParticipantStatus) == ["active", "suspended"]
    assert values(MethodologyStatus) == ["active", "withdrawn"]


@pytest.mark.parametrize(("path", "name", "accepted"), ENUMERATED)
def test_an_unknown_filter_value_is_refused_naming_the_values(
    client: TestClient, path: str, name: str, accepted: list[str]
) -> None:
    detail = assert_invalid(client.get(path, params={name: "registred"}))
    listed = ", ".join(repr(v) for v in accepted[:-1]) + f" or {accepted[-1]!r}"
    assert detail == f"query parameter {name!r}: 'registred' is not one of {listed}"
    for value in accepted:
        assert client.get(path, params={name: value}).status_code == 200, value


def test_the_projects_state_example(client: TestClient) -> None:
    detail = assert_invalid(client.get("/v1/projects", params={"state": "registred"}))
    assert detail.startswith("query parameter 'state': 'registred' is not one of 'submitted', 'validated', ")


def test_a_long_unknown_value_is_shown_cut_short(client: TestClient) -> None:
    detail = assert_invalid(client.get("/v1/projects", params={"state": "x" * 5000}))
    assert "'" + "x" * 60 + "…' is not one of" in detail
    assert len(detail) < 300


@pytest.mark.parametrize(("path", "name", "accepted"), ENUMERATED)
def test_the_openapi_document_lists_each_filters_values(path: str, name: str, accepted: list[str]) -> None:
    document = create_app(Settings(origin=ORIGIN), engine=create_engine("sqlite://")).openapi()
    documented = path.replace(".csv", ".{format}")
    (parameter,) = [p for p in document["paths"][documented]["get"]["parameters"] if p["name"] == name]
    schema = parameter["schema"]
    options = [s for s in schema.get("anyOf", [schema]) if s.get("type") != "null"]
    (option,) = options
    if "$ref" in option:
        option = document["components"]["schemas"][option["$ref"].rsplit("/", 1)[-1]]
    assert option["enum"] == accepted
