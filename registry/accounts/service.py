"""Who may read an account, and what it holds and did: the rules behind the private account reads."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from ledger.keys import PublicKey
from ledger.storage.tables import PROJECTIONS
from ledger.transactions import Role
from registry.accounts import repository
from registry.accounts.schemas import AccountMovement, History, Holdings
from registry.accounts.signatures import (
    ACCEPT_SIGNATURE,
    ACCEPT_SIGNATURE_WITH_BODY,
    RequestMessage,
    SignatureRefused,
    SignedBy,
    verify_request,
)
from registry.errors import Forbidden, NotFound, Unauthorized
from registry.public import repository as public
from registry.public.schemas import BlockOut
from registry.public.service import decode_key, encode_cursor
from registry.serials.service import movement_out

# Besides the holder itself, who may read any account.
READERS = frozenset({Role.AUTHORITY.value, Role.AUDITOR.value})


def authenticate(conn: Connection, message: RequestMessage, *, body: bytes | None = None) -> SignedBy:
    """The participant whose registered, unrevoked key signed the request; 401 otherwise.

    With `body`, the signature must also cover a matching ``Content-Digest`` of it (RFC 9530)."""

    def lookup(key_id: str) -> tuple[str, bytes] | None:
        found = repository.signing_key(conn, key_id)
        if found is None:
            return None
        participant_id, public_key, status, revoked = found
        if revoked or status != "active":
            return None
        return participant_id, PublicKey.from_b64(public_key).raw

    try:
        return verify_request(message, lookup, body=body)
    except SignatureRefused as exc:
        raise Unauthorized(str(exc), ACCEPT_SIGNATURE if body is None else ACCEPT_SIGNATURE_WITH_BODY) from None


def authorise(conn: Connection, signer: SignedBy, account: str) -> dict[str, object]:
    """The account's participant row, if `signer` may read it: its holder, the authority or an auditor."""
    row = public.get(conn, "participants", [account])
    reader = public.get(conn, "participants", [signer.participant_id])
    allowed = reader is not None and (signer.participant_id == account or bool(READERS & set(reader["roles"])))
    if not allowed:
        raise Forbidden(
            f"{signer.participant_id} may not read account {account}: only its holder, the authority and auditors may",
            "account-read-forbidden",
        )
    if row is None:
        raise NotFound(f"no account {account!r} in the registry; list participants at /v1/participants")
    return row


def holdings(conn: Connection, account: str, *, cursor: str | None, limit: int) -> Holdings:
    """One page of the account's held blocks, with its whole balance."""
    row = public.get(conn, "participants", [account])
    assert row is not None
    after = None if cursor is None else decode_key(cursor, [str, int])
    rows = repository.held_blocks(conn, account, after=after, limit=limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = encode_cursor([rows[-1]["batch_id"], rows[-1]["first"]])
    blocks = PROJECTIONS["unit_blocks"]
    balance = conn.execute(
        select(func.coalesce(func.sum(blocks.c["last"] - blocks.c["first"] + 1), 0)).where(
            blocks.c.holder == account, blocks.c.state == "held"
        )
    ).scalar_one()
    return Holdings(
        account=account,
        balance=int(balance),
        frozen=bool(row["frozen"]),
        blocks=[BlockOut.of(r) for r in rows],
        next_cursor=next_cursor,
    )


def history(conn: Connection, account: str, *, cursor: str | None, limit: int) -> History:
    """One page of the movements into and out of the account, oldest first."""
    after = None if cursor is None else decode_key(cursor, [int, str, int])
    rows = repository.movements(conn, account, after=after, limit=limit + 1)
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([last["entry"], last["batch_id"], last["first"]])
    items = [
        AccountMovement(**movement_out(row).model_dump(), direction="in" if row["to_holder"] == account else "out")
        for row in rows
    ]
    return History(account=account, items=items, next_cursor=next_cursor)
