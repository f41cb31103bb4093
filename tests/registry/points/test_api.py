"""The carbon-points routes over real HTTP, on SQLite and PostgreSQL: a provider's signed, digested uploads,
the private reads of batches and accounts (with proofs that verify offline), and the public reads.

Every refusal is a problem (`application/problem+json`) and changes nothing: neither the log nor the uploads.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from ledger.keys import PrivateKey
from ledger.log import decode_entry
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.points_batch import PointRecord, batch_root, subject_commitment, verify_record
from ledger.transactions import PointAccountKind, PointAccountOpen, PointsAttest, PointsConsent, ProviderScope, Role
from registry.accounts.signatures import ACCEPT_SIGNATURE_WITH_BODY, sign_request
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.state.test_awards import attest
from tests.ledger.state.test_points import rule
from tests.registry.log.test_api import opened_checkpoint

PROBLEM = "application/problem+json"
A1, A2, A3 = "PA00000000000000a1", "PA00000000000000a2", "PA00000000000000a3"


@pytest.fixture
def told(story: Story) -> Story:
    """A bike-km rule in force for ten days, bike-co and metro-co scoped to it, three accounts opened by
    tianfu-app (two consenting to bike-co), an auditor."""
    w = story.world
    w.register("auditor", [Role.AUDITOR])
    w.register("bike-co", [Role.DATA_PROVIDER])
    w.register("metro-co", [Role.DATA_PROVIDER])
    w.register("tianfu-app", [Role.PLATFORM_OPERATOR])
    w.register("other-app", [Role.PLATFORM_OPERATOR])
    w.submit("authority", rule("bike-km", w.clock.date()))
    for provider in ("bike-co", "metro-co"):
        w.submit("authority", ProviderScope(provider=provider, rules=("bike-km",)))
    for account in (A1, A2, A3):
        w.submit("tianfu-app", PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
    for account in (A1, A2):
        w.submit("tianfu-app", PointsConsent(account_id=account, provider="bike-co", rule_id="bike-km", granted=True))
    w.advance(timedelta(days=10))
    story.sync()
    return story


@pytest.fixture
def client(told: Story) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=told.ledger)) as test_client:
        yield test_client


def day_of(story: Story, days_ago: int) -> date:
    return story.world.clock.date() - timedelta(days=days_ago)


def km(account: str, quantity: int, day: date) -> PointRecord:
    return PointRecord(account, quantity, subject_commitment("account_day", account, day.isoformat()))


def body_of(records: list[PointRecord]) -> dict[str, Any]:
    return {"records": [{"account_id": r.account_id, "quantity": r.quantity, "subject": r.subject} for r in records]}


def signed(
    client: TestClient,
    method: str,
    path: str,
    key: PrivateKey,
    *,
    content: bytes | None = None,
    params: dict[str, Any] | None = None,
    digest: bool = True,
) -> httpx.Response:
    headers = {} if content is None else {"content-type": "application/json"}
    request = client.build_request(method, path, params=params, content=content, headers=headers)
    sign_request(request, key, body=content if digest else None)
    response: httpx.Response = client.send(request)
    return response


def put(
    client: TestClient, batch_id: str, records: list[PointRecord] | dict[str, Any], offset: int, who: str = "bike-co"
) -> httpx.Response:
    document = records if isinstance(records, dict) else body_of(records)
    return signed(
        client,
        "PUT",
        f"/v1/points/batches/{batch_id}/records",
        seeded_key(who),
        content=json.dumps(document).encode(),
        params={"offset": offset},
    )


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    for word in words:
        assert word in body["detail"], body
    return body


def snapshot(story: Story) -> tuple[int, list[Any], list[Any]]:
    """The log's size and every upload and record row: what a refusal must leave as it was."""
    with story.ledger.engine.connect() as conn:
        uploads = [tuple(r) for r in conn.execute(text("SELECT * FROM point_uploads ORDER BY batch_id"))]
        records = [tuple(r) for r in conn.execute(text("SELECT * FROM point_records ORDER BY batch_id, position"))]
    return story.ledger.size(), uploads, records


