"""The invariants of SPEC section 3 as small pure checks.

Each ``check_*`` takes a `State` (and optionally the batches or events to look at) and returns a
list of `Finding`s; an empty list means the invariant holds. The write path runs the checks for
what a transaction touched and raises at the first finding; the audit runs all of them after
replay and reports every finding; the stateful property tests call the same functions.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date

from ledger.serials import SerialRange, parse_block
from ledger.state import State
from ledger.state.points import claimed_by_a_rule
from ledger.transactions import UNITS_PER_CDCER_KG


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken invariant: which one, what was found, and the entry that caused it if known."""

    invariant: str
    message: str
    index: int | None = None

    def __str__(self) -> str:
        where = f"entry {self.index}: " if self.index is not None else ""
        return f"{where}{self.invariant}: {self.message}"


def check_batch_conservation(state: State, batches: Iterable[str] | None = None) -> list[Finding]:
    """(1) Every batch's blocks are contiguous, never overlap and add up to the issued quantity."""
    findings = []
    for bid in sorted(state.batches) if batches is None else batches:
        batch = state.batches[bid]
        blocks = state.blocks.get(bid, [])
        expected = 1
        for block in blocks:
            if block.first != expected or block.last < block.first:
                findings.append(
                    Finding(
                        "batch_conservation",
                        f"batch {bid}: block {block.first}-{block.last} where serial {expected} should start",
                        block.updated_at,
                    )
                )
                break
            expected = block.last + 1
        else:
            if expected - 1 != batch.quantity:
                findings.append(
                    Finding(
                        "batch_conservation",
                        f"batch {bid}: blocks cover {expected - 1} units, {batch.quantity} were issued",
                        batch.issued_at,
                    )
                )
    return findings


def check_holders(state: State, batches: Iterable[str] | None = None) -> list[Finding]:
    """(2, 3) Every unit is held by a registered account or is terminally retired or cancelled."""
    findings = []
    for bid in sorted(state.batches) if batches is None else batches:
        for block in state.blocks.get(bid, []):
            if block.state not in ("held", "retired", "cancelled"):
                findings.append(Finding("unit_state", f"block {block.range}: unknown state {block.state}"))
            elif block.holder not in state.participants:
                findings.append(Finding("unit_holder", f"block {block.range}: unknown holder {block.holder}"))
            elif block.state == "held" and (bid, block.first) not in state.held.get(block.holder, set()):
                findings.append(Finding("unit_holder", f"block {block.range}: missing from {block.holder}'s holdings"))
            elif block.state != "held" and block.ref is None:
                findings.append(Finding("unit_state", f"block {block.range}: {block.state} without a record"))
    if batches is not None:
        return findings
    for holder in sorted(state.held):
        counted = sum(b.quantity for b in state.held_blocks(holder))
        if counted != state.balance(holder):
            findings.append(
                Finding("unit_holder", f"{holder}: balance says {state.balance(holder)}, held blocks hold {counted}")
            )
    # The other direction, over the whole state only (it reads every account): balances and
    # selections read the holdings index, so a stale entry there would count units not held.
    for holder in sorted(state.held):
        for bid, first in sorted(state.held[holder]):
            found = state._find_block(bid, first)
            if found is None or (found.first, found.state, found.holder) != (first, "held", holder):
                findings.append(
                    Finding("unit_holder", f"{holder}'s holdings list {bid} serial {first}, not a block it holds")
                )
    return findings


def check_retirements_terminal(state: State, retirements: Iterable[str] | None = None) -> list[Finding]:
    """(2) Every block a retirement or cancellation lists is still retired or cancelled by it."""
    findings = []
    records = [
        *((r.id, r.blocks, "retired") for r in state.retirements.values()),
        *((c.id, c.blocks, "cancelled") for c in state.cancellations.values()),
    ]
    wanted = None if retirements is None else set(retirements)
    for rid, blocks, status in records:
        if wanted is not None and rid not in wanted:
            continue
        for text in blocks:
            rng = parse_block(text)
            pos = state._find_block(rng.batch_id, rng.first)
            if pos is None or pos.state != status or pos.ref != rid or not pos.range.contains(rng):
                findings.append(Finding("terminal_units", f"{rid}: serials {rng} are no longer {status} by it"))
    return findings


