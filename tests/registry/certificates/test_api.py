"""Certificates over HTTP: a download that verifies offline with the key the registry publishes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from ledger.certificate import ClaimStatement, RetirementStatement, build_certificate, verify_certificate
from ledger.errors import CertificateError
from ledger.note import NoteSigner
from ledger.storage.engine import read_transaction
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_audit import drop_triggers

PROBLEM = "application/problem+json"
ROUTES = {
    "/v1/retirements/{retirement_id}/certificate": "RetirementCertificate",
    "/v1/claims/{claim_id}/certificate": "ClaimCertificate",
}


@pytest.fixture
def told(story: Story) -> Story:
    story.full_story()
    return story


@pytest.fixture
def client(told: Story) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=told.ledger)) as test_client:
        yield test_client


def published_vkey(client: TestClient) -> str:
    response = client.get("/v1/log/vkey")
    assert response.status_code == 200
    vkey: str = response.text
    return vkey


@pytest.mark.parametrize(
    ("path", "kind", "record_id"),
    [
        ("/v1/retirements/RT000001/certificate", "retirement", "RT000001"),
        ("/v1/claims/CN0001/certificate", "claim", "CN0001"),
    ],
)
def test_a_certificate_downloads_and_verifies_with_the_published_key(
    told: Story, client: TestClient, path: str, kind: str, record_id: str
) -> None:
    response = client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == f'attachment; filename="{record_id}.cdcer-certificate.json"'
    vkey = published_vkey(client)
    assert vkey == log_signer().verifier_key()
    verified = verify_certificate(response.content, vkey)
    assert (verified.kind, verified.id, verified.checkpoint_size) == (kind, record_id, told.ledger.size())
    with read_transaction(told.ledger.engine) as conn:
        built = build_certificate(conn, kind, record_id)  # type: ignore[arg-type]
    assert built is not None
    assert response.content == built.to_bytes()


def test_the_claim_download_states_the_footprint_and_the_retirement(client: TestClient) -> None:
    verified = verify_certificate(client.get("/v1/claims/CN0001/certificate").content, published_vkey(client))
    assert isinstance(verified.statement, ClaimStatement)
    assert (verified.statement.footprint_kg, verified.statement.units) == (9600, 10)
    assert [r.id for r in verified.statement.retirements] == ["RT000001"]
    retirement = verify_certificate(client.get("/v1/retirements/RT000001/certificate").content, published_vkey(client))
    assert isinstance(retirement.statement, RetirementStatement)
    assert retirement.statement.model_dump(mode="json") == verified.statement.retirements[0].model_dump(mode="json") | {
        "batches": [b.model_dump(mode="json") for b in verified.statement.batches]
    }


def test_a_download_does_not_verify_with_another_key(client: TestClient) -> None:
    other = NoteSigner("other.test/cdcer", seeded_key("other log").seed).verifier_key()
    with pytest.raises(CertificateError, match="another registry"):
        verify_certificate(client.get("/v1/claims/CN0001/certificate").content, other)


@pytest.mark.parametrize(
    ("path", "kind", "listing"),
    [
        ("/v1/retirements/RT999999/certificate", "retirement", "/v1/retirements"),
        ("/v1/retirements/CN0001/certificate", "retirement", "/v1/retirements"),
        ("/v1/claims/CN9999/certificate", "claim", "/v1/claims"),
        ("/v1/claims/RT000001/certificate", "claim", "/v1/claims"),
    ],
)
def test_unknown_ids_are_a_not_found_problem(client: TestClient, path: str, kind: str, listing: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["status"] == 404
    assert problem["type"].endswith(f"/{kind}-not-found")
    record_id = path.split("/")[3]
    assert f"no {kind} '{record_id}' in the registry" in problem["detail"]
    assert listing in problem["detail"]


def test_the_openapi_document_declares_the_routes_and_their_errors(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    for path, model in ROUTES.items():
        responses = document["paths"][path]["get"]["responses"]
        assert {"200", "404", "503"} <= set(responses), path
        assert responses["200"]["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{model}"}
        errors = [status for status in responses if status[0] in "45"]
        assert {"404", "503"} <= set(errors)
        for status in errors:
            assert set(responses[status]["content"]) == {PROBLEM}, (path, status)
    assert "statement" in document["components"]["schemas"]["ClaimCertificate"]["properties"]


def test_a_damaged_log_is_a_500_problem_not_a_traceback(client: TestClient, told: Story) -> None:
    state = told.ledger.state()
    (retirement,) = state.records("retirements")
    engine = told.ledger.engine
    drop_triggers(engine)
    with engine.begin() as conn:
        data = conn.execute(text("SELECT data FROM log_entries WHERE idx = :i"), {"i": retirement.entry}).scalar_one()
        damaged = bytes(data).replace(b'"v":1}', b'"v":2}')
        conn.execute(text("UPDATE log_entries SET data = :d WHERE idx = :i"), {"d": damaged, "i": retirement.entry})
    response = client.get(f"/v1/retirements/{retirement.id}/certificate")
    assert response.status_code == 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/integrity-failure")
    assert "cdcer audit verify" in problem["detail"]
