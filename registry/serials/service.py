"""A serial's history: the batch it belongs to, the blocks that hold it now, and every movement of it."""

from __future__ import annotations

from sqlalchemy import Connection, select

from ledger.errors import EncodingError
from ledger.serials import SerialRange, parse_block, parse_serial
from ledger.storage import store
from ledger.storage.tables import PROJECTIONS
from registry.errors import BadRequest, NotFound
from registry.public import repository
from registry.public.schemas import BatchOut, BlockOut
from registry.public.service import decode_key, encode_cursor
from registry.serials.schemas import MovementOut, SerialHistory


def parse(text: str) -> SerialRange:
    """One serial (``CDCER-P0007-2023-001-000042``) or a block (``…-000001-000500``) as a range."""
    try:
        batch, number = parse_serial(text)
        return SerialRange(batch, number, number)
    except EncodingError:
        pass
    try:
        return parse_block(text)
    except EncodingError:
        raise BadRequest(
            f"{text!r} is neither a serial (CDCER-<project>-<vintage>-<batch>-<serial>, e.g. "
            "CDCER-P0007-2023-001-000042) nor a serial block (e.g. CDCER-P0007-2023-001-000001-000500)",
            "invalid-serial",
        ) from None


def history(conn: Connection, text: str, *, cursor: str | None, limit: int) -> SerialHistory:
    """One page of the history of the serials `text` names, after `cursor`, at most `limit` movements.

    NotFound when its batch or serial numbers do not exist; BadRequest for a cursor this API did not hand
    out. The cursor carries the last movement's entry and first serial, which order a batch's movements.
    """
    serials = parse(text)
    after = None if cursor is None else decode_key(cursor, [int, int])
    batch = repository.get(conn, "batches", [serials.batch_id])
    if batch is None:
        raise NotFound(f"no batch {serials.batch_id!r} has been issued; list batches at /v1/batches", "batch-not-found")
    if serials.last > batch["quantity"]:
        raise NotFound(
            f"batch {serials.batch_id} holds serials 1 to {batch['quantity']}; {text} lies beyond them",
            "serial-not-found",
        )
    blocks = PROJECTIONS["unit_blocks"]
    in_batch = blocks.c.batch_id == serials.batch_id
    # A batch's blocks never overlap: the one holding `first` is the last to start at or before it, and the
    # rest start after it, so both are index ranges however many blocks the batch was split into.
    start = conn.execute(
        select(blocks.c.first).where(in_batch, blocks.c.first <= serials.first).order_by(blocks.c.first.desc()).limit(1)
    ).scalar_one_or_none()
    current = conn.execute(
        select(blocks)
        .where(in_batch, blocks.c.first.between(serials.first if start is None else start, serials.last))
        .order_by(blocks.c.first)
    )
    moves = store.movements_of_serials(
        conn, serials.batch_id, serials.first, serials.last, after=after, limit=limit + 1
    )
    next_cursor = None
    if len(moves) > limit:
        moves = moves[:limit]
        next_cursor = encode_cursor([moves[-1]["entry"], moves[-1]["first"]])
    return SerialHistory(
        serial=text,
        first=serials.first,
        last=serials.last,
        batch=BatchOut.model_validate(batch),
        blocks=[BlockOut.of(dict(row._mapping)) for row in current],
        history=[movement_out(row) for row in moves],
        next_cursor=next_cursor,
    )


def movement_out(row: dict[str, object]) -> MovementOut:
    """A stored movement (with its entry's ``accepted_at``) as the API shows it."""
    moved = SerialRange(str(row["batch_id"]), int(str(row["first"])), int(str(row["last"])))
    return MovementOut(
        entry=int(str(row["entry"])),
        time=str(row["accepted_at"]),
        action=str(row["action"]),
        block=str(moved),
        quantity=moved.quantity,
        from_holder=None if row["from_holder"] is None else str(row["from_holder"]),
        to_holder=None if row["to_holder"] is None else str(row["to_holder"]),
        ref=None if row["ref"] is None else str(row["ref"]),
    )
