"""Private account reads, authenticated by RFC 9421 HTTP message signatures with participants' keys."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ledger.keys import PrivateKey
from ledger.transactions import KeyRevoke, ParticipantSuspend, Role
from registry.accounts.signatures import ACCEPT_SIGNATURE, sign_request
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN, seeded_key

PROBLEM = "application/problem+json"


@pytest.fixture
def told(story: Story) -> Story:
    story.full_story()
    story.world.register("auditor", [Role.AUDITOR])
    story.world.transfer("owner", "buyer", 25)
    story.sync()
    return story


@pytest.fixture
def client(told: Story) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=told.ledger)) as test_client:
        yield test_client


def signed_get(
    client: TestClient,
    path: str,
    key: PrivateKey,
    *,
    created: datetime | None = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    request = client.build_request("GET", path, params=params)
    sign_request(request, key, created=created)
    response: httpx.Response = client.send(request)
    return response


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


# --- who may read ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["owner", "authority", "auditor"])
def test_the_holder_the_authority_and_auditors_read_holdings(client: TestClient, told: Story, reader: str) -> None:
    body = ok(signed_get(client, "/v1/accounts/owner/holdings", seeded_key(reader)))
    state = told.ledger.state()
    assert body["account"] == "owner"
    assert body["balance"] == state.balance("owner") == 1150 - 300 - 25
    assert [b["block"] for b in body["blocks"]] == [str(b.range) for b in state.held_blocks("owner")]
    assert all(b["state"] == "held" and b["holder"] == "owner" for b in body["blocks"])
    assert body["frozen"] is False


@pytest.mark.parametrize("reader", ["buyer", "organiser", "verifier"])
def test_other_participants_are_forbidden(client: TestClient, told: Story, reader: str) -> None:
    for path in ("/v1/accounts/owner/holdings", "/v1/accounts/owner/history"):
        body = problem(signed_get(client, path, seeded_key(reader)), 403, reader, "owner")
        assert body["type"].endswith("/account-read-forbidden")


def test_an_unsigned_request_is_told_how_to_sign(client: TestClient) -> None:
    response = client.get("/v1/accounts/owner/holdings")
    body = problem(response, 401, "RFC 9421", "keyid")
    assert body["type"].endswith("/signature-required")
    assert response.headers["accept-signature"] == ACCEPT_SIGNATURE


def test_a_signature_for_another_request_does_not_verify(client: TestClient) -> None:
    # Signed for the owner's holdings, replayed against its history: the signed target URI differs.
    signed = client.build_request("GET", "/v1/accounts/owner/holdings")
    sign_request(signed, seeded_key("owner"))
    replayed = client.build_request("GET", "/v1/accounts/owner/history")
    replayed.headers["signature-input"] = signed.headers["signature-input"]
    replayed.headers["signature"] = signed.headers["signature"]
    problem(client.send(replayed), 401, "does not verify")


def test_a_forged_signature_does_not_verify(client: TestClient) -> None:
    request = client.build_request("GET", "/v1/accounts/owner/holdings")
    sign_request(request, seeded_key("owner"))
    label, value = request.headers["signature"].split("=", 1)
    raw = bytearray(base64.b64decode(value.strip(":")))
    raw[0] ^= 1
    request.headers["signature"] = f"{label}=:{base64.b64encode(bytes(raw)).decode()}:"
    problem(client.send(request), 401, "does not verify")


@pytest.mark.parametrize(
    ("signature_input", "signature"),
    [
        ("garbage", "cdcer=:AAAA:"),
        ('cdcer=("@method");created=1;keyid="x"', "cdcer=:AAAA:"),
        ('cdcer=("@method" "@authority" "@target-uri");keyid="x";tag="cdcer"', "cdcer=:AAAA:"),
        ('cdcer=("@method" "@authority" "@target-uri");created=1;keyid="x";tag="cdcer"', "cdcer=notbytes"),
    ],
)
def test_malformed_signature_headers_are_401_not_500(client: TestClient, signature_input: str, signature: str) -> None:
    response = client.get(
        "/v1/accounts/owner/holdings", headers={"Signature-Input": signature_input, "Signature": signature}
    )
    problem(response, 401)


def test_an_old_signature_is_refused(client: TestClient) -> None:
    stale = datetime.now(UTC) - timedelta(minutes=10)
    problem(signed_get(client, "/v1/accounts/owner/holdings", seeded_key("owner"), created=stale), 401, "age")


def test_a_key_of_no_participant_is_refused(client: TestClient) -> None:
    problem(signed_get(client, "/v1/accounts/owner/holdings", seeded_key("mallory")), 401, "not a registered")


def test_a_revoked_key_or_suspended_participant_is_refused(client: TestClient, told: Story) -> None:
    told.world.register("auditor2", [Role.AUDITOR])
    told.sync()
    assert signed_get(client, "/v1/accounts/owner/holdings", seeded_key("auditor2")).status_code == 200
    told.world.submit("authority", ParticipantSuspend(participant_id="auditor2", reason="investigation of the auditor"))
    told.world.submit(
        "authority", KeyRevoke(participant_id="auditor", key_id=seeded_key("auditor").key_id, reason="lost laptop")
    )
    told.sync()
    problem(signed_get(client, "/v1/accounts/owner/holdings", seeded_key("auditor2")), 401, "not a registered")
    problem(signed_get(client, "/v1/accounts/owner/holdings", seeded_key("auditor")), 401, "not a registered")


def test_an_unknown_account_is_not_found_for_the_authority(client: TestClient) -> None:
    problem(signed_get(client, "/v1/accounts/nobody/holdings", seeded_key("authority")), 404, "nobody")


# --- what the reads say -----------------------------------------------------------------------------------


def test_history_lists_every_movement_in_and_out(client: TestClient, told: Story) -> None:
    body = ok(signed_get(client, "/v1/accounts/organiser/history", seeded_key("organiser")))
    items = body["items"]
    assert [(m["action"], m["direction"]) for m in items] == [
        ("transferred", "in"),
        ("retired", "out"),
        ("claimed", "out"),
    ]
    received, retired, claimed = items
    assert (received["from_holder"], received["to_holder"], received["quantity"]) == ("owner", "organiser", 300)
    assert retired["quantity"] == claimed["quantity"] == 10
    assert body["next_cursor"] is None
    owner = ok(signed_get(client, "/v1/accounts/owner/history", seeded_key("owner")))["items"]
    assert [(m["action"], m["direction"], m["quantity"]) for m in owner] == [
        ("issued", "in", 1150),
        ("transferred", "out", 300),
        ("transferred", "out", 25),
    ]


def test_history_and_holdings_page_by_cursor(client: TestClient, told: Story) -> None:
    everything = ok(signed_get(client, "/v1/accounts/owner/history", seeded_key("owner")))["items"]
    walked: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 1} | ({} if cursor is None else {"cursor": cursor})
        page = ok(signed_get(client, "/v1/accounts/owner/history", seeded_key("owner"), params=params))
        walked += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
    # Make the organiser hold several blocks, then walk its holdings one block at a time.
    told.world.transfer("buyer", "organiser", 5)
    told.world.transfer("owner", "buyer", 1)
    told.world.transfer("buyer", "organiser", 1)
    told.sync()
    whole = ok(signed_get(client, "/v1/accounts/organiser/holdings", seeded_key("organiser")))
    blocks: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 1} | ({} if cursor is None else {"cursor": cursor})
        page = ok(signed_get(client, "/v1/accounts/organiser/holdings", seeded_key("organiser"), params=params))
        assert page["balance"] == whole["balance"]
        blocks += page["blocks"]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert blocks == whole["blocks"]
    assert sum(b["quantity"] for b in blocks) == whole["balance"] == 300 - 10 + 6


def test_a_bad_cursor_is_a_bad_request(client: TestClient) -> None:
    response = signed_get(client, "/v1/accounts/owner/history", seeded_key("owner"), params={"cursor": "bm90LWEta2V5"})
    problem(response, 400, "cursor")


def test_reads_append_nothing(client: TestClient, told: Story) -> None:
    size = told.ledger.size()
    for path in ("/v1/accounts/owner/holdings", "/v1/accounts/owner/history"):
        ok(signed_get(client, path, seeded_key("owner")))
    assert told.ledger.size() == size


def test_openapi_declares_the_errors(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/accounts/{account}/holdings", "/v1/accounts/{account}/history"):
        responses = paths[path]["get"]["responses"]
        assert {"200", "400", "401", "403", "404", "503"} <= set(responses)
        assert PROBLEM in responses["401"]["content"]