def check_claims(state: State, events: Iterable[str] | None = None) -> list[Finding]:
    """(6) A claim's retired units cover its footprint, and a retirement backs at most one claim."""
    findings = []
    backing: dict[str, str] = {}
    wanted = None if events is None else set(events)  # once: `events` may be a one-shot iterator
    for claim in sorted(state.claims.values(), key=lambda c: c.id):
        if wanted is not None and claim.event_id not in wanted:
            continue
        units = 0
        for rid in claim.retirements:
            retirement = state.retirements.get(rid)
            if retirement is None or retirement.event_id != claim.event_id or retirement.claim_id != claim.id:
                findings.append(Finding("claim_backing", f"{claim.id}: retirement {rid} does not back it", claim.entry))
                continue
            if rid in backing:
                findings.append(
                    Finding(
                        "claim_backing",
                        f"{claim.id}: retirement {rid} already backs {backing[rid]}",
                        claim.entry,
                    )
                )
                continue  # counted once: a listed-twice retirement must not double the coverage
            backing[rid] = claim.id
            units += retirement.quantity
        if units * UNITS_PER_CDCER_KG < claim.footprint_kg:
            findings.append(
                Finding(
                    "claim_coverage",
                    f"{claim.id}: {units} units cover {units * UNITS_PER_CDCER_KG} kgCO2e "
                    f"of a {claim.footprint_kg} kgCO2e footprint",
                    claim.entry,
                )
            )
    return findings


def check_blocks_around(state: State, ranges: Iterable[SerialRange]) -> list[Finding]:
    """(1-3) The write path's scoped form of the unit checks: around the serials an entry touched.

    The blocks covering each range and its two neighbours must be contiguous, in a known state, held
    by a registered account that lists them; the batch's first and last blocks must start at 1 and end
    at the issued quantity. Work is O(log n + blocks touched), so appends cost the same at any size.
    """
    findings = []
    for rng in ranges:
        batch = state.batches.get(rng.batch_id)
        blocks = state.blocks.get(rng.batch_id, [])
        if batch is None or not blocks:
            findings.append(Finding("batch_conservation", f"{rng}: no such batch or it holds no blocks"))
            continue
        if blocks[0].first != 1 or blocks[-1].last != batch.quantity:
            findings.append(
                Finding("batch_conservation", f"batch {batch.id}: blocks span {blocks[0].first}-{blocks[-1].last}")
            )
        firsts = state._firsts[rng.batch_id]
        around = (max(rng.first - 1, 1), min(rng.last + 1, batch.quantity))
        lo = max(bisect.bisect_right(firsts, around[0]) - 1, 0)
        hi = min(bisect.bisect_right(firsts, around[1]), len(blocks))
        window = blocks[lo:hi]
        # The window must reach both neighbours: a lost remainder of a split leaves a hole there
        # that no pair of blocks inside the window shows.
        if not window or window[0].first > around[0] or window[-1].last < around[1]:
            findings.append(
                Finding(
                    "batch_conservation", f"batch {batch.id}: serials {around[0]}-{around[1]} are not all in blocks"
                )
            )
        for left, right in zip(window, window[1:], strict=False):
            if right.first != left.last + 1:
                findings.append(
                    Finding("batch_conservation", f"batch {batch.id}: {left.range} is followed by {right.range}")
                )
        for block in window:
            if block.state not in ("held", "retired", "cancelled") or block.holder not in state.participants:
                findings.append(Finding("unit_state", f"block {block.range}: {block.state} by {block.holder}"))
            elif block.state == "held" and (block.batch_id, block.first) not in state.held.get(block.holder, set()):
                findings.append(Finding("unit_holder", f"block {block.range}: missing from {block.holder}'s holdings"))
    return findings