def attested(story: Story, client: TestClient, batch_id: str, records: list[PointRecord], day: date) -> int:
    """Upload `records` over HTTP, then attest them with a real points.attest; the entry's index."""
    ok(put(client, batch_id, records, 0))
    receipt = story.submit("bike-co", attest(story.world, "bike-co", batch_id, records, day))
    return receipt.index


# --- uploads ---------------------------------------------------------------------------------------------


def test_a_provider_uploads_in_chunks_and_attests(client: TestClient, told: Story) -> None:
    day = day_of(told, 2)
    records = [km(A1, 10, day), km(A2, 30, day)]
    assert ok(put(client, "b-1", records[:1], 0)) == {"batch_id": "b-1", "uploaded": 1}
    assert ok(put(client, "b-1", records[1:], 1)) == {"batch_id": "b-1", "uploaded": 2}
    own = ok(signed(client, "GET", "/v1/points/batches/b-1/records", seeded_key("bike-co")))
    assert (own["provider"], own["attested"], own["count"]) == ("bike-co", False, 2)
    problem(client.get("/v1/points/batches/b-1"), 404, "b-1")  # uploaded is not attested
    # The ledger reads the records uploaded over HTTP as the entry's attachment (the world, its own copy).
    index = told.submit("bike-co", attest(told.world, "bike-co", "b-1", records, day)).index
    public = ok(client.get("/v1/points/batches/b-1"))
    assert public["root"] == batch_root("b-1", records).hex()
    assert (public["count"], public["total_quantity"], public["attested_at"]) == (2, 40, index)
    assert public["points_awarded"] == 1_200 + 2_000
    assert "records" not in public  # no per-record data in public
    assert A1 not in json.dumps(public)
    for reader in ("bike-co", "authority", "auditor"):
        body = ok(signed(client, "GET", "/v1/points/batches/b-1/records", seeded_key(reader)))
        assert body["attested"] is True
        assert [(r["position"], r["account_id"], r["quantity"]) for r in body["records"]] == [(0, A1, 10), (1, A2, 30)]


def test_a_provider_discards_an_unattested_upload(client: TestClient, told: Story) -> None:
    day = day_of(told, 1)
    ok(put(client, "b-1", [km(A1, 1, day), km(A2, 2, day)], 0))
    body = ok(signed(client, "DELETE", "/v1/points/batches/b-1/records", seeded_key("bike-co")))
    assert body == {"batch_id": "b-1", "discarded": 2}
    assert snapshot(told)[1:] == ([], [])
    ok(put(client, "b-1", [km(A1, 5, day)], 0))  # and starts again at 0


def test_an_unsigned_upload_is_told_to_sign_the_digest(client: TestClient, told: Story) -> None:
    before = snapshot(told)
    response = client.put(
        "/v1/points/batches/b-1/records", params={"offset": 0}, json=body_of([km(A1, 1, day_of(told, 1))])
    )
    problem(response, 401, "RFC 9421", "content-digest")
    assert response.headers["accept-signature"] == ACCEPT_SIGNATURE_WITH_BODY
    problem(client.delete("/v1/points/batches/b-1/records"), 401, "RFC 9421")
    assert snapshot(told) == before


def test_an_upload_without_a_matching_digest_is_refused(client: TestClient, told: Story) -> None:
    before = snapshot(told)
    content = json.dumps(body_of([km(A1, 1, day_of(told, 1))])).encode()
    path, key = "/v1/points/batches/b-1/records", seeded_key("bike-co")
    # Signed as a read (no Content-Digest): the body is not covered.
    no_digest = signed(client, "PUT", path, key, content=content, params={"offset": 0}, digest=False)
    problem(no_digest, 401, "Content-Digest", "sha-256")
    # Signed with the digest, then the body swapped under it.
    request = client.build_request("PUT", path, params={"offset": 0}, content=content)
    sign_request(request, key, body=content)
    swapped = client.build_request(
        "PUT", path, params={"offset": 0}, content=content.replace(b'"quantity": 1', b'"quantity": 9')
    )
    for name in ("signature-input", "signature", "content-digest"):
        swapped.headers[name] = request.headers[name]
    problem(client.send(swapped), 401, "does not verify", "Content-Digest")
    # A digest header that the signature does not cover.
    uncovered = client.build_request("PUT", path, params={"offset": 0}, content=content)
    sign_request(uncovered, key)
    uncovered.headers["content-digest"] = request.headers["content-digest"]
    problem(client.send(uncovered), 401, "does not verify")
    assert snapshot(told) == before


