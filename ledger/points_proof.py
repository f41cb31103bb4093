"""A holder's point record, proven offline: record -> batch root -> the signed `points.attest` entry ->
a signed checkpoint, from a self-contained proof bundle and the registry's verifier key alone.

A bundle (``cdcer/points-record-proof/v1``) is four answers of the registry's API, as they came: the
record (an item of ``GET /v1/points/accounts/{id}/records``), the attestation's entry (of ``GET
/v1/log/entries``), its inclusion proof (``GET /v1/log/proof/inclusion``) and the checkpoint (``GET
/v1/log/checkpoint``). `verify_bundle` checks them in that chain and says at which step one fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ledger.checkpoint import open_checkpoint
from ledger.encoding import b64decode, loads_strict
from ledger.errors import EncodingError, LedgerError, ProofError
from ledger.keys import PublicKey
from ledger.log import decode_entry
from ledger.merkle import leaf_hash, verify_inclusion
from ledger.note import NoteVerifier
from ledger.points_batch import MAX_QUANTITY, PointRecord, verify_record
from ledger.transactions import PointsAttest

ACCOUNT_PATTERN = r"^PA[0-9a-f]{16}$"
HEX64_PATTERN = r"^[0-9a-f]{64}$"

PROOF_FORMAT = "cdcer/points-record-proof/v1"
"""The `format` member of a record's proof bundle."""
MAX_BUNDLE_BYTES = 1024 * 1024


class BundleError(Exception):
    """A record's proof bundle does not verify; the message says which step and what was found."""


@dataclass(frozen=True, slots=True)
class VerifiedRecord:
    """What a bundle proved: the record, the batch and entry it is in, and the checkpoint that holds them."""

    record: PointRecord
    batch_id: str
    position: int
    count: int
    root: str
    rule_id: str
    version: int
    day: str
    entry: int
    provider: str
    origin: str
    checkpoint_size: int
    key_id: str


class _Record(BaseModel):
    """One record as `GET /v1/points/accounts/{id}/records` answers it (other members ignored)."""

    model_config = ConfigDict(frozen=True, strict=True)

    batch_id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
    position: Annotated[int, Field(ge=0)]
    account_id: Annotated[str, Field(pattern=ACCOUNT_PATTERN)]
    quantity: Annotated[int, Field(ge=1, le=MAX_QUANTITY)]
    subject: Annotated[str, Field(pattern=HEX64_PATTERN)]
    rule_id: str
    version: int
    day: str
    count: Annotated[int, Field(ge=1)]
    root: Annotated[str, Field(pattern=HEX64_PATTERN)]
    proof: list[Annotated[str, Field(pattern=HEX64_PATTERN)]]
    attested_at: Annotated[int, Field(ge=0)]


class _Entry(BaseModel):
    """The attestation's entry as `GET /v1/log/entries` answers it."""

    model_config = ConfigDict(frozen=True, strict=True)

    index: Annotated[int, Field(ge=0)]
    leaf: str
    leaf_hash: str | None = None


class _InclusionProof(BaseModel):
    """The entry's inclusion proof as `GET /v1/log/proof/inclusion` answers it."""

    model_config = ConfigDict(frozen=True, strict=True)

    index: Annotated[int, Field(ge=0)]
    size: Annotated[int, Field(ge=1)]
    hashes: list[str]


class _Bundle(BaseModel):
    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    format: Literal["cdcer/points-record-proof/v1"]
    record: _Record
    entry: _Entry
    inclusion_proof: _InclusionProof
    checkpoint: str


