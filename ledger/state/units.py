"""Units: issuance of a verified report as a batch, and the moves of its serial blocks.

Issuance turns a verified report into one batch of serials 1..N held by the project's owner. A holder
transfers or retires units (by quantity, the oldest serials first, or by explicit serial ranges); the
authority cancels them, and freezes and unfreezes accounts and projects. Moving part of a block splits
it into contiguous blocks that exactly cover it; a holder's adjacent held blocks merge again. Retired
and cancelled units never move. Only an event's organiser retires units for the event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from pydantic import BaseModel

from ledger.errors import EncodingError
from ledger.serials import SerialRange, batch_id, parse_block
from ledger.state.context import HOLDER_ROLES, Context, add_months, fail, participant, project
from ledger.state.outcomes import Cancelled, FreezeSet, Issued, Outcome, Retired, Transferred
from ledger.state.projects import find_report
from ledger.state.records import Batch, Block, Cancellation, Participant, Project, Retirement
from ledger.state.spec import KindSpec
from ledger.transactions import (
    Cancel,
    Freeze,
    FreezeTarget,
    Issue,
    Retire,
    Role,
    Selection,
    Transfer,
    Unfreeze,
)

CLAIM_WINDOW_MONTHS = 12
"""Units are retired for an event, and its claim issued, at most this many months after it ends."""


def _issue(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Issue)
    rep = find_report(ctx, p.report_id)
    if rep.state != "verified" or rep.verified is None:
        raise fail("invalid_state", f"report {rep.id} is {rep.state}; only a verified report is issued")
    proj = ctx.state.projects[rep.project_id]
    if proj.state != "registered":
        raise fail("invalid_state", f"project {proj.id} is {proj.state}; issuance needs a registered project")
    if proj.frozen:
        raise fail("frozen", f"project {proj.id} is frozen")
    owner = participant(ctx, proj.owner)
    if owner.status != "active":
        raise fail("invalid_state", f"project owner {owner.id} is suspended")
    vintage = int(rep.period_end[:4])
    number = ctx.state.batch_count.get((proj.id, vintage), 0) + 1
    bid = batch_id(proj.id, vintage, number)
    batch = Batch(
        bid, proj.id, vintage, number, rep.id, rep.verified, owner.id, len(ctx.state.batches) + 1, ctx.index, ctx.when
    )
    ctx.put(batch)
    ctx.put(Block(bid, 1, rep.verified, "held", owner.id, None, ctx.index))
    ctx.put(replace(rep, state="issued", updated_at=ctx.index))
    ctx.state.batch_count[(proj.id, vintage)] = number  # counters are pure functions of history
    block = SerialRange(bid, 1, rep.verified)
    return Issued(p.kind, bid, rep.verified, owner.id, (str(block),))


def _select(ctx: Context, holder: str, selection: Selection, *, check_freeze: bool) -> list[tuple[Block, SerialRange]]:
    """Resolve a selection to (held block, part of it) pairs, oldest serials first; refuse if not held."""
    st = ctx.state
    if check_freeze and st.participants[holder].frozen:
        raise fail("frozen", f"account {holder} is frozen and can move nothing")
    picks: list[tuple[Block, SerialRange]] = []
    if selection.quantity is not None:
        need = selection.quantity
        available = st.balance(holder)
        if available < need:
            raise fail("insufficient_units", f"{holder} holds {available} units, {need} requested")
        for block in st.held_blocks(holder):
            if need == 0:
                break
            take = min(need, block.quantity)
            picks.append((block, SerialRange(block.batch_id, block.first, block.first + take - 1)))
            need -= take
    else:
        assert selection.blocks is not None
        wanted: list[SerialRange] = []
        for text in selection.blocks:
            try:
                rng = parse_block(text)
            except EncodingError as exc:
                raise fail("invalid_block", str(exc)) from None
            if any(rng.overlaps(other) for other in wanted):
                raise fail("invalid_block", f"block {rng} overlaps another block of the same request")
            wanted.append(rng)
            found = st._find_block(rng.batch_id, rng.first)
            if found is None or not found.range.contains(rng):
                raise fail("not_held", f"serials {rng} do not lie in one block held by {holder}")
            if found.state != "held":
                raise fail("already_" + found.state, f"serials {rng} are already {found.state}")
            if found.holder != holder:
                raise fail("not_held", f"serials {rng} are held by {found.holder}, not {holder}")
            picks.append((found, rng))
    if check_freeze:
        for block, _ in picks:
            proj = st.projects[st.batches[block.batch_id].project_id]
            if proj.frozen:
                raise fail("frozen", f"project {proj.id} is frozen; its units cannot move")
    return picks


def _move(
    ctx: Context, picks: list[tuple[Block, SerialRange]], *, state: str, holder: str, ref: str | None
) -> list[str]:
    """Plan the split of each picked block and the new state of the moved part. Returns block strings."""
    moved: list[str] = []
    # Several explicit parts may cut one block: group them so the parent splits once.
    by_block: dict[tuple[str, int], tuple[Block, list[SerialRange]]] = {}
    for block, part in picks:
        by_block.setdefault((block.batch_id, block.first), (block, []))[1].append(part)
    for block, parts in by_block.values():
        parts.sort()
        cursor = block.first
        ctx.drops.append((block.batch_id, block.first))
        for part in parts:
            if part.first > cursor:
                ctx.put(replace(block, first=cursor, last=part.first - 1, updated_at=block.updated_at))
            ctx.put(Block(part.batch_id, part.first, part.last, state, holder, ref, ctx.index))
            moved.append(str(part))
            cursor = part.last + 1
        if cursor <= block.last:
            ctx.put(replace(block, first=cursor, last=block.last))
    if state == "held":
        _coalesce(ctx, holder)
    return moved


def _coalesce(ctx: Context, holder: str) -> None:
    """Merge adjacent held blocks of one holder so holdings stay compact whatever the history."""
    # Work on the planned view: the new blocks this context puts for `holder`, merged with neighbours.
    st = ctx.state
    planned: dict[tuple[str, int], Block] = {}
    dropped = set(ctx.drops)
    for rec in ctx.puts:
        if isinstance(rec, Block):
            planned[(rec.batch_id, rec.first)] = rec
    for (bid, first), block in sorted(planned.items()):
        if block.state != "held" or block.holder != holder:
            continue
        current = planned.get((bid, first))
        if current is None or current is not block:
            continue
        # Left neighbour: a planned or existing held block of the same holder ending at first - 1.
        left = next(
            (b for (pb, _), b in planned.items() if pb == bid and b.last == first - 1 and b is not block),
            None,
        )
        if left is None:
            existing = st._find_block(bid, first - 1) if first > 1 else None
            if existing is not None and (bid, existing.first) not in dropped:
                left = existing
        if left is not None and left.state == "held" and left.holder == holder:
            merged = replace(left, last=block.last, updated_at=ctx.index)
            _replace_planned(ctx, planned, dropped, left, block, merged)
            block = merged
        # Keep merging rightwards: a planned right neighbour may itself touch an existing block.
        while True:
            right = planned.get((bid, block.last + 1))
            if right is None:
                existing = st._find_block(bid, block.last + 1)
                if existing is not None and existing.first == block.last + 1 and (bid, existing.first) not in dropped:
                    right = existing
            if right is None or right.state != "held" or right.holder != holder:
                break
            merged = replace(block, last=right.last, updated_at=ctx.index)
            _replace_planned(ctx, planned, dropped, block, right, merged)
            block = merged


def _replace_planned(
    ctx: Context,
    planned: dict[tuple[str, int], Block],
    dropped: set[tuple[str, int]],
    left: Block,
    right: Block,
    merged: Block,
) -> None:
    for gone in (left, right):
        key = (gone.batch_id, gone.first)
        if planned.get(key) is gone:
            del planned[key]
            ctx.puts.remove(gone)
        else:
            ctx.drops.append(key)
            dropped.add(key)
    planned[(merged.batch_id, merged.first)] = merged
    ctx.puts.append(merged)


def _transfer(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Transfer)
    if p.to == ctx.actor:
        raise fail("invalid_transfer", "a transfer needs another account than the sender's")
    to = ctx.state.participants.get(p.to)
    if to is None:
        raise fail("not_found", f"no account {p.to!r} is registered")
    if to.status != "active" or not set(to.roles) & {r.value for r in HOLDER_ROLES}:
        raise fail("invalid_recipient", f"{p.to} cannot receive units (suspended or holds no account)")
    picks = _select(ctx, ctx.actor, p.selection, check_freeze=True)
    moved = _move(ctx, picks, state="held", holder=p.to, ref=None)
    quantity = sum(part.quantity for _, part in picks)
    return Transferred(p.kind, ctx.actor, p.to, quantity, tuple(moved))


def _retire(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Retire)
    st = ctx.state
    if p.event_id is not None:
        event = st.events.get(p.event_id)
        if event is None:
            raise fail("not_found", f"no event {p.event_id}")
        if event.organiser != ctx.actor:
            raise fail(
                "forbidden",
                f"event {event.id} is organised by {event.organiser}; only its organiser retires units for it "
                "(a sponsor transfers units to the organiser first)",
            )
        if event.claim_id is not None:
            raise fail("invalid_state", f"event {event.id} already has claim {event.claim_id}; it is closed")
        deadline = add_months(date.fromisoformat(event.end_date), CLAIM_WINDOW_MONTHS)
        if ctx.time.date() > deadline:
            raise fail(
                "claim_window_closed",
                f"event {event.id} ended {event.end_date}; retirements for it were possible until {deadline}",
            )
    picks = _select(ctx, ctx.actor, p.selection, check_freeze=True)
    rid = f"RT{len(st.retirements) + 1:06d}"
    moved = _move(ctx, picks, state="retired", holder=ctx.actor, ref=rid)
    quantity = sum(part.quantity for _, part in picks)
    ctx.put(
        Retirement(
            rid,
            ctx.actor,
            quantity,
            tuple(moved),
            p.beneficiary,
            p.purpose.value,
            p.event_id,
            p.year,
            p.reason,
            None,
            ctx.index,
            ctx.when,
        )
    )
    if p.event_id is not None:
        event = st.events[p.event_id]
        ctx.put(replace(event, retired_units=event.retired_units + quantity))
    return Retired(p.kind, rid, quantity, tuple(moved))


def _cancel(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Cancel)
    participant(ctx, p.holder)
    picks = _select(ctx, p.holder, p.selection, check_freeze=False)
    cid = f"CX{len(ctx.state.cancellations) + 1:06d}"
    moved = _move(ctx, picks, state="cancelled", holder=p.holder, ref=cid)
    quantity = sum(part.quantity for _, part in picks)
    ctx.put(Cancellation(cid, p.holder, quantity, tuple(moved), p.reason_code.value, p.reason, ctx.index, ctx.when))
    return Cancelled(p.kind, cid, p.holder, quantity, tuple(moved))


def _freeze(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Freeze | Unfreeze)
    frozen = isinstance(p, Freeze)
    target: Participant | Project
    if p.target is FreezeTarget.ACCOUNT:
        target = participant(ctx, p.target_id)
    else:
        target = project(ctx, p.target_id)
    if target.frozen == frozen:
        raise fail("invalid_state", f"{p.target.value} {p.target_id} is {'already' if frozen else 'not'} frozen")
    ctx.put(replace(target, frozen=frozen))
    return FreezeSet(p.kind, p.target.value, p.target_id, frozen)


def _spec(
    payload: type[BaseModel],
    roles: frozenset[Role],
    handler: Callable[[Context], Outcome],
    codes: str,
    *,
    action: str | None = None,
    role: str | None = None,
) -> KindSpec:
    return KindSpec(payload, roles, handler, frozenset(codes.split()), action=action, certificate_role=role)


_MOVE = "already_cancelled already_retired frozen insufficient_units invalid_block not_found not_held"
_AUTHORITY = frozenset({Role.AUTHORITY})
SPECS = (
    _spec(Issue, _AUTHORITY, _issue, "frozen invalid_state not_found", action="issued", role="issuance"),
    _spec(Transfer, HOLDER_ROLES, _transfer, _MOVE + " invalid_recipient invalid_transfer", action="transferred"),
    _spec(
        Retire,
        HOLDER_ROLES,
        _retire,
        _MOVE + " claim_window_closed forbidden invalid_state",
        action="retired",
        role="retirement",
    ),
    _spec(Cancel, _AUTHORITY, _cancel, _MOVE, action="cancelled"),
    _spec(Freeze, _AUTHORITY, _freeze, "invalid_state not_found"),
    _spec(Unfreeze, _AUTHORITY, _freeze, "invalid_state not_found"),
)
