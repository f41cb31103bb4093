"""The rules of the carbon-points routes: who may upload a batch's records and who may read them.

A data provider uploads a batch's records in chunks before it signs the batch's `points.attest`; each
upload is a signed request (RFC 9421) whose signature covers a digest of its body (RFC 9530). The records
stay private: a batch's are read by its provider, the authority and auditors; an account's by its
operator, the authority and auditors, each with the inclusion proof that ties it to the attested root.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection

from ledger.errors import ConflictError, UploadOffsetError
from ledger.points_batch import PointRecord, record_proof
from ledger.storage import store
from ledger.transactions import MAX_ATTESTED_RECORDS, Role
from registry.accounts import service as accounts
from registry.accounts.service import READERS
from registry.accounts.signatures import RequestMessage, SignedBy
from registry.errors import Forbidden, NotFound, RegistryError
from registry.points.schemas import (
    AccountRecordOut,
    AccountRecords,
    AttestationOut,
    BatchRecords,
    Discarded,
    LotOut,
    PointAccountOut,
    RecordOut,
    RecordsChunk,
    RedemptionOut,
    TotalsOut,
    Uploaded,
)
from registry.public import repository as public


class Conflict(RegistryError):
    def __init__(self, detail: str, *, uploaded: int | None = None) -> None:
        # `uploaded`: where a resumed upload starts (an extension member, RFC 9457), for a wrong offset only.
        extensions = {} if uploaded is None else {"uploaded": uploaded}
        super().__init__(409, "Conflict", detail, "conflict", extensions=extensions)


class InvalidRecords(RegistryError):
    def __init__(self, detail: str) -> None:
        super().__init__(422, "Invalid request", detail, "validation-error")


def authenticate_with_body(conn: Connection, message: RequestMessage, body: bytes) -> SignedBy:
    """The participant whose key signed the request and its body's digest; 401 otherwise."""
    return accounts.authenticate(conn, message, body=body)


def _roles(conn: Connection, participant_id: str) -> set[str]:
    row = public.get(conn, "participants", [participant_id])
    return set() if row is None else set(row["roles"])


def authorise_provider(conn: Connection, signer: SignedBy) -> None:
    """Only a data provider uploads or discards records (the key lookup already required it active)."""
    if Role.DATA_PROVIDER.value not in _roles(conn, signer.participant_id):
        raise Forbidden(
            f"{signer.participant_id} may not upload points records: only a participant with the "
            "data_provider role may; ask the authority to register the role",
            "forbidden",
        )


