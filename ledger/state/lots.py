"""A point account's lots: the points it holds from each month's activity, taken oldest first.

Every change to an account's points goes through these helpers, so each one plans a lot change and a
totals change together and conservation holds by construction: for every account,
``awarded = balance + redeemed + expired + clawed_back``, and its balance is the sum of its lots.
A handler calls them once per account (they read the committed state, not each other's plans).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

from ledger.state.context import Context, fail
from ledger.state.records import PointLot, PointTotals


def totals(ctx: Context, account_id: str) -> PointTotals:
    """An account's totals (all zero before its first award)."""
    found = ctx.state.point_totals.get(account_id)
    return found if found is not None else PointTotals(account_id, 0, 0, 0, 0, 0)


def lots(ctx: Context, account_id: str) -> list[PointLot]:
    """An account's non-empty lots, oldest month first."""
    st = ctx.state
    return [st.point_lots[(account_id, month)] for month in st.lot_months.get(account_id, ())]


def _set_lot(ctx: Context, account_id: str, month: str, points: int) -> None:
    if points:
        ctx.put(PointLot(account_id, month, points))
    elif (account_id, month) in ctx.state.point_lots:
        ctx.remove(PointLot.TABLE, (account_id, month))


def award(ctx: Context, account_id: str, month: str, points: int) -> None:
    """Credit `points` awarded for activity in `month` to the account's lot of that month."""
    current = ctx.state.point_lots.get((account_id, month))
    _set_lot(ctx, account_id, month, (current.points if current else 0) + points)
    t = totals(ctx, account_id)
    ctx.put(dataclasses.replace(t, awarded=t.awarded + points, balance=t.balance + points))


def take_oldest(ctx: Context, account_id: str, points: int, *, first: str | None = None) -> list[tuple[str, int]]:
    """Plan taking `points` from the account's lots, oldest first (`first`'s lot before any other, when given);
    return ``(month, points)`` per lot touched. Refuses with ``insufficient_points`` if the balance is short.

    Only the lots change here: the caller says where the points went (`spend`, `expire`, `claw_back`).
    """
    held = lots(ctx, account_id)
    balance = sum(lot.points for lot in held)
    if balance < points:
        raise fail("insufficient_points", f"point account {account_id} holds {balance} points; {points} are needed")
    if first is not None:
        held.sort(key=lambda lot: lot.month != first)  # stable: the rest stay oldest first
    taken: list[tuple[str, int]] = []
    left = points
    for lot in held:
        if left == 0:
            break
        part = min(left, lot.points)
        _set_lot(ctx, account_id, lot.month, lot.points - part)
        taken.append((lot.month, part))
        left -= part
    return taken


def put_back(ctx: Context, account_id: str, taken: Sequence[tuple[str, int]], *, lapsed: Callable[[str], bool]) -> int:
    """Plan a cancelled order's points, taken by `take_oldest`, leaving ``redeemed``: each part back to the lot
    of its month, unless that month has `lapsed` (is past its lifetime now), when it goes to ``expired``;
    points never come back fresh. Return the points expired."""
    expired = 0
    for month, part in taken:
        if lapsed(month):
            expired += part
            continue
        current = ctx.state.point_lots.get((account_id, month))
        _set_lot(ctx, account_id, month, (current.points if current else 0) + part)
    points = sum(part for _, part in taken)
    t = totals(ctx, account_id)
    ctx.put(
        dataclasses.replace(
            t, balance=t.balance + points - expired, redeemed=t.redeemed - points, expired=t.expired + expired
        )
    )
    return expired


def moved(ctx: Context, account_id: str, points: int, *, to: str) -> None:
    """Plan the totals of `points` leaving the balance for `to` (``redeemed``, ``expired``, ``clawed_back``)."""
    t = totals(ctx, account_id)
    ctx.put(dataclasses.replace(t, balance=t.balance - points, **{to: getattr(t, to) + points}))


def format_taken(taken: Sequence[tuple[str, int]]) -> tuple[str, ...]:
    """Lots taken as a redemption records them: ``YYYY-MM:points``."""
    return tuple(f"{month}:{part}" for month, part in taken)


def parse_taken(texts: Sequence[str]) -> list[tuple[str, int]]:
    """The inverse of `format_taken`."""
    out = []
    for text in texts:
        month, _, part = text.partition(":")
        out.append((month, int(part)))
    return out
