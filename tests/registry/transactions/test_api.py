"""``POST /v1/transactions``: signed transactions in over HTTP, receipts that verify, refusals as problems."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ledger.checkpoint import open_checkpoint
from ledger.errors import RuleViolation, StorageError
from ledger.keys import write_key_file
from ledger.ledger import Ledger, Receipt
from ledger.merkle import verify_inclusion
from ledger.note import NoteSigner, NoteVerifier
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.transactions import MethodologyPublish, Selection, SignedTransaction, Transfer
from registry.app import create_app
from registry.settings import Settings, ledger_from_settings
from registry.transactions.errors import violation_status
from registry.transactions.sequencer import Sequencer, SequencerClosed
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key

PROBLEM = "application/problem+json"
URL = "/v1/transactions"


def b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@pytest.fixture
def settings() -> Settings:
    # A longer group-commit window than production's, so the concurrency test batches reliably.
    return Settings(origin=ORIGIN, batch_wait_ms=20)


@pytest.fixture
def client(ledger: Ledger, settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, ledger=ledger)) as test_client:
        yield test_client


def post(client: TestClient, tx: SignedTransaction) -> httpx.Response:
    response: httpx.Response = client.post(URL, json=tx.to_json())
    return response


def assert_problem(response: httpx.Response, status: int, type_suffix: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("/problems/")
    assert problem["title"]
    assert problem["detail"]
    if type_suffix is not None:
        assert problem["type"].endswith("/" + type_suffix), problem
    return problem


def verify_receipt(receipt: dict[str, Any]) -> None:
    """The receipt's inclusion proof puts its leaf in the tree its signed checkpoint commits to."""
    verifier = NoteVerifier.from_vkey(log_signer().verifier_key())
    checkpoint = open_checkpoint(receipt["checkpoint"].encode(), verifier, origin=ORIGIN).checkpoint
    assert checkpoint.size == receipt["tree_size"] > receipt["index"]
    verify_inclusion(
        leaf=b64(receipt["leaf_hash"]),
        index=receipt["index"],
        size=checkpoint.size,
        proof=[b64(h) for h in receipt["inclusion_proof"]],
        root=checkpoint.root_hash,
    )


def send_pending(client: TestClient, story: Story) -> list[dict[str, Any]]:
    """Post, one by one, every transaction the world signed that the ledger does not have yet."""
    receipts = []
    for tx, _ in story.world.log[story.ledger.size() :]:
        response = post(client, tx)
        assert response.status_code == 201, response.text
        receipt: dict[str, Any] = response.json()
        assert receipt["duplicate"] is False
        assert receipt["outcome"]["kind"] == tx.body.kind
        verify_receipt(receipt)
        receipts.append(receipt)
    return receipts


def issued(client: TestClient, story: Story) -> str:
    """Participants, methodology, a registered project and an issuance of 1150 units to ``owner``."""
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    send_pending(client, story)
    return project


def checkpoint_count(ledger: Ledger) -> int:
    with read_transaction(ledger.engine) as conn:
        return len(list(store.iter_checkpoints(conn)))


# --- the story over HTTP ------------------------------------------------------------------------------


def test_story_over_http_every_receipt_verifies(client: TestClient, story: Story) -> None:
    start = story.ledger.size()
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    story.world.transfer("owner", "buyer", 100)
    receipts = send_pending(client, story)
    assert [r["index"] for r in receipts] == list(range(start, story.ledger.size()))
    kinds = [r["outcome"]["kind"] for r in receipts]
    assert kinds[:4] == ["participant.register"] * 4
    assert {"methodology.publish", "project.submit", "issuance.issue", "units.transfer"} <= set(kinds)
    submitted = next(r for r in receipts if r["outcome"]["kind"] == "project.submit")
    assert submitted["outcome"]["project_id"] == project
    assert story.ledger.state().balance("buyer") == 100
    assert story.ledger.state().balance("owner") == 1050