def parse_chunk(raw: bytes) -> RecordsChunk:
    """The upload's body, strictly: JSON without duplicate keys, 1 to 10,000 well-formed records; 422 otherwise."""

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise ValueError(f"duplicate key {key!r}")
            found[key] = value
        return found

    try:
        document = json.loads(raw, object_pairs_hook=unique)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidRecords(f'the body is not a JSON object {{"records": [...]}}: {exc}') from None
    try:
        return RecordsChunk.model_validate(document)
    except ValidationError as exc:
        parts = [f"body.{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()[:20]]
        raise InvalidRecords("; ".join(parts)) from None


def upload(conn: Connection, *, batch_id: str, provider: str, offset: int, chunk: RecordsChunk, now: str) -> Uploaded:
    """Append one chunk at `offset`; 409 with where to resume for a wrong offset, an attested or taken id."""
    if offset + len(chunk.records) > MAX_ATTESTED_RECORDS:
        raise InvalidRecords(
            f"a batch holds at most {MAX_ATTESTED_RECORDS} records; this chunk would end at record "
            f"{offset + len(chunk.records)}: split the day's records over several batches"
        )
    records = [PointRecord(r.account_id, r.quantity, r.subject) for r in chunk.records]
    try:
        count = store.upload_point_records(
            conn, batch_id=batch_id, provider=provider, offset=offset, records=records, now=now
        )
    except UploadOffsetError as exc:
        raise Conflict(str(exc), uploaded=exc.uploaded) from None
    except ConflictError as exc:
        raise Conflict(str(exc)) from None
    return Uploaded(batch_id=batch_id, uploaded=count)


def discard(conn: Connection, *, batch_id: str, provider: str) -> Discarded:
    """Delete an unattested upload of `provider`; 409 if it has none under that id or it is attested."""
    try:
        count = store.discard_point_upload(conn, batch_id=batch_id, provider=provider)
    except ConflictError as exc:
        raise Conflict(str(exc)) from None
    return Discarded(batch_id=batch_id, discarded=count)


def attestation(conn: Connection, batch_id: str) -> AttestationOut:
    """The attestation of `batch_id` (public: no records), or 404."""
    row = public.get(conn, "point_attestations", [batch_id])
    if row is None:
        raise NotFound(f"no attested points batch {batch_id!r} in the registry; its provider has not attested it")
    return AttestationOut.model_validate(row)


def batch_records(conn: Connection, signer: SignedBy, batch_id: str) -> BatchRecords:
    """Every uploaded record of a batch, for its provider, the authority or an auditor."""
    upload = store.point_upload(conn, batch_id)
    reader = bool(READERS & _roles(conn, signer.participant_id))
    # Anyone else is refused alike whether the batch exists or not: a refusal says nothing about it.
    if not reader and (upload is None or upload[0] != signer.participant_id):
        raise Forbidden(
            f"{signer.participant_id} may not read the records of batch {batch_id}: only its provider, the "
            "authority and auditors may",
            "forbidden",
        )
    records = store.read_point_records(conn, batch_id)
    if upload is None or records is None:
        raise NotFound(f"nothing is uploaded under points batch {batch_id!r}")
    provider, attested = upload
    return BatchRecords(
        batch_id=batch_id,
        provider=provider,
        attested=attested,
        count=len(records),
        records=[_record_out(position, record) for position, record in enumerate(records)],
    )


def _record_out(position: int, record: PointRecord) -> RecordOut:
    return RecordOut(position=position, account_id=record.account_id, quantity=record.quantity, subject=record.subject)


def authorise_account(conn: Connection, signer: SignedBy, account_id: str) -> dict[str, Any]:
    """The point account's row, if `signer` may read it: its operator, the authority or an auditor."""
    row = public.get(conn, "point_accounts", [account_id])
    allowed = (row is not None and row["operator"] == signer.participant_id) or bool(
        READERS & _roles(conn, signer.participant_id)
    )
    if not allowed:
        raise Forbidden(
            f"{signer.participant_id} may not read point account {account_id}: only its operator, the authority "
            "and auditors may",
            "forbidden",
        )
    if row is None:
        raise NotFound(f"no point account {account_id!r} in the registry")
    return row


def account(conn: Connection, row: dict[str, Any]) -> PointAccountOut:
    """A point account's totals, its lots oldest month first, and its redemptions oldest first."""
    account_id = row["id"]
    totals = public.get(conn, "point_totals", [account_id])
    lots = public.children(conn, "point_lots", "account_id", account_id)  # key order: by month
    orders = public.children(conn, "redemptions", "account_id", account_id)
    orders.sort(key=lambda order: (order["placed_at"], order["id"]))
    zero = {"awarded": 0, "balance": 0, "redeemed": 0, "expired": 0, "clawed_back": 0}
    return PointAccountOut(
        account_id=account_id,
        account_kind=row["account_kind"],
        operator=row["operator"],
        opened_at=row["opened_at"],
        totals=TotalsOut.model_validate(zero if totals is None else totals),
        lots=[LotOut.model_validate(lot) for lot in lots],
        redemptions=[RedemptionOut.model_validate(order) for order in orders],
    )


def account_records(conn: Connection, account_id: str) -> AccountRecords:
    """Every attested record of the account, each with what proves it offline up to the batch's entry."""
    batches: dict[str, tuple[dict[str, Any], Sequence[PointRecord]]] = {}
    items = []
    for batch_id, position, record in store.point_records_of(conn, account_id):
        if batch_id not in batches:
            found = public.get(conn, "point_attestations", [batch_id])
            uploaded = store.read_point_records(conn, batch_id)
            if found is None or uploaded is None:  # an attested upload always has both; never guess a proof
                continue
            batches[batch_id] = (found, uploaded)
        row, records = batches[batch_id]
        items.append(
            AccountRecordOut(
                batch_id=batch_id,
                position=position,
                account_id=record.account_id,
                quantity=record.quantity,
                subject=record.subject,
                rule_id=row["rule_id"],
                version=row["version"],
                day=row["day"],
                count=row["count"],
                root=row["root"],
                proof=[node.hex() for node in record_proof(batch_id, records, position)],
                attested_at=row["attested_at"],
            )
        )
    return AccountRecords(account_id=account_id, items=items)
