"""A stateful run of the HTTP API: schemathesis' state machine over the app's own OpenAPI document.

Where `test_schemathesis` sends each operation requests on its own, this run chains them: a scenario starts
at a list (participants, projects, batches, retirements, events, claims, the log...) and follows links to the
operations that take what a response names (a batch's project, a claim's event and certificate, a
retirement's certificate, a participant's account, the next page). Schemathesis infers most links from the
document (an ``id`` in a response matched to a path parameter); the test adds the ones the API naturally has
that inference cannot see: the next page of every paged list (``next_cursor``, and ``next`` for the log), an
entry's inclusion proof, and a participant's account reads. Requests that fit the document and requests
that do not are mixed, over a registry holding the full story, on SQLite and on PostgreSQL.

Every response must not be a server error, must have a status the document declares for the operation,
with the declared content type and a body matching the declared schema. The requests are counted (the
count is printed): about 200 in the default suite, at least 2,000 per database under ``-m slow``.
"""

from __future__ import annotations

import base64
import copy
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.transport import Response
from schemathesis.generation.stateful.state_machine import APIStateMachine
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import Databases
from tests.registry.test_schemathesis import story_app

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STEPS = 10
"""Most requests in one scenario."""
RUNS = [pytest.param(200, id="default"), pytest.param(2000, id="long", marks=pytest.mark.slow)]
"""Requests per database: a short run in the default suite, the long one under ``-m slow`` (`make test-long`)."""


def with_links(document: dict[str, Any]) -> dict[str, Any]:
    """The document with the OpenAPI links the API naturally has beyond those schemathesis infers."""
    linked = copy.deepcopy(document)
    paths = linked["paths"]

    def link(path: str, name: str, target: str, parameters: dict[str, str]) -> None:
        response = paths[path]["get"]["responses"]["200"]
        response.setdefault("links", {})[name] = {
            "operationId": paths[target]["get"]["operationId"],
            "parameters": parameters,
        }

    for path, operations in paths.items():
        parameters = {p["name"] for p in operations.get("get", {}).get("parameters", []) if p["in"] == "query"}
        if "cursor" in parameters:
            link(path, "NextPage", path, {"query.cursor": "$response.body#/next_cursor"})
    link("/v1/log/entries", "NextPage", "/v1/log/entries", {"query.start": "$response.body#/next"})
    link(
        "/v1/log/entries",
        "InclusionProof",
        "/v1/log/proof/inclusion",
        {"query.index": "$response.body#/entries/0/index", "query.size": "$response.body#/next"},
    )
    for read in ("holdings", "history"):
        link(
            "/v1/participants/{participant_id}",
            f"Account{read.title()}",
            f"/v1/accounts/{{account}}/{read}",
            {"path.account": "$response.body#/id"},
        )
    return linked


@pytest.fixture(scope="module")
def api(databases: Databases) -> Iterator[BaseSchema]:
    """The app over a registry with the full story, and its document with the links above."""
    with story_app(databases) as app:
        loaded = schemathesis.openapi.from_dict(with_links(app.openapi()))
        loaded.app = app  # requests go to the app in process; its lifespan starts with the first one
        loaded.location = "/openapi.json"
        yield loaded


def counting_machine(api: BaseSchema, counts: Counter[str]) -> type[APIStateMachine]:
    """The document's state machine, counting each request by operation and status and running `CHECKS`."""
    base: type[APIStateMachine] = api.as_state_machine()

    class CountingMachine(base):  # type: ignore[misc,valid-type]  # a class schemathesis builds at run time
        def call(self, case: Case[Any], **kwargs: Any) -> Response:
            response: Response = super().call(case, **kwargs)
            counts[f"{case.method.upper()} {case.path} {response.status_code}"] += 1
            return response

        def validate_response(
            self, response: Response, case: Case[Any], additional_checks: Any = None, **kwargs: Any
        ) -> None:
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    return CountingMachine


def test_the_links_name_operations_of_the_document(api: BaseSchema) -> None:
    machine = api.as_state_machine()
    rules = {name for name in dir(machine) if "__" in name}
    for expected in ("NextPage", "InclusionProof", "AccountHoldings", "AccountHistory", "GetClaim", "GetBatch"):
        assert any(expected in rule for rule in rules), (expected, sorted(rules))


@pytest.mark.parametrize("requests", RUNS)
def test_stateful_scenarios_never_fail_and_answer_as_documented(
    api: BaseSchema, requests: int, record_property: Callable[[str, object], None]
) -> None:
    counts: Counter[str] = Counter()
    machine = counting_machine(api, counts)
    # Scenarios of up to STEPS requests, in rounds until enough requests were made (scenarios vary in length).
    while (made := counts.total()) < requests:
        machine.run(
            settings=settings(
                max_examples=max(5, (requests - made) // STEPS),
                stateful_step_count=STEPS,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
        )
    engine = api.app.state.engine.dialect.name
    record_property("stateful_requests", counts.total())
    print(f"\n{engine}: {counts.total()} stateful requests over {len(operations(counts))} operations")  # noqa: T201
    assert counts.total() >= requests
    # Scenarios did chain requests: resources named only by an earlier response were found.
    found = {key.rsplit(" ", 1)[0] for key, n in counts.items() if key.endswith(" 200")}
    assert {"GET /v1/claims/{claim_id}", "GET /v1/batches/{batch_id}"} & found, counts


def operations(counts: Counter[str]) -> set[str]:
    """The operations (method and path) the counted requests went to."""
    return {key.rsplit(" ", 1)[0] for key in counts}


# Requests that broke the API (found while fuzzing it), kept as fixed examples.
NESTED_CURSOR = base64.urlsafe_b64encode(b"[" * 5000 + b"]" * 5000).decode()
KNOWN_CASES = [
    # A cursor of arrays nested thousands deep: was a 500 (RecursionError) from every paged list.
    ("/v1/participants", {}, {"cursor": NESTED_CURSOR}, 400),
    ("/v1/batches", {}, {"cursor": NESTED_CURSOR}, 400),
    # A vintage beyond BIGINT: was a 500 on SQLite (OverflowError), a 422 from PostgreSQL.
    ("/v1/batches", {}, {"vintage": 10**30}, 422),
    ("/v1/exports/issuances.{format}", {"format": "csv"}, {"vintage": 2**63}, 422),
    ("/v1/exports/issuances.{format}", {"format": "json"}, {"vintage": -1}, 422),
]


@pytest.mark.parametrize(("path", "path_parameters", "query", "status"), KNOWN_CASES)
def test_known_awkward_requests(
    api: BaseSchema, path: str, path_parameters: dict[str, str], query: dict[str, Any], status: int
) -> None:
    case = api[path]["GET"].Case(path_parameters=path_parameters, query=query)
    response = case.call_and_validate(checks=CHECKS)
    assert response.status_code == status, response.text