@pytest.mark.parametrize("who", ["authority", "auditor", "tianfu-app", "buyer"])
def test_only_data_providers_upload_or_discard(client: TestClient, told: Story, who: str) -> None:
    day = day_of(told, 1)
    ok(put(client, "b-1", [km(A1, 1, day)], 0))
    before = snapshot(told)
    body = problem(put(client, "b-2", [km(A1, 1, day)], 0, who=who), 403, who, "data_provider")
    assert body["type"] == "/problems/forbidden"
    problem(signed(client, "DELETE", "/v1/points/batches/b-1/records", seeded_key(who)), 403, who)
    assert snapshot(told) == before


def test_a_wrong_offset_says_where_to_resume(client: TestClient, told: Story) -> None:
    day = day_of(told, 1)
    ok(put(client, "b-1", [km(A1, 1, day)], 0))
    before = snapshot(told)
    for offset in (0, 2):  # the chunk sent twice, one lost
        body = problem(put(client, "b-1", [km(A2, 1, day)], offset), 409, "starts at 1")
        assert body["type"] == "/problems/conflict"
        assert body["uploaded"] == 1  # where to resume, for a client that does not parse `detail`
    problem(put(client, "b-1", [km(A2, 1, day)], -1), 422, "offset")
    assert snapshot(told) == before


def test_an_attested_batch_or_another_providers_id_is_a_conflict(client: TestClient, told: Story) -> None:
    day = day_of(told, 1)
    attested(told, client, "b-1", [km(A1, 1, day)], day)
    before = snapshot(told)
    assert "uploaded" not in problem(put(client, "b-1", [km(A2, 1, day)], 1), 409, "attested")
    problem(signed(client, "DELETE", "/v1/points/batches/b-1/records", seeded_key("bike-co")), 409, "attested")
    problem(put(client, "b-1", [km(A2, 1, day)], 0, who="metro-co"), 409, "another provider")
    problem(signed(client, "DELETE", "/v1/points/batches/b-1/records", seeded_key("metro-co")), 409, "no upload")
    problem(signed(client, "DELETE", "/v1/points/batches/b-9/records", seeded_key("bike-co")), 409, "no upload b-9")
    assert snapshot(told) == before


def _record(**changes: Any) -> dict[str, Any]:
    return {"account_id": A1, "quantity": 1, "subject": "ab" * 32} | changes


@pytest.mark.parametrize(
    ("document", "words"),
    [
        ({"records": []}, ["at least 1"]),
        ({}, ["records"]),
        ({"records": [_record()], "extra": 1}, ["extra"]),
        ({"records": [_record(quantity=0)]}, ["greater than or equal to 1"]),
        ({"records": [_record(quantity=True)]}, ["integer"]),
        ({"records": [_record(quantity="1")]}, ["integer"]),
        ({"records": [_record(quantity=10**9 + 1)]}, ["less than or equal"]),
        ({"records": [_record(subject="AB" * 32)]}, ["pattern"]),
        ({"records": [_record(subject="ab" * 31)]}, ["pattern"]),
        ({"records": [_record(account_id="PA1")]}, ["pattern"]),
        ({"records": [_record(note="x")]}, ["note"]),
        ({"records": [_record()] * 10_001}, ["at most 10000"]),
    ],
)
def test_a_malformed_chunk_is_refused(
    client: TestClient, told: Story, document: dict[str, Any], words: list[str]
) -> None:
    before = snapshot(told)
    body = problem(put(client, "b-1", document, 0), 422, *words)
    assert body["type"] == "/problems/validation-error"
    assert snapshot(told) == before


