"""Property-based tests of the whole HTTP API against its own OpenAPI document (schemathesis).

Schemathesis reads ``/openapi.json`` from an app over a registry holding the full story and, for every
operation the document declares (the public reads, the log and its proofs, ``POST /v1/transactions``),
generates requests that fit the document and requests that do not. No response may be a server error,
and every response must match the schema the document declares for its status.

The operations are listed at collection time from the same app factory, so each one is its own test
(a route someone adds is tested without a change here).
(schemathesis' own pytest integration, ``schemathesis.pytest.from_fixture``, fails under pytest 9.2: it
reads ``Node._nodeid``, which pytest no longer has; so its strategies are driven with hypothesis here.)
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlalchemy import create_engine

from ledger.ledger import Ledger, found_registry
from ledger.storage import schema
from ledger.storage.engine import make_engine
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key

MAX_EXAMPLES = 50
"""Requests per operation (valid and invalid mixed): ~35 operations take ~20 s per engine."""
MAX_EXAMPLES_FOR = {("POST", "/v1/transactions"): 200}
"""The write path takes the richest bodies (31 kinds of payload): it gets more."""


def documented_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the app's OpenAPI document (read without a database)."""
    # The document does not touch the database: an engine that never connects is enough.
    document = create_app(Settings(origin=ORIGIN), engine=create_engine("sqlite://")).openapi()
    return [(method.upper(), path) for path, operations in document["paths"].items() for method in operations]


OPERATIONS = documented_operations()


@contextmanager
def story_app(databases: Databases) -> Iterator[FastAPI]:
    """The app (writes enabled) over a new registry with the full story; stopped and dropped afterwards.

    Tests built on it may share it: no generated request can append (none carries a valid signature).
    """
    url = databases.create()
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        ledger = Ledger(engine, log_signer())
        found_registry(
            ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY)
        )
        Story(ledger).full_story()
        try:
            yield create_app(Settings(origin=ORIGIN), ledger=ledger)
        finally:
            shutdown_lifespans()  # stops the app's sequencer before its database goes
    finally:
        engine.dispose()
        databases.drop(url)


@pytest.fixture(scope="module")
def api(databases: Databases) -> Iterator[BaseSchema]:
    """The app's own OpenAPI document, bound to the app over a registry with the full story."""
    with story_app(databases) as app:
        yield schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan


def test_every_operation_is_exercised(api: BaseSchema) -> None:
    results = list(api.get_all_operations())
    assert all(isinstance(result, Ok) for result in results), results
    served = {(result.ok().method.upper(), result.ok().path) for result in results if isinstance(result, Ok)}
    assert served == set(OPERATIONS)
    assert ("POST", "/v1/transactions") in served
    assert sum(method == "GET" for method, _ in served) >= 10


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_error_and_every_response_as_documented(api: BaseSchema, method: str, path: str) -> None:
    operation = api[path][method]
    # Requests that fit the document, and requests that do not (where the operation has anything to get
    # wrong: an operation without parameters has no invalid request, and that branch draws nothing).
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    examples = MAX_EXAMPLES_FOR.get((method, path), MAX_EXAMPLES)

    @given(case=cases)
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def run(case: Case[Any]) -> None:
        case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

    run()


def test_every_error_response_is_documented_as_a_problem(api: BaseSchema) -> None:
    # The handlers render every 4xx and 5xx as a problem, whatever the route returns on success.
    document = api.raw_schema
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if str(status)[0] in "45":
                    assert response["content"] == {
                        "application/problem+json": {"schema": {"$ref": "#/components/schemas/ProblemDetails"}}
                    }, f"{method.upper()} {path} {status}"


# Requests that once broke the API (found by the test above), kept as fixed examples, with the status
# expected on SQLite and on PostgreSQL.
KNOWN_CASES = [
    # A time that is in year 0 once in UTC: was a 500 (OverflowError).
    ("GET", "/v1/retirements", {}, {"since": "0001-01-01T00:00:00+00:01"}, (400, 400)),
    ("GET", "/v1/cancellations", {}, {"until": "9999-12-31T23:59:59-00:01"}, (400, 400)),
    # A NUL character, which PostgreSQL text cannot hold: was a 503 there; SQLite finds no match.
    ("GET", "/v1/claims", {}, {"organiser": "a\x00b"}, (200, 422)),
    # ... though in an enumerated filter it is no value the filter takes, on either engine.
    ("GET", "/v1/participants", {}, {"status": "a\x00b"}, (422, 422)),
    ("GET", "/v1/projects", {}, {"methodology": "CDCER\x00PV"}, (200, 422)),
    ("GET", "/v1/participants/{participant_id}", {"participant_id": "own\x00er"}, {}, (404, 422)),
    # ... and an export, which failed after its first bytes were sent.
    ("GET", "/v1/exports/retirements.{format}", {"format": "csv"}, {"holder": "a\x00b"}, (200, 422)),
]


@pytest.mark.parametrize(("method", "path", "path_parameters", "query", "statuses"), KNOWN_CASES)
def test_known_awkward_requests(
    api: BaseSchema,
    method: str,
    path: str,
    path_parameters: dict[str, str],
    query: dict[str, str],
    statuses: tuple[int, int],
) -> None:
    case = api[path][method].Case(path_parameters=path_parameters, query=query)
    response = case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])
    on_sqlite = api.app.state.engine.dialect.name == "sqlite"
    assert response.status_code == statuses[0 if on_sqlite else 1], response.text
