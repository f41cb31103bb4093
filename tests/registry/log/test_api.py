"""The log's HTTP endpoints: what a verifier fetches checks out with nothing but the verifier key."""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from ledger.checkpoint import CosignatureSigner, SignedCheckpoint, open_checkpoint, verify_cosignatures
from ledger.ledger import Ledger
from ledger.merkle import leaf_hash, verify_consistency, verify_inclusion
from ledger.note import NoteVerifier
from ledger.storage import store
from ledger.storage.engine import read_transaction, write_transaction
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN

PROBLEM = "application/problem+json"


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.fixture
def settings() -> Settings:
    return Settings(origin=ORIGIN)


@pytest.fixture
def full_ledger(story: Story) -> Ledger:
    """The founded ledger after the full story, one checkpoint per entry."""
    story.full_story()
    return story.ledger


@pytest.fixture
def client(full_ledger: Ledger, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, engine=full_ledger.engine, ledger=full_ledger)) as test_client:
        yield test_client


def opened_checkpoint(client: TestClient | httpx.Client) -> SignedCheckpoint:
    vkey = client.get("/v1/log/vkey").text
    response = client.get("/v1/log/checkpoint")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    return open_checkpoint(response.content, NoteVerifier.from_vkey(vkey), origin=ORIGIN)


def assert_problem(response: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert problem["title"]
    for word in words:
        assert word in problem["detail"]
    return problem


def test_vkey_is_the_log_signers(client: TestClient) -> None:
    response = client.get("/v1/log/vkey")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == log_signer().verifier_key()


def test_checkpoint_is_the_latest_signed_note_byte_for_byte(client: TestClient, full_ledger: Ledger) -> None:
    latest = full_ledger.latest_checkpoint()
    assert latest is not None
    signed = opened_checkpoint(client)
    assert client.get("/v1/log/checkpoint").content == latest.note
    assert signed.checkpoint.size == full_ledger.size() == latest.size
    assert signed.checkpoint.root_hash == latest.root_hash


def test_checkpoint_carries_stored_cosignatures(client: TestClient, full_ledger: Ledger) -> None:
    before = opened_checkpoint(client)
    witness = CosignatureSigner("witness.test/w1", bytes(range(32)))
    cosignature = witness.cosign(before.note.text, 1_700_000_000)
    with write_transaction(full_ledger.engine) as conn:
        store.insert_cosignature(conn, before.checkpoint.size, witness.name, cosignature.line(), 1_700_000_000)
    after = opened_checkpoint(client)
    assert after.note.text == before.note.text
    (cosigned,) = verify_cosignatures(after, [witness.verifier()])
    assert (cosigned.name, cosigned.timestamp) == (witness.name, 1_700_000_000)


def test_entries_carry_exact_leaves_and_hashes_and_page(client: TestClient, full_ledger: Ledger) -> None:
    size = full_ledger.size()
    assert size > 3
    whole = client.get("/v1/log/entries").json()
    assert whole["next"] is None
    assert [e["index"] for e in whole["entries"]] == list(range(size))
    with read_transaction(full_ledger.engine) as conn:
        stored = store.read_entries(conn, 0, size)
    for entry, kept in zip(whole["entries"], stored, strict=True):
        assert b64(entry["leaf"]) == kept.data
        assert b64(entry["leaf_hash"]) == leaf_hash(b64(entry["leaf"]))
        assert b64(entry["chain_hash"]) == kept.chain_hash

    pages, start = [], 0
    while True:
        page = client.get("/v1/log/entries", params={"start": start, "limit": 2}).json()
        pages.append(page["entries"])
        if page["next"] is None:
            break
        start = page["next"]
    assert [e for p in pages for e in p] == whole["entries"]
    assert all(len(p) <= 2 for p in pages)
    assert client.get("/v1/log/entries", params={"start": size}).json() == {"entries": [], "next": None}


def test_every_inclusion_proof_verifies_against_the_checkpoint(client: TestClient) -> None:
    checkpoint = opened_checkpoint(client).checkpoint
    entries = client.get("/v1/log/entries").json()["entries"]
    for entry in entries:
        response = client.get("/v1/log/proof/inclusion", params={"index": entry["index"], "size": checkpoint.size})
        assert response.status_code == 200
        proof = response.json()
        assert (proof["index"], proof["size"]) == (entry["index"], checkpoint.size)
        assert proof["leaf_hash"] == entry["leaf_hash"]
        verify_inclusion(
            leaf=leaf_hash(b64(entry["leaf"])),
            index=entry["index"],
            size=checkpoint.size,
            proof=[b64(h) for h in proof["hashes"]],
            root=checkpoint.root_hash,
        )


def test_consistency_proofs_between_checkpoints_verify(client: TestClient, full_ledger: Ledger) -> None:
    with read_transaction(full_ledger.engine) as conn:
        checkpoints = list(store.iter_checkpoints(conn))
    assert len(checkpoints) > 2
    newest = checkpoints[-1]
    for old in checkpoints:
        response = client.get("/v1/log/proof/consistency", params={"old": old.size, "new": newest.size})
        assert response.status_code == 200
        proof = response.json()
        assert (proof["old"], proof["new"]) == (old.size, newest.size)
        verify_consistency(
            old_size=old.size,
            new_size=newest.size,
            old_root=old.root_hash,
            new_root=newest.root_hash,
            proof=[b64(h) for h in proof["hashes"]],
        )


def test_inclusion_proof_at_an_older_checkpoint(client: TestClient, full_ledger: Ledger) -> None:
    with read_transaction(full_ledger.engine) as conn:
        older = list(store.iter_checkpoints(conn))[1]
    entry = client.get("/v1/log/entries", params={"limit": 1}).json()["entries"][0]
    proof = client.get("/v1/log/proof/inclusion", params={"index": 0, "size": older.size}).json()
    verify_inclusion(
        leaf=b64(entry["leaf_hash"]),
        index=0,
        size=older.size,
        proof=[b64(h) for h in proof["hashes"]],
        root=older.root_hash,
    )


@pytest.mark.parametrize(
    ("path", "params", "status", "words"),
    [
        ("/v1/log/proof/inclusion", {"index": 50, "size": "SIZE"}, 400, ["leaf index 50", "below"]),
        ("/v1/log/proof/inclusion", {"index": 0, "size": 10_000}, 400, ["size 10000", "beyond the log"]),
        ("/v1/log/proof/inclusion", {"index": 0, "size": 0}, 400, ["at least 1"]),
        ("/v1/log/proof/inclusion", {"index": -1, "size": 1}, 422, ["index", "greater than or equal to 0"]),
        ("/v1/log/proof/inclusion", {"size": 1}, 422, ["index", "required"]),
        ("/v1/log/proof/consistency", {"old": 3, "new": 2}, 400, ["old size 3 is larger than new size 2"]),
        ("/v1/log/proof/consistency", {"old": 0, "new": 2}, 400, ["at least 1"]),
        ("/v1/log/proof/consistency", {"old": 1, "new": 10_000}, 400, ["new size 10000", "beyond the log"]),
        ("/v1/log/entries", {"limit": 0}, 422, ["limit", "greater than or equal to 1"]),
        ("/v1/log/entries", {"limit": 1001}, 422, ["limit", "less than or equal to 1000"]),
        ("/v1/log/entries", {"start": "x"}, 422, ["start", "integer"]),
        ("/v1/log/nowhere", {}, 404, ["Not Found"]),
    ],
)
def test_errors_are_problem_details(
    client: TestClient, full_ledger: Ledger, path: str, params: dict[str, Any], status: int, words: list[str]
) -> None:
    params = {k: full_ledger.size() if v == "SIZE" else v for k, v in params.items()}
    assert_problem(client.get(path, params=params), status, *words)


def test_inclusion_proof_needs_a_checkpointed_size(story: Story, settings: Settings) -> None:
    story.full_story()
    story.world.transfer("owner", "organiser", 10)
    story.world.transfer("owner", "organiser", 20)
    story.sync(together=True)  # two entries, one checkpoint: the size between them was never signed
    size = story.ledger.size()
    with TestClient(create_app(settings, engine=story.ledger.engine, ledger=story.ledger)) as client:
        problem = assert_problem(
            client.get("/v1/log/proof/inclusion", params={"index": 0, "size": size - 1}),
            404,
            f"size {size - 1}",
            f"current log size {size}",
        )
        assert problem["type"].endswith("/no-checkpoint-at-size")
        assert client.get("/v1/log/proof/inclusion", params={"index": 0, "size": size}).status_code == 200


def test_an_unfounded_registry_has_no_checkpoint(engine: Engine, settings: Settings) -> None:
    with TestClient(create_app(settings, engine=engine)) as client:
        assert client.get("/healthz").json() == {"status": "ok", "log_size": 0}
        assert_problem(client.get("/v1/log/checkpoint"), 404, "not signed a checkpoint")
        assert_problem(client.get("/v1/log/vkey"), 404, "verifier key")
        assert client.get("/v1/log/entries").json() == {"entries": [], "next": None}


def test_healthz_reports_the_log_size(client: TestClient, full_ledger: Ledger) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "log_size": full_ledger.size()}


