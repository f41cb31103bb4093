"""A holder's record proven offline from a bundle: record -> batch root -> signed entry -> signed checkpoint."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from ledger.encoding import b64encode
from ledger.ledger import Receipt
from ledger.note import NoteSigner, NoteVerifier
from ledger.points_batch import PointRecord, record_proof
from ledger.points_proof import PROOF_FORMAT, BundleError, verify_bundle
from ledger.storage import store
from ledger.storage.engine import read_transaction
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_audit import bike_riders, ridden_yesterday

VERIFIER = NoteVerifier.from_vkey(log_signer().verifier_key())


def attested(story: Story) -> tuple[list[PointRecord], Receipt]:
    """bike-co's batch b-1 of two citizens' rides yesterday, and the receipt of its attestation."""
    bike_riders(story)
    story.world.advance(timedelta(days=2))
    return ridden_yesterday(story)


def bundle_of(story: Story, records: list[PointRecord], receipt: Receipt, position: int) -> dict[str, Any]:
    """The bundle `cdcer points records --proof` writes, from the registry's own answers."""
    with read_transaction(story.ledger.engine) as conn:
        (stored,) = store.read_entries(conn, receipt.index, receipt.index + 1)
    record = records[position]
    attestation = story.world.state.attestations["b-1"]
    return {
        "format": PROOF_FORMAT,
        "record": {
            "batch_id": "b-1",
            "position": position,
            "account_id": record.account_id,
            "quantity": record.quantity,
            "subject": record.subject,
            "rule_id": "bike-km",
            "version": 1,
            "day": attestation.day,
            "count": len(records),
            "root": attestation.root,
            "proof": [node.hex() for node in record_proof("b-1", records, position)],
            "attested_at": receipt.index,
        },
        "entry": {"index": receipt.index, "leaf": b64encode(stored.data)},
        "inclusion_proof": {
            "index": receipt.index,
            "size": receipt.tree_size,
            "hashes": [b64encode(h) for h in receipt.inclusion_proof],
        },
        "checkpoint": receipt.checkpoint.decode(),
    }


def test_a_record_verifies_offline_from_its_bundle(story: Story) -> None:
    records, receipt = attested(story)
    for position, record in enumerate(records):
        verified = verify_bundle(json.dumps(bundle_of(story, records, receipt, position)).encode(), VERIFIER)
        assert (verified.record, verified.batch_id, verified.position) == (record, "b-1", position)
        assert (verified.entry, verified.provider, verified.checkpoint_size) == (
            receipt.index,
            "bike-co",
            receipt.tree_size,
        )


def _tampered(bundle: dict[str, Any], where: str, value: Any) -> dict[str, Any]:
    part, name = where.split(".")
    return {**bundle, part: {**bundle[part], name: value}}


@pytest.mark.parametrize(
    ("where", "value", "message"),
    [
        ("record.quantity", 40, "record: "),
        ("record.account_id", "PA00000000000000ff", "record: "),
        ("record.count", 3, "its points.attest says count 2, the record says 3"),
        ("record.root", "ab" * 32, "its points.attest says root"),
        ("record.attested_at", 1, "the record's batch was attested at entry 1"),
        ("inclusion_proof.hashes", [], "not in the checkpoint's tree"),
    ],
)
def test_a_tampered_bundle_says_which_step_fails(story: Story, where: str, value: Any, message: str) -> None:
    records, receipt = attested(story)
    bundle = _tampered(bundle_of(story, records, receipt, 0), where, value)
    with pytest.raises(BundleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        verify_bundle(json.dumps(bundle).encode(), VERIFIER)


def test_another_registrys_key_refuses_the_checkpoint(story: Story) -> None:
    records, receipt = attested(story)
    other = NoteVerifier.from_vkey(NoteSigner(ORIGIN, seeded_key("impostor").seed).verifier_key())
    with pytest.raises(BundleError, match="^checkpoint: "):
        verify_bundle(json.dumps(bundle_of(story, records, receipt, 0)).encode(), other)


def test_another_entry_than_the_attestation_is_refused(story: Story) -> None:
    records, receipt = attested(story)
    bundle = bundle_of(story, records, receipt, 0)
    earlier = story.receipts[receipt.index - 1]  # the last consent: a genuine entry, of another kind
    with read_transaction(story.ledger.engine) as conn:
        (stored,) = store.read_entries(conn, earlier.index, earlier.index + 1)
    bundle["record"] = {**bundle["record"], "attested_at": earlier.index}
    bundle["entry"] = {"index": earlier.index, "leaf": b64encode(stored.data)}
    bundle["inclusion_proof"] = {
        "index": earlier.index,
        "size": earlier.tree_size,
        "hashes": [b64encode(h) for h in earlier.inclusion_proof],
    }
    bundle["checkpoint"] = earlier.checkpoint.decode()
    with pytest.raises(BundleError, match="is a points.consent, not the points.attest of batch b-1"):
        verify_bundle(json.dumps(bundle).encode(), VERIFIER)
