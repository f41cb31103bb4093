"""Queries for one account: its held blocks and the movements in and out of it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, and_, or_, select

from ledger.storage.tables import PROJECTIONS, log_entries, unit_movements

Row = dict[str, Any]


def signing_key(conn: Connection, key_id: str) -> tuple[str, str, str, bool] | None:
    """(participant id, public key base64, participant status, revoked) of a key id, or None."""
    keys, participants = PROJECTIONS["participant_keys"], PROJECTIONS["participants"]
    row = conn.execute(
        select(keys.c.participant_id, keys.c.public_key, keys.c.revoked_at, participants.c.status)
        .join(participants, participants.c.id == keys.c.participant_id)
        .where(keys.c.key_id == key_id)
    ).first()
    if row is None:
        return None
    return row.participant_id, row.public_key, row.status, row.revoked_at is not None


def held_blocks(conn: Connection, holder: str, *, after: Sequence[Any] | None, limit: int) -> list[Row]:
    """Up to `limit` blocks `holder` holds, in (batch, first serial) order, after key `after`."""
    blocks = PROJECTIONS["unit_blocks"]
    where = [blocks.c.holder == holder, blocks.c.state == "held"]
    if after is not None:
        batch, first = after
        where.append(or_(blocks.c.batch_id > batch, and_(blocks.c.batch_id == batch, blocks.c.first > first)))
    query = select(blocks).where(*where).order_by(blocks.c.batch_id, blocks.c.first).limit(limit)
    return [dict(m) for m in conn.execute(query).mappings()]


def movements(conn: Connection, account: str, *, after: Sequence[Any] | None, limit: int) -> list[Row]:
    """Up to `limit` movements into or out of `account`, oldest entry first, after key `after`."""
    m = unit_movements
    where = [or_(m.c.from_holder == account, m.c.to_holder == account)]
    if after is not None:
        entry, batch, first = after
        where.append(
            or_(
                m.c.entry > entry,
                and_(m.c.entry == entry, or_(m.c.batch_id > batch, and_(m.c.batch_id == batch, m.c.first > first))),
            )
        )
    query = (
        select(m, log_entries.c.accepted_at)
        .join(log_entries, log_entries.c.idx == m.c.entry)
        .where(*where)
        .order_by(m.c.entry, m.c.batch_id, m.c.first)
        .limit(limit)
    )
    return [dict(row) for row in conn.execute(query).mappings()]