def test_openapi_declares_every_error_status(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    expected = {
        "/v1/log/checkpoint": {"404", "422", "503"},  # 422: an unknown query parameter (registry.query)
        "/v1/log/vkey": {"404", "422", "503"},
        "/v1/log/entries": {"422", "503"},
        "/v1/log/proof/inclusion": {"400", "404", "422", "503"},
        "/v1/log/proof/consistency": {"400", "422", "503"},
    }
    for path, statuses in expected.items():
        responses = document["paths"][path]["get"]["responses"]
        assert {s for s in responses if s[0] in "45"} == statuses, path
        for status in statuses:
            schema = responses[status]["content"][PROBLEM]["schema"]
            assert schema["$ref"].endswith("/ProblemDetails")
    problem = document["components"]["schemas"]["ProblemDetails"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live_url(full_ledger: Ledger, settings: Settings) -> Iterator[str]:
    """The service on a real socket, run by uvicorn in a background thread."""
    app = create_app(settings, engine=full_ledger.engine, ledger=full_ledger)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped before it started"
        assert time.monotonic() < deadline, "uvicorn did not start within 10 s"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_verifier_over_real_http(live_url: str) -> None:
    with httpx.Client(base_url=live_url, timeout=10) as http:
        checkpoint = opened_checkpoint(http).checkpoint
        page = http.get("/v1/log/entries", params={"start": 0, "limit": 1000}).json()
        assert len(page["entries"]) == checkpoint.size
        last = page["entries"][-1]
        assert b64(last["leaf_hash"]) == leaf_hash(b64(last["leaf"]))
        proof = http.get("/v1/log/proof/inclusion", params={"index": last["index"], "size": checkpoint.size}).json()
        verify_inclusion(
            leaf=b64(last["leaf_hash"]),
            index=last["index"],
            size=checkpoint.size,
            proof=[b64(h) for h in proof["hashes"]],
            root=checkpoint.root_hash,
        )
        assert_problem(http.get("/v1/log/proof/consistency", params={"old": 2, "new": 1}), 400, "larger")