def test_resending_identical_transaction_returns_original_receipt(client: TestClient, story: Story) -> None:
    tx = story.world.log[story.ledger.size()][0]
    first = post(client, tx)
    assert first.status_code == 201
    size = story.ledger.size()
    again = post(client, tx)
    assert again.status_code == 200, again.text
    receipt = again.json()
    assert receipt["duplicate"] is True
    assert receipt["index"] == first.json()["index"]
    assert receipt["leaf_hash"] == first.json()["leaf_hash"]
    assert receipt["outcome"] is None
    verify_receipt(receipt)
    assert story.ledger.size() == size


def test_nonce_reused_for_another_body_is_409(client: TestClient, story: Story) -> None:
    tx = story.world.log[story.ledger.size()][0]
    assert post(client, tx).status_code == 201
    size = story.ledger.size()
    other = story.world.sign_as(
        "authority",
        MethodologyPublish(code="CDCER-WIND", version="1.0", title="Wind", sector="energy", document_sha256=SHA),
        nonce=tx.body.nonce,
    )
    problem = assert_problem(post(client, other), 409, "nonce_reused")
    assert tx.body.nonce in problem["detail"]
    assert story.ledger.size() == size


def test_forged_signature_is_403_and_appends_nothing(client: TestClient, story: Story) -> None:
    tx = story.world.log[story.ledger.size()][0]
    size = story.ledger.size()
    forged = tx.to_json()
    forged["signature"] = base64.b64encode(seeded_key("mallory").sign(b"cdcer/transaction/v1\n" + tx.body_bytes))
    forged["signature"] = forged["signature"].decode()
    assert_problem(client.post(URL, json=forged), 403, "bad_signature")
    assert story.ledger.size() == size


def test_transfer_more_than_held_is_refused(client: TestClient, story: Story) -> None:
    issued(client, story)
    size = story.ledger.size()
    tx = story.world.sign_as("owner", Transfer(to="buyer", selection=Selection(quantity=1151)))
    problem = assert_problem(post(client, tx), 409, "insufficient_units")
    assert problem["title"] == "Conflict"
    assert story.ledger.size() == size


def test_actor_without_role_is_403(client: TestClient, story: Story) -> None:
    send_pending(client, story)
    tx = story.world.sign_as(
        "buyer", MethodologyPublish(code="CDCER-X", version="1.0", title="X", sector="energy", document_sha256=SHA)
    )
    assert_problem(post(client, tx), 403, "forbidden")


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("forbidden", 403),
        ("revoked_key", 403),
        ("conflict_of_interest", 403),
        ("not_found", 404),
        ("nonce_reused", 409),
        ("replay", 409),
        ("already_retired", 409),
        ("insufficient_units", 409),
        ("invalid_state", 409),
        ("wrong_origin", 422),
        ("stale_transaction", 422),
        ("some_future_rule", 422),
    ],
)
def test_violation_status_table(code: str, status: int) -> None:
    assert violation_status(code) == status


# --- malformed requests ---------------------------------------------------------------------------------


def _mutated(tx: SignedTransaction, change: str) -> bytes:
    value = tx.to_json()
    body = value["body"]
    if change == "unknown_top_field":
        value["extra"] = 1
    elif change == "unknown_body_field":
        body["colour"] = "green"
    elif change == "string_quantity":
        body["payload"]["selection"]["quantity"] = "10"
    elif change == "huge_quantity":
        body["payload"]["selection"]["quantity"] = 2**64 + 1
    elif change == "zero_quantity":
        body["payload"]["selection"]["quantity"] = 0
    elif change == "float_quantity":
        body["payload"]["selection"]["quantity"] = 1.5
    elif change == "unknown_kind":
        body["payload"]["kind"] = "units.teleport"
    elif change == "bad_signature_encoding":
        value["signature"] = "not base64!"
    elif change == "signature_not_string":
        value["signature"] = 7
    elif change == "not_an_object":
        return json.dumps([value]).encode()
    return json.dumps(value).encode()