@pytest.mark.parametrize("content", [b"not json", b'{"records": [], "records": []}', b"[1]", b"\xff"])
def test_a_body_that_is_not_a_records_object_is_refused(client: TestClient, told: Story, content: bytes) -> None:
    before = snapshot(told)
    key = seeded_key("bike-co")
    response = signed(client, "PUT", "/v1/points/batches/b-1/records", key, content=content, params={"offset": 0})
    problem(response, 422)
    assert snapshot(told) == before


def test_a_full_chunk_of_ten_thousand_records_is_accepted(client: TestClient, told: Story) -> None:
    records = [PointRecord(A1, 1 + i, f"{i:064x}") for i in range(10_000)]
    assert ok(put(client, "b-big", records, 0))["uploaded"] == 10_000


# --- private reads ---------------------------------------------------------------------------------------


def test_batch_records_are_for_the_provider_the_authority_and_auditors(client: TestClient, told: Story) -> None:
    day = day_of(told, 1)
    ok(put(client, "b-1", [km(A1, 1, day)], 0))
    size = told.ledger.size()
    for who in ("metro-co", "tianfu-app", "buyer"):
        problem(signed(client, "GET", "/v1/points/batches/b-1/records", seeded_key(who)), 403, who, "b-1")
        # An unknown batch is refused alike: a refusal does not tell whether a batch exists.
        problem(signed(client, "GET", "/v1/points/batches/b-9/records", seeded_key(who)), 403, who, "b-9")
    problem(signed(client, "GET", "/v1/points/batches/b-9/records", seeded_key("authority")), 404, "b-9")
    problem(client.get("/v1/points/batches/b-1/records"), 401, "RFC 9421")
    problem(client.get("/v1/points/batches/b-9"), 404, "b-9")
    assert told.ledger.size() == size


def test_an_account_is_read_by_its_operator_the_authority_and_auditors(client: TestClient, told: Story) -> None:
    day = day_of(told, 2)
    attested(told, client, "b-1", [km(A1, 10, day), km(A2, 30, day)], day)
    month = day.strftime("%Y-%m")
    for reader in ("tianfu-app", "authority", "auditor"):
        body = ok(signed(client, "GET", f"/v1/points/accounts/{A2}", seeded_key(reader)))
        assert (body["account_id"], body["operator"], body["account_kind"]) == (A2, "tianfu-app", "citizen")
        assert body["totals"] == {"awarded": 2_000, "balance": 2_000, "redeemed": 0, "expired": 0, "clawed_back": 0}
        assert body["lots"] == [{"month": month, "points": 2_000}]
        assert body["redemptions"] == []
    fresh = ok(signed(client, "GET", f"/v1/points/accounts/{A3}", seeded_key("tianfu-app")))
    assert fresh["totals"]["awarded"] == 0
    assert fresh["lots"] == []


@pytest.mark.parametrize("who", ["other-app", "bike-co", "buyer"])
def test_anyone_else_is_forbidden_an_account(client: TestClient, told: Story, who: str) -> None:
    size = told.ledger.size()
    for path in (f"/v1/points/accounts/{A1}", f"/v1/points/accounts/{A1}/records", "/v1/points/accounts/PA0/records"):
        problem(signed(client, "GET", path, seeded_key(who)), 403, who)
    assert told.ledger.size() == size


def test_an_unknown_account_is_not_found_and_an_unsigned_read_is_401(client: TestClient) -> None:
    for path in ("/v1/points/accounts/PA00000000000000ff", "/v1/points/accounts/PA00000000000000ff/records"):
        problem(signed(client, "GET", path, seeded_key("authority")), 404, "PA00000000000000ff")
        problem(client.get(path), 401, "RFC 9421")


