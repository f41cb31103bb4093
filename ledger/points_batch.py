"""The records behind one attested points batch: their leaves, the batch root, and a holder's proof.

A data provider attests one day of activity under a rule as one batch: per-account daily records of an
activity quantity and a subject commitment. The records stay off the public log (they say when a
pseudonymous account was active); the `points.attest` entry commits to them with the RFC 6962 Merkle
tree hash of their leaves. A holder given its record and the proof of its leaf checks, offline, that the
record is in the batch (record -> batch root), and with the entry's inclusion proof that the batch is in
the log (batch -> checkpoint).

A leaf binds the batch and the record's position, so a proof cannot be replayed in another batch:

    cdcer/points-record/v1\\n<batch id>\\n<position>\\n<account id>\\n<quantity>\\n<subject>

The subject commitment names what a record rewards (an account's day, a vehicle's day, a meter's month)
so that one subject is rewarded at most once across providers: two providers reporting the same vehicle
on the same day give the same commitment. It is SHA-256 over the subject's kind, its identifier and its
period; for ``account_day`` subjects the ledger computes it from the record's own account and day.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ledger.errors import EncodingError
from ledger.merkle import Frontier, Hash, MemoryNodeStore, inclusion_proof, leaf_hash, root_from_inclusion_proof

LEAF_PREFIX = b"cdcer/points-record/v1\n"
SUBJECT_PREFIX = b"cdcer/points-subject/v1\n"
MAX_QUANTITY = 10**9
"""The most activity units one account's record may carry for one day."""


@dataclass(frozen=True, slots=True)
class PointRecord:
    """One account's activity for the batch's day: a quantity of the rule's activity unit, and its subject."""

    account_id: str
    quantity: int
    subject: str  # 64 lowercase hex: `subject_commitment`


def subject_commitment(subject_kind: str, identifier: str, period: str) -> str:
    """The commitment to one rewardable subject: `identifier` (an account id, a vehicle's plate, a meter's
    number, as the provider's rule defines it) in `period` (``YYYY-MM-DD``, or ``YYYY-MM`` for meters)."""
    text = f"{subject_kind}\n{identifier.strip().upper()}\n{period}".encode()
    return hashlib.sha256(SUBJECT_PREFIX + text).hexdigest()


def subject_period(subject_kind: str, day: date) -> str:
    """The period a subject of this kind is rewarded once in: the day, or the month for meters."""
    return day.strftime("%Y-%m") if subject_kind == "meter_month" else day.isoformat()


def leaf_data(batch_id: str, position: int, record: PointRecord) -> bytes:
    """The bytes of one record's leaf."""
    return LEAF_PREFIX + f"{batch_id}\n{position}\n{record.account_id}\n{record.quantity}\n{record.subject}".encode()


def record_leaves(batch_id: str, records: Sequence[PointRecord]) -> list[Hash]:
    """The leaf hashes of a batch's records, in order."""
    return [leaf_hash(leaf_data(batch_id, position, record)) for position, record in enumerate(records)]


def batch_root(batch_id: str, records: Sequence[PointRecord]) -> bytes:
    """The Merkle tree hash over a batch's records (what `points.attest` commits to as ``root``)."""
    frontier = Frontier.empty()
    for leaf in record_leaves(batch_id, records):
        frontier.append(leaf)
    return bytes(frontier.root())


def record_proof(batch_id: str, records: Sequence[PointRecord], position: int) -> list[bytes]:
    """The inclusion proof of record `position` in its batch's tree."""
    if not 0 <= position < len(records):
        raise ValueError(f"batch {batch_id} has {len(records)} records; there is no record {position}")
    store = MemoryNodeStore()
    frontier = Frontier.empty()
    for leaf in record_leaves(batch_id, records):
        store.put_nodes(frontier.append(leaf))
    return [bytes(h) for h in inclusion_proof(store, position, len(records))]


def verify_record(
    *, batch_id: str, position: int, record: PointRecord, count: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that `record` is record `position` of the batch whose tree of `count` records has `root`."""
    leaf = leaf_hash(leaf_data(batch_id, position, record))
    found = root_from_inclusion_proof(leaf=leaf, index=position, size=count, proof=proof)
    if bytes(found) != bytes(root):
        raise EncodingError(f"record {position} of batch {batch_id} is not in the batch the log attests")
