"""A point account's lots: the points it holds from each month's activity, taken oldest first.

Every change to an account's points goes through these helpers, so each one plans a lot change and a
totals change together and conservation holds by construction: for every account,
``awarded = balance + redeemed + expired + clawed_back``, and its balance is the sum of its lots.
`award` and `moved` read the committed state, so a handler calls them once per account; a handler that
changes an account in several steps works on its `Holding` and plans it once.
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


@dataclasses.dataclass(slots=True)
class Holding:
    """One account's lots and totals while a handler changes them in several steps (a redemption's take, a
    clawback's cancels and then its take): read once from the committed state, changed here, and planned
    once by `plan`, so each step sees the ones before it."""

    account_id: str
    points: dict[str, int]
    """Points by month (``YYYY-MM``), months with none included once a step emptied them."""
    totals: PointTotals
    _before: tuple[dict[str, int], PointTotals]

    def take_oldest(
        self, points: int, *, first: str | None = None, lapsed: Callable[[str], bool] | None = None
    ) -> list[tuple[str, int]]:
        """Take `points` from the lots, oldest first (`first`'s lot before any other, when given), skipping
        the lots of any month that has `lapsed`; return ``(month, points)`` per lot touched. Refuses with
        ``insufficient_points`` if the lots it may take from hold fewer.

        Only the lots change here: the caller says where the points went (`moved`).
        """
        months = sorted(m for m, held in self.points.items() if held and not (lapsed is not None and lapsed(m)))
        spendable = sum(self.points[m] for m in months)
        if spendable < points:
            held = sum(self.points.values())
            past = f" ({held - spendable} are past their lifetime)" if held > spendable else ""
            raise fail(
                "insufficient_points",
                f"point account {self.account_id} holds {held} points; {points} are needed and {spendable} are "
                f"spendable{past}",
            )
        if first is not None:
            months.sort(key=lambda month: month != first)  # stable: the rest stay oldest first
        taken: list[tuple[str, int]] = []
        left = points
        for month in months:
            if left == 0:
                break
            part = min(left, self.points[month])
            self.points[month] -= part
            taken.append((month, part))
            left -= part
        return taken

    def put_back(self, taken: Sequence[tuple[str, int]], *, lapsed: Callable[[str], bool]) -> int:
        """A cancelled order's points, taken by `take_oldest`, leave ``redeemed``: each part goes back to the
        lot of its month, unless that month has `lapsed` (is past its lifetime now), when it goes to
        ``expired``; points never come back fresh. Return the points expired."""
        expired = 0
        for month, part in taken:
            if lapsed(month):
                expired += part
                continue
            self.points[month] = self.points.get(month, 0) + part
        points = sum(part for _, part in taken)
        t = self.totals
        self.totals = dataclasses.replace(
            t, balance=t.balance + points - expired, redeemed=t.redeemed - points, expired=t.expired + expired
        )
        return expired

    def moved(self, points: int, *, to: str) -> None:
        """`points` leave the balance for `to` (``redeemed``, ``expired``, ``clawed_back``)."""
        t = self.totals
        self.totals = dataclasses.replace(t, balance=t.balance - points, **{to: getattr(t, to) + points})

    @property
    def balance(self) -> int:
        """The account's balance as the steps so far left it (lapsed lots included until they expire)."""
        return self.totals.balance

    def plan(self, ctx: Context) -> None:
        """Plan the lots and totals the steps changed (only those, so storage writes only those)."""
        lots_before, totals_before = self._before
        for month in sorted(self.points):
            if self.points[month] != lots_before.get(month, 0):
                _set_lot(ctx, self.account_id, month, self.points[month])
        if self.totals != totals_before:
            ctx.put(self.totals)


def holding(ctx: Context, account_id: str) -> Holding:
    """An account's lots and totals, as committed, to change in several steps and then `plan`."""
    held = {lot.month: lot.points for lot in lots(ctx, account_id)}
    committed = totals(ctx, account_id)
    return Holding(account_id, dict(held), committed, (held, committed))


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