def check_one_claimant(state: State) -> list[Finding]:
    """One reduction, one claimant: no project reports a period of a scope that a claim-mode points rule
    claims for some day of that period."""
    findings = []
    for project_id, declared in sorted(state.project_scopes.items()):
        for rid in state.reports_by_project.get(project_id, []):
            report = state.reports[rid]
            if report.state == "rejected":
                continue
            start, end = date.fromisoformat(report.period_start), date.fromisoformat(report.period_end)
            for scope in declared.scopes:
                found = claimed_by_a_rule(state, scope, start, end)
                if found is not None:
                    rule = found[0]
                    findings.append(
                        Finding(
                            "one_claimant",
                            f"report {rid} of {project_id} ({start}..{end}) and points rule {rule.rule_id} version "
                            f"{rule.version} both claim {scope}",
                            report.submitted_at,
                        )
                    )
    return findings


def check_points(state: State, accounts: Iterable[str] | None = None) -> list[Finding]:
    """Points are conserved and never negative: per account, awarded = balance + redeemed + expired + clawed
    back, the balance is the sum of its lots and no lot is empty or negative; over the whole state, what an
    account has redeemed is what its pending and fulfilled orders hold, and no account earned more under a
    rule in a day, month or year than the rule version's caps allow."""
    findings = []
    for account in sorted(state.point_totals) if accounts is None else accounts:
        t = state.point_totals.get(account)
        if t is None:
            continue
        held = [state.point_lots[(account, m)].points for m in state.lot_months.get(account, ())]
        if any(points <= 0 for points in held) or t.balance < 0:
            findings.append(Finding("points_conservation", f"point account {account} holds an empty or negative lot"))
        if t.awarded != t.balance + t.redeemed + t.expired + t.clawed_back or t.balance != sum(held):
            findings.append(
                Finding(
                    "points_conservation",
                    f"point account {account}: awarded {t.awarded} != balance {t.balance} + redeemed {t.redeemed} "
                    f"+ expired {t.expired} + clawed back {t.clawed_back}, or its lots hold {sum(held)}",
                )
            )
    if accounts is None:
        ordered: dict[str, int] = {}
        for order in state.redemptions.values():
            if order.state != "cancelled":
                ordered[order.account_id] = ordered.get(order.account_id, 0) + order.points
        for account, t in sorted(state.point_totals.items()):
            if t.redeemed != ordered.get(account, 0):
                findings.append(
                    Finding(
                        "points_conservation",
                        f"point account {account}: redeemed {t.redeemed}, but its pending and fulfilled orders "
                        f"hold {ordered.get(account, 0)}",
                    )
                )
        caps: dict[str, tuple[int, ...]] = {}
        for (rule_id, _), rule in state.points_rules.items():  # no period may pass the most generous version's
            old = caps.get(rule_id)
            new = (rule.daily_cap, rule.monthly_cap, rule.annual_cap)
            caps[rule_id] = new if old is None else tuple(max(a, b) for a, b in zip(old, new, strict=True))
        for (account, rule_id, period), earned in sorted(state.earned.items()):
            limit = caps[rule_id]["DMY".index(period[0])]
            if earned > limit:
                findings.append(
                    Finding("points_caps", f"{account} earned {earned} points under {rule_id} in {period[1:]}")
                )
    return findings


CHECKS: tuple[Callable[[State], list[Finding]], ...] = (
    check_batch_conservation,
    check_holders,
    check_retirements_terminal,
    check_claims,
    check_one_claimant,
    check_points,
)


def check_all(state: State) -> list[Finding]:
    """Run every invariant over the whole state; report every finding."""
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(state))
    return findings