def verify_bundle(data: bytes, verifier: NoteVerifier) -> VerifiedRecord:
    """Verify a record's proof bundle offline with the registry's verifier; raise `BundleError` if it fails.

    (1) shape: a JSON object with `format`, `record`, `entry`, `inclusion_proof` and `checkpoint`;
    (2) checkpoint: signed by the registry's key (`ledger.checkpoint.open_checkpoint`);
    (3) inclusion: the entry's leaf is entry `index` of the checkpoint's tree (`ledger.merkle.verify_inclusion`);
    (4) entry: canonical, signed by the key it carries, for the checkpoint's registry, and the `points.attest`
        of the record's batch: the same batch id, count and root (and rule, version and day);
    (5) record: its leaf, by its proof, gives that root (`ledger.points_batch.verify_record`).
    Stops at the first failure. Nothing but `data` and `verifier` is read.
    """
    # (1) shape
    try:
        bundle = _Bundle.model_validate(loads_strict(data, what="bundle"))
    except EncodingError as exc:
        raise BundleError(str(exc)) from None
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "bundle"
        raise BundleError(f"bundle: {where}: {error['msg']}") from None
    record, entry_item, proof_item = bundle.record, bundle.entry, bundle.inclusion_proof
    # (2) checkpoint
    try:
        checkpoint = open_checkpoint(bundle.checkpoint.encode(), verifier).checkpoint
    except (LedgerError, UnicodeEncodeError) as exc:
        raise BundleError(f"checkpoint: {exc}") from None
    # (3) the entry's inclusion in the checkpoint's tree
    if entry_item.index != record.attested_at:
        raise BundleError(
            f"entry: the bundle's entry is {entry_item.index}, but the record's batch was attested at entry "
            f"{record.attested_at}"
        )
    where = f"entry {entry_item.index}"
    if (proof_item.index, proof_item.size) != (entry_item.index, checkpoint.size):
        raise BundleError(
            f"inclusion_proof: proves entry {proof_item.index} in a tree of size {proof_item.size}; expected entry "
            f"{entry_item.index} in the checkpoint's tree of size {checkpoint.size}"
        )
    try:
        leaf = b64decode(entry_item.leaf, what=f"{where}: leaf")
        hashes = [b64decode(h, what=f"inclusion_proof.hashes[{n}]", size=32) for n, h in enumerate(proof_item.hashes)]
        if entry_item.leaf_hash is not None and b64decode(entry_item.leaf_hash, what=f"{where}: leaf_hash") != bytes(
            leaf_hash(leaf)
        ):
            raise BundleError(f"{where}: its leaf_hash is not the hash of its leaf")
        verify_inclusion(
            leaf=leaf_hash(leaf), index=entry_item.index, size=checkpoint.size, proof=hashes, root=checkpoint.root_hash
        )
    except ProofError as exc:
        raise BundleError(f"{where}: not in the checkpoint's tree of size {checkpoint.size}: {exc}") from None
    except EncodingError as exc:
        raise BundleError(str(exc)) from None
    # (4) the entry: a points.attest of the record's batch, signed by the key it carries
    try:
        entry = decode_entry(leaf, index=entry_item.index)
        body = entry.body()
        signer = PublicKey(entry.public_key)
        if signer.key_id != body.key_id:
            raise BundleError(f"{where}: its transaction names key {body.key_id}, the entry carries {signer.key_id}")
        signer.verify(entry.signing_message(), entry.signature)
    except LedgerError as exc:
        raise BundleError(f"{where}: {str(exc).removeprefix(f'{where}: ')}") from None
    if body.origin != checkpoint.origin:
        raise BundleError(f"{where}: is for registry {body.origin!r}; the checkpoint is {checkpoint.origin!r}'s")
    attested = body.payload
    if not isinstance(attested, PointsAttest):
        raise BundleError(f"{where}: is a {body.kind}, not the points.attest of batch {record.batch_id}")
    for name, signed, stated in (
        ("batch id", attested.batch_id, record.batch_id),
        ("root", attested.root, record.root),
        ("count", attested.count, record.count),
        ("rule", attested.rule_id, record.rule_id),
        ("version", attested.version, record.version),
        ("day", attested.day.isoformat(), record.day),
    ):
        if signed != stated:
            raise BundleError(f"{where}: its points.attest says {name} {signed}, the record says {stated}")
    # (5) the record in its batch
    point = PointRecord(record.account_id, record.quantity, record.subject)
    try:
        verify_record(
            batch_id=record.batch_id,
            position=record.position,
            record=point,
            count=record.count,
            proof=[bytes.fromhex(h) for h in record.proof],
            root=bytes.fromhex(record.root),
        )
    except LedgerError as exc:
        raise BundleError(f"record: {exc}") from None
    return VerifiedRecord(
        record=point,
        batch_id=record.batch_id,
        position=record.position,
        count=record.count,
        root=record.root,
        rule_id=record.rule_id,
        version=record.version,
        day=record.day,
        entry=entry_item.index,
        provider=body.actor,
        origin=checkpoint.origin,
        checkpoint_size=checkpoint.size,
        key_id=f"{verifier.name}+{verifier.key_id.hex()}",
    )