def test_an_accounts_records_verify_offline_up_to_the_entry(client: TestClient, told: Story) -> None:
    first, second = day_of(told, 3), day_of(told, 2)
    one = attested(told, client, "b-1", [km(A2, 3, first), km(A1, 10, first)], first)
    records = [km(A1, 4, second), km(A2, 5, second)]
    two = attested(told, client, "b-2", records, second)
    ok(put(client, "b-3", [km(A1, 7, day_of(told, 1))], 0))  # uploaded, not attested: not listed
    body = ok(signed(client, "GET", f"/v1/points/accounts/{A1}/records", seeded_key("tianfu-app")))
    items = body["items"]
    checkpoint = opened_checkpoint(client).checkpoint
    assert [(i["batch_id"], i["position"], i["attested_at"], i["count"]) for i in items] == [
        ("b-1", 1, one, 2),
        ("b-2", 0, two, 2),
    ]
    for item in items:
        record = PointRecord(item["account_id"], item["quantity"], item["subject"])
        proof = [bytes.fromhex(node) for node in item["proof"]]
        verify_record(
            batch_id=item["batch_id"],
            position=item["position"],
            record=record,
            count=item["count"],
            proof=proof,
            root=bytes.fromhex(item["root"]),
        )
        # The root is the one the entry at `attested_at` commits to, and that entry is in the signed checkpoint.
        index = item["attested_at"]
        (stored,) = client.get("/v1/log/entries", params={"start": index, "limit": 1}).json()["entries"]
        data = base64.b64decode(stored["leaf"])
        payload = decode_entry(data, index=index).body().payload
        assert isinstance(payload, PointsAttest)
        assert (payload.batch_id, payload.root, payload.count) == (item["batch_id"], item["root"], item["count"])
        inclusion = client.get("/v1/log/proof/inclusion", params={"index": index, "size": checkpoint.size}).json()
        verify_inclusion(
            leaf=leaf_hash(data),
            index=index,
            size=checkpoint.size,
            proof=[base64.b64decode(h) for h in inclusion["hashes"]],
            root=checkpoint.root_hash,
        )


# --- public reads ----------------------------------------------------------------------------------------


def test_the_rules_every_version_and_the_empty_scenes_and_offers(client: TestClient, told: Story) -> None:
    told.submit("authority", rule("bike-km", told.world.clock.date() + timedelta(days=1), version=2))
    rules = ok(client.get("/v1/points/rules"))
    assert [(r["rule_id"], r["version"]) for r in rules["items"]] == [("bike-km", 1), ("bike-km", 2)]
    assert rules["items"][0]["emission_factor_g"] == 120
    first = ok(client.get("/v1/points/rules", params={"limit": 1}))
    rest = ok(client.get("/v1/points/rules", params={"limit": 1, "cursor": first["next_cursor"]}))
    assert first["items"] + rest["items"] == rules["items"]
    assert rest["next_cursor"] is None
    assert ok(client.get("/v1/scenes")) == {"items": [], "next_cursor": None}
    assert ok(client.get("/v1/offers", params={"state": "active"})) == {"items": [], "next_cursor": None}
    problem(client.get("/v1/scenes/s-1"), 404, "s-1", "/v1/scenes")
    problem(client.get("/v1/offers/o-1"), 404, "o-1", "/v1/offers")
    problem(client.get("/v1/scenes", params={"state": "open"}), 422, "open")
    problem(client.get("/v1/points/rules", params={"cursor": "bm90"}), 400, "cursor")


def test_the_openapi_document_declares_the_routes_and_their_errors(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    paths = document["paths"]
    upload = paths["/v1/points/batches/{batch_id}/records"]
    assert {"401", "403", "409", "413", "422", "503"} <= set(upload["put"]["responses"])
    assert upload["put"]["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/RecordsChunk")
    assert "RecordsChunk" in document["components"]["schemas"]
    for path in ("/v1/points/accounts/{account_id}", "/v1/points/accounts/{account_id}/records"):
        assert PROBLEM in paths[path]["get"]["responses"]["403"]["content"]
    for path in ("/v1/points/rules", "/v1/scenes", "/v1/scenes/{scene_id}", "/v1/offers", "/v1/offers/{offer_id}"):
        assert "get" in paths[path]
