"""POST /v1/log/cosignatures: only registered witnesses, only valid cosignatures of signed checkpoints, once."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from ledger.checkpoint import CosignatureSigner, SignedCheckpoint, verify_cosignatures
from ledger.ledger import Ledger
from ledger.note import NoteSignature, parse_note
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.transactions import WitnessRegister, WitnessRemove
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.registry.log.test_api import assert_problem, opened_checkpoint

TIME = 1_750_000_000


def witness(label: str) -> CosignatureSigner:
    return CosignatureSigner(f"witness.test/{label}", seeded_key(label).seed)


@pytest.fixture
def witnessed(story: Story) -> Ledger:
    """The full story, then the authority registers witnesses w1 and w2 (w2 later removed) and one more entry."""
    story.full_story()
    for label in ("w1", "w2"):
        story.submit("authority", WitnessRegister(vkey=witness(label).verifier_key()))
    story.submit("authority", WitnessRemove(name=witness("w2").name, reason="key compromised"))
    return story.ledger


@pytest.fixture
def client(witnessed: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), engine=witnessed.engine, ledger=witnessed)) as test_client:
        yield test_client


def submit(client: TestClient, size: int, line: str) -> httpx.Response:
    response: httpx.Response = client.post("/v1/log/cosignatures", json={"size": size, "cosignature": line})
    return response


def stored_lines(ledger: Ledger, size: int) -> list[str]:
    with read_transaction(ledger.engine) as conn:
        return store.cosignature_lines(conn, size)


def test_registered_witness_cosignature_is_accepted_and_served(client: TestClient, witnessed: Ledger) -> None:
    signed = opened_checkpoint(client)
    size = signed.checkpoint.size
    line = witness("w1").cosign(signed.note.text, TIME).line()
    response = client.post("/v1/log/cosignatures", json={"size": size, "cosignature": line})
    assert response.status_code == 201, response.text
    assert response.json() == {"size": size, "witness": "witness.test/w1", "timestamp": TIME}
    served = opened_checkpoint(client)
    assert served.note.text == signed.note.text
    (cosigned,) = verify_cosignatures(served, [witness("w1").verifier()])
    assert (cosigned.name, cosigned.timestamp) == ("witness.test/w1", TIME)
    assert stored_lines(witnessed, size) == [line]


def test_an_earlier_signed_checkpoint_may_be_cosigned(client: TestClient, witnessed: Ledger) -> None:
    with read_transaction(witnessed.engine) as conn:
        earlier = store.checkpoint_at(conn, 5)
    assert earlier is not None
    text = parse_note(earlier.note).text
    response = submit(client, 5, witness("w1").cosign(text, TIME).line())
    assert response.status_code == 201, response.text
    assert len(stored_lines(witnessed, 5)) == 1


def test_unknown_witness_is_forbidden(client: TestClient, witnessed: Ledger) -> None:
    signed = opened_checkpoint(client)
    stranger = witness("stranger")
    response = client.post(
        "/v1/log/cosignatures",
        json={"size": signed.checkpoint.size, "cosignature": stranger.cosign(signed.note.text, TIME).line()},
    )
    assert_problem(response, 403, "'witness.test/stranger' is not a registered witness", "witness.register")
    assert stored_lines(witnessed, signed.checkpoint.size) == []


def test_removed_witness_is_forbidden(client: TestClient, witnessed: Ledger) -> None:
    signed = opened_checkpoint(client)
    line = witness("w2").cosign(signed.note.text, TIME).line()
    response = client.post("/v1/log/cosignatures", json={"size": signed.checkpoint.size, "cosignature": line})
    assert_problem(response, 403, "witness 'witness.test/w2' was removed")


def test_registered_name_with_another_key_is_forbidden(client: TestClient, witnessed: Ledger) -> None:
    signed = opened_checkpoint(client)
    impostor = CosignatureSigner("witness.test/w1", seeded_key("impostor").seed)
    line = impostor.cosign(signed.note.text, TIME).line()
    response = client.post("/v1/log/cosignatures", json={"size": signed.checkpoint.size, "cosignature": line})
    assert_problem(response, 403, "is registered with key id", witness("w1").key_id.hex())
    assert stored_lines(witnessed, signed.checkpoint.size) == []


def test_signature_over_another_checkpoint_is_forbidden(client: TestClient, witnessed: Ledger) -> None:
    signed = opened_checkpoint(client)
    # A valid cosignature of the previous checkpoint, submitted for the latest size.
    with read_transaction(witnessed.engine) as conn:
        previous = store.checkpoint_at(conn, signed.checkpoint.size - 1)
    assert previous is not None
    line = witness("w1").cosign(parse_note(previous.note).text, TIME).line()
    response = client.post("/v1/log/cosignatures", json={"size": signed.checkpoint.size, "cosignature": line})
    assert_problem(response, 403, "does not verify for this checkpoint")
    assert stored_lines(witnessed, signed.checkpoint.size) == []


def test_tampered_signature_bytes_are_forbidden(client: TestClient) -> None:
    signed = opened_checkpoint(client)
    good = witness("w1").cosign(signed.note.text, TIME)
    flipped = bytes([good.signature[-1] ^ 1])
    bad = NoteSignature(good.name, good.key_id, good.signature[:-1] + flipped)
    response = client.post("/v1/log/cosignatures", json={"size": signed.checkpoint.size, "cosignature": bad.line()})
    assert_problem(response, 403, "does not verify")


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("witness.test/w1 AAAA", "does not start with an em dash"),
        ("— witness.test/w1", "no space between the key name and the signature"),
        ("— witness.test/w1 !!notbase64", "signature"),
        ("— witness.test/w1 AAAAAAAAAAAA", "expected 72"),
    ],
)
def test_malformed_line_is_a_bad_request(client: TestClient, line: str, words: str) -> None:
    signed = opened_checkpoint(client)
    response = client.post("/v1/log/cosignatures", json={"size": signed.checkpoint.size, "cosignature": line})
    assert_problem(response, 400, words)


def test_unsigned_size_is_not_found(client: TestClient, witnessed: Ledger) -> None:
    signed = opened_checkpoint(client)
    size = signed.checkpoint.size + 1
    line = witness("w1").cosign(signed.note.text, TIME).line()
    response = client.post("/v1/log/cosignatures", json={"size": size, "cosignature": line})
    assert_problem(response, 404, f"no checkpoint was signed at size {size}", f"the latest is {size - 1}")


def test_second_cosignature_of_a_size_conflicts_and_the_first_stays(client: TestClient, witnessed: Ledger) -> None:
    signed: SignedCheckpoint = opened_checkpoint(client)
    size = signed.checkpoint.size
    first = witness("w1").cosign(signed.note.text, TIME).line()
    assert submit(client, size, first).status_code == 201
    again = witness("w1").cosign(signed.note.text, TIME + 60).line()
    response = client.post("/v1/log/cosignatures", json={"size": size, "cosignature": again})
    assert_problem(response, 409, "already cosigned the checkpoint of size", "its first cosignature stands")
    assert stored_lines(witnessed, size) == [first]


def test_body_out_of_range_is_invalid(client: TestClient) -> None:
    response = client.post("/v1/log/cosignatures", json={"size": 0, "cosignature": "x"})
    assert_problem(response, 422, "size")
