"""Certificates over HTTP: a download that verifies offline with the key the registry publishes."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from ledger.certificate import (
    Certificate,
    CertificateKind,
    ClaimStatement,
    RetirementStatement,
    VerifiedCertificate,
    build_certificate,
    verify_certificate,
)
from ledger.checkpoint import CosignatureSigner
from ledger.errors import CertificateError
from ledger.note import NoteSigner, parse_note
from ledger.storage.engine import read_transaction
from ledger.transactions import WitnessRegister
from registry.app import create_app
from registry.certificates import service as certificates_service
from registry.certificates.cache import CacheInfo, LruCache
from registry.pages import service as pages_service
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


# --- built once per checkpoint ------------------------------------------------------------------------------


@dataclass
class Calls:
    """Calls of the real certificate builder and verifier the registry makes, counted on their way through."""

    built: list[tuple[str, str]] = field(default_factory=list)
    verified: int = 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    counted = Calls()

    def build(conn: Connection, kind: CertificateKind, record_id: str) -> Certificate | None:
        counted.built.append((kind, record_id))
        return build_certificate(conn, kind, record_id)

    def verify(data: bytes, vkey: str) -> VerifiedCertificate:
        counted.verified += 1
        return verify_certificate(data, vkey)

    # Wherever the registry looks the builder and the verifier up (raising=False: not every module does).
    for module in (certificates_service, pages_service):
        monkeypatch.setattr(module, "build_certificate", build, raising=False)
        monkeypatch.setattr(module, "verify_certificate", verify, raising=False)
    return counted


def test_a_certificate_is_built_once_per_checkpoint(told: Story, client: TestClient, calls: Calls) -> None:
    vkey = published_vkey(client)
    first = client.get("/v1/claims/CN0001/certificate")
    second = client.get("/v1/claims/CN0001/certificate")
    assert first.status_code == second.status_code == 200
    assert second.content == first.content
    assert calls.built == [("claim", "CN0001")]
    before = verify_certificate(second.content, vkey)  # what the cache hands out still verifies
    assert before.checkpoint_size == told.ledger.size()

    # The claim page and its PDF verify the same certificate: no build, and one verification for both.
    for path in ("/claims/CN0001", "/claims/CN0001", "/claims/CN0001/certificate.pdf"):
        assert client.get(path, params={"lang": "en"}).status_code == 200
    assert calls.built == [("claim", "CN0001")]
    assert calls.verified == 1
    client.get("/v1/retirements/RT000001/certificate")
    assert calls.built == [("claim", "CN0001"), ("retirement", "RT000001")]
    # An unknown id is not kept: there are endless unknown ids, and each costs one lookup.
    for _ in range(2):
        assert client.get("/v1/claims/CN9999/certificate").status_code == 404
    assert calls.built[2:] == [("claim", "CN9999")] * 2
    del calls.built[2:]

    # A new append signs a new checkpoint: the next certificate is built on it, and verifies.
    told.world.transfer("owner", "buyer", 20)
    told.sync()
    after = client.get("/v1/claims/CN0001/certificate")
    assert calls.built[-1] == ("claim", "CN0001")
    assert len(calls.built) == 3
    verified = verify_certificate(after.content, vkey)
    assert verified.checkpoint_size == told.ledger.size() > before.checkpoint_size
    page = client.get("/claims/CN0001", params={"lang": "en"}).text
    assert f'<dd id="checkpoint-size">{told.ledger.size()}</dd>' in page
    assert calls.verified == 2
    assert client.get("/v1/claims/CN0001/certificate").content == after.content
    assert len(calls.built) == 3


def test_a_new_cosignature_is_a_new_certificate(told: Story, client: TestClient, calls: Calls) -> None:
    witness = CosignatureSigner("witness.test/sichuan-university", seeded_key("witness").seed)
    told.submit("authority", WitnessRegister(vkey=witness.verifier_key()))
    plain = client.get("/v1/claims/CN0001/certificate").content
    assert client.get("/v1/claims/CN0001/certificate").content == plain
    assert len(calls.built) == 1
    note = parse_note(client.get("/v1/log/checkpoint").content)
    line = witness.cosign(note.text, int(told.world.clock.timestamp())).line()
    size = int(note.text.splitlines()[1])
    assert client.post("/v1/log/cosignatures", json={"size": size, "cosignature": line}).status_code == 201
    cosigned = client.get("/v1/claims/CN0001/certificate").content
    assert len(calls.built) == 2
    assert line in json.loads(cosigned)["checkpoint"]
    assert verify_certificate(cosigned, published_vkey(client)).checkpoint_size == size


def test_the_cache_keeps_the_most_recently_used() -> None:
    cache: LruCache[str, int] = LruCache(maxsize=2)
    built: list[str] = []

    def value(key: str) -> int:
        built.append(key)
        return len(built)

    assert [cache.get_or_build(key, functools.partial(value, key)) for key in "abab"] == [1, 2, 1, 2]
    assert cache.get_or_build("c", lambda: value("c")) == 3  # drops the least recently used: a
    assert cache.get_or_build("b", lambda: value("b")) == 2
    assert cache.get_or_build("a", lambda: value("a")) == 4
    assert built == ["a", "b", "c", "a"]
    assert cache.info() == CacheInfo(hits=3, misses=4, size=2, maxsize=2)
    assert cache.get_or_build("none", lambda: None) is None
    assert cache.info().size == 2
    with pytest.raises(ValueError, match="at least one"):
        LruCache(maxsize=0)


def test_the_cache_is_safe_to_share_between_threads() -> None:
    cache: LruCache[int, int] = LruCache(maxsize=8)
    errors: list[BaseException] = []

    def hammer(seed: int) -> None:
        try:
            for i in range(2000):
                key = (seed * 7 + i) % 13
                assert cache.get_or_build(key, functools.partial(pow, key, 2)) == key * key
        except BaseException as exc:  # reported below: a thread's assertion would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    info = cache.info()
    assert info.size == 8
    assert info.hits + info.misses == 8 * 2000