@pytest.mark.parametrize(
    ("content", "status", "type_suffix"),
    [
        pytest.param(b'{"body": ', 400, "malformed-json", id="truncated-json"),
        pytest.param(b"\xff\xfe{}", 400, "malformed-json", id="invalid-utf8"),
        pytest.param(b'{"body": 1, "body": 2}', 400, "malformed-json", id="duplicate-key"),
        pytest.param(b'{"body": NaN}', 400, "malformed-json", id="nan"),
        pytest.param(b"", 400, "malformed-json", id="empty"),
        *(
            pytest.param(change, 422, "invalid-transaction", id=change)
            for change in (
                "unknown_top_field",
                "unknown_body_field",
                "string_quantity",
                "huge_quantity",
                "zero_quantity",
                "float_quantity",
                "unknown_kind",
                "bad_signature_encoding",
                "signature_not_string",
                "not_an_object",
            )
        ),
    ],
)
def test_malformed_requests_are_problems_and_append_nothing(
    client: TestClient, story: Story, content: bytes | str, status: int, type_suffix: str
) -> None:
    issued(client, story)
    size, checkpoints = story.ledger.size(), checkpoint_count(story.ledger)
    if isinstance(content, str):
        tx = story.world.sign_as("owner", Transfer(to="buyer", selection=Selection(quantity=10)))
        content = _mutated(tx, content)
    response = client.post(URL, content=content, headers={"content-type": "application/json"})
    assert_problem(response, status, type_suffix)
    assert (story.ledger.size(), checkpoint_count(story.ledger)) == (size, checkpoints)


def test_body_over_the_limit_is_413(ledger: Ledger) -> None:
    settings = Settings(origin=ORIGIN, max_body_bytes=1024)
    size = ledger.size()
    with TestClient(create_app(settings, ledger=ledger)) as client:
        response = client.post(URL, content=b" " * 1025, headers={"content-type": "application/json"})
        assert_problem(response, 413, "content-too-large")

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
            yield from (b" " * 512 for _ in range(4))

        streamed = client.post(URL, content=chunks(), headers={"content-type": "application/json"})
        assert_problem(streamed, 413, "content-too-large")
    assert ledger.size() == size


# --- configuration: read-only, key file, failures ---------------------------------------------------------


def test_without_key_or_ledger_the_registry_is_read_only(ledger: Ledger, story: Story) -> None:
    size = ledger.size()
    with TestClient(create_app(Settings(origin=ORIGIN), engine=ledger.engine)) as client:
        tx = story.world.log[size][0]
        problem = assert_problem(post(client, tx), 503, "read-only")
        assert problem["detail"] == "registry is read-only: no log signing key configured"
        assert client.get("/v1/log/checkpoint").status_code == 200
    assert ledger.size() == size


@pytest.mark.parametrize("passphrase", [None, "correct horse battery staple"])
def test_ledger_from_the_settings_key_file(
    ledger: Ledger, story: Story, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, passphrase: str | None
) -> None:
    key_file = tmp_path / "log.key"
    write_key_file(key_file, seeded_key("log"), passphrase=passphrase)
    if passphrase is None:
        monkeypatch.delenv("CDCER_LOG_KEY_PASSPHRASE", raising=False)
    else:
        monkeypatch.setenv("CDCER_LOG_KEY_PASSPHRASE", passphrase)
    settings = Settings(log_key_file=key_file)  # the origin comes from the database
    built = ledger_from_settings(settings, ledger.engine)
    assert built is not None
    assert built.signer.verifier_key() == log_signer().verifier_key()
    assert ledger_from_settings(Settings(), ledger.engine) is None
    with TestClient(create_app(settings, engine=ledger.engine)) as client:
        response = post(client, story.world.log[ledger.size()][0])
        assert response.status_code == 201, response.text
        verify_receipt(response.json())


def test_failed_batch_is_503_and_appends_nothing(ledger: Ledger, story: Story) -> None:
    # A process signing with another key than the registry's: the ledger refuses the whole batch.
    wrong = Ledger(ledger.engine, NoteSigner(ORIGIN, seeded_key("not-the-log-key").seed))
    size = ledger.size()
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=wrong)) as client:
        assert_problem(post(client, story.world.log[size][0]), 503, "storage-unavailable")
    assert ledger.size() == size


# --- the sequencer --------------------------------------------------------------------------------------


def test_concurrent_submissions_are_batched(client: TestClient, story: Story) -> None:
    issued(client, story)
    start = story.ledger.size()
    checkpoints = checkpoint_count(story.ledger)
    txs = [story.world.sign_as("owner", Transfer(to="buyer", selection=Selection(quantity=1))) for _ in range(40)]
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def worker(part: list[SignedTransaction]) -> None:
        for tx in part:
            response = post(client, tx)
            with lock:
                responses.append(response)

    threads = [threading.Thread(target=worker, args=(txs[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in responses] == [201] * 40, [r.text for r in responses if r.status_code != 201]
    receipts = [r.json() for r in responses]
    assert sorted(r["index"] for r in receipts) == list(range(start, start + 40))
    for receipt in receipts:
        verify_receipt(receipt)
    assert story.ledger.size() == start + 40
    assert checkpoint_count(story.ledger) - checkpoints < 40
    assert story.ledger.state().balance("buyer") == 40


class _FakeLedger:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.batches: list[int] = []

    def submit(self, txs: list[SignedTransaction], **_: object) -> list[Receipt | RuleViolation]:
        self.batches.append(len(txs))
        if self.error is not None:
            raise self.error
        return [RuleViolation("invalid_state", tx.body.nonce) for tx in txs]


def test_sequencer_fails_every_request_of_a_failed_batch(story: Story) -> None:
    fake = _FakeLedger(StorageError("database is down"))
    txs = [tx for tx, _ in story.world.log[1:4]]
    sequencer = Sequencer(fake, max_wait=0.05)  # type: ignore[arg-type]
    futures: list[Future[Receipt | RuleViolation]] = [sequencer.submit(tx) for tx in txs]
    with sequencer:
        for future in futures:
            with pytest.raises(StorageError, match="database is down"):
                future.result(timeout=5)
    assert fake.batches == [3]
    with pytest.raises(SequencerClosed):
        sequencer.submit(txs[0])


def test_sequencer_batches_up_to_max_batch_and_drains_on_close(story: Story) -> None:
    fake = _FakeLedger()
    txs = [tx for tx, _ in story.world.log[1:6]]
    sequencer = Sequencer(fake, max_batch=2, max_wait=0.05)  # type: ignore[arg-type]
    futures = [sequencer.submit(tx) for tx in txs]
    sequencer.start()
    sequencer.close()
    results = [f.result(timeout=5) for f in futures]
    assert [r.message for r in results if isinstance(r, RuleViolation)] == [tx.body.nonce for tx in txs]
    assert fake.batches == [2, 2, 1]


# --- the OpenAPI document -------------------------------------------------------------------------------


def test_openapi_declares_the_request_body_and_every_error(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    operation = document["paths"][URL]["post"]
    body_schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/SignedTransactionIn"}
    schemas = document["components"]["schemas"]
    signed = schemas["SignedTransactionIn"]
    assert set(signed["properties"]) == {"body", "signature"}
    assert signed["properties"]["body"]["$ref"] == "#/components/schemas/TransactionBody"
    mapping = schemas["TransactionBody"]["properties"]["payload"]["discriminator"]["mapping"]
    assert {"participant.register", "issuance.issue", "units.transfer", "units.retire", "claim.issue"} <= set(mapping)
    for ref in mapping.values():
        assert ref.removeprefix("#/components/schemas/") in schemas
    responses = operation["responses"]
    assert {"200", "201"} <= set(responses)
    for status in ("400", "403", "404", "409", "413", "422", "503"):
        assert list(responses[status]["content"]) == [PROBLEM], status
