"""Points awarded from providers' attestations, their expiry, the points policy, and clawbacks.

A data provider attests one day of its consenting holders' activity under a rule as one batch
(`points.attest`): the entry carries the batch's root, count and total; its records are the entry's
attachment (`ledger.points_batch`), checked against the root before anything else. Each record earns
``quantity x emission factor x points per gram`` points, awarded up to the rule's daily, monthly and
annual caps per account and the rest recorded as capped, into the account's lot of the activity's
month. A subject (an account's day, a vehicle's day, a meter's month) is rewarded at most once, whichever
provider attests it. A claim-mode rule's batch also claims its reductions, so it is refused over a
period a project's monitoring report claims for the same scope (one reduction, one claimant); a
reward-only batch claims nothing and its points never count toward an event's coverage.

The authority expires lots past the policy's lifetime (`points.expire`) and claws back what a
fraudulent batch awarded (`points.clawback`), never below a zero balance. Points held by an account's
pending redemption orders are within a clawback's reach: where the balance does not cover what the
account owes, the clawback first cancels its pending orders, newest first, as `redemption.cancel` would,
until it does; fulfilled orders are spent, and what they spent stays a shortfall.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ledger.points_batch import MAX_QUANTITY, PointRecord, batch_root, subject_commitment, subject_period
from ledger.state import lots
from ledger.state.context import Context, add_months, fail
from ledger.state.outcomes import Outcome
from ledger.state.points import scope_key
from ledger.state.records import Attestation, PointsPolicySet, PointsRule
from ledger.state.spec import KindSpec
from ledger.transactions import ClaimMode, PointsAttest, PointsClawback, PointsExpire, PointsPolicy, Role

if TYPE_CHECKING:
    from ledger.state.core import State

DEFAULT_LIFETIME_MONTHS = 12
"""How many months after its month a lot stays redeemable until the authority sets a policy."""


@dataclasses.dataclass(frozen=True, slots=True)
class PointsAttested(Outcome):
    """A batch was attested: what its records earned, what the caps held back, what it avoided."""

    batch_id: str
    records: int
    points_awarded: int
    points_capped: int
    reduction_g: int
    claimable: bool


@dataclasses.dataclass(frozen=True, slots=True)
class PointsExpired(Outcome):
    through_month: str
    accounts: int
    points: int


@dataclasses.dataclass(frozen=True, slots=True)
class PolicySet(Outcome):
    lifetime_months: int


@dataclasses.dataclass(frozen=True, slots=True)
class ClawedBack(Outcome):
    batch_id: str
    accounts: int
    points: int
    shortfall: int
    """Points due that the accounts no longer held, even with their pending orders cancelled (spent on
    fulfilled orders, expired, clawed back for another batch): a balance never goes below zero."""
    cancelled: tuple[str, ...]
    """The pending orders the clawback cancelled first (by account, each account's newest first), because
    the account's balance did not cover what it owed: their points and items came back as a cancel's do."""
    expired: int
    """Points of those orders from a month past its lifetime, expired on the way back (as a cancel's are)."""


def lifetime_months(ctx: Context) -> int:
    """The points policy's lifetime (months a lot stays redeemable after its own month)."""
    policy = ctx.state.points_policy.get(1)
    return DEFAULT_LIFETIME_MONTHS if policy is None else policy.lifetime_months


def expirable_from(ctx: Context, month: str) -> date:
    """The first day the points of `month` (``YYYY-MM``) are past their lifetime under the policy in force:
    the day after `lifetime_months` months have followed it."""
    return add_months(date.fromisoformat(f"{month}-01"), lifetime_months(ctx) + 1)


def lapsed(ctx: Context, month: str) -> bool:
    """Whether the points of `month` are past their lifetime at this entry's time: `points.expire` may expire
    them, and a cancelled order's points of that month go to ``expired``, not back to the balance."""
    return ctx.time.date() >= expirable_from(ctx, month)


def rule_in_force(ctx: Context, rule_id: str, day: date) -> PointsRule | None:
    """The version of `rule_id` in force on `day`, if any (the latest version effective by then)."""
    st = ctx.state
    found = None
    for version in range(1, st.rule_versions.get(rule_id, 0) + 1):
        rule = st.points_rules[(rule_id, version)]
        if date.fromisoformat(rule.effective_from) <= day:
            found = rule
    if found is None or (found.effective_until is not None and day > date.fromisoformat(found.effective_until)):
        return None
    return found


def _project_claiming(ctx: Context, scope: str, day: date) -> str | None:
    """A monitoring report (not rejected) of a project with `scope` whose period covers `day`."""
    st = ctx.state
    for project_id, declared in st.project_scopes.items():
        if scope not in declared.scopes:
            continue
        for report_id in st.reports_by_project.get(project_id, ()):
            report = st.reports[report_id]
            if report.state == "rejected":
                continue
            if date.fromisoformat(report.period_start) <= day <= date.fromisoformat(report.period_end):
                return report_id
    return None


def _attest(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsAttest)
    st = ctx.state
    scope = st.provider_rules.get(ctx.actor)
    if scope is None or p.rule_id not in scope.rules:
        raise fail("out_of_scope", f"{ctx.actor} may not attest rule {p.rule_id}; the authority scopes providers")
    if p.batch_id in st.attestations:
        raise fail("duplicate_key", f"batch {p.batch_id} is already attested; give each batch its own id")
    if p.rule_id not in st.rule_versions:
        raise fail("not_found", f"no points rule {p.rule_id!r} is published")
    rule = rule_in_force(ctx, p.rule_id, p.day)
    if rule is None:
        raise fail("not_in_force", f"rule {p.rule_id} is not in force on {p.day}")
    if rule.version != p.version:
        raise fail(
            "rule_version",
            f"version {rule.version} of rule {p.rule_id} is in force on {p.day}, not version {p.version}",
        )
    today = ctx.time.date()
    if p.day >= today:
        raise fail(
            "period_not_ended", f"{p.day} has not ended yet (today is {today} UTC); attest a day once it is over"
        )
    if today - p.day > timedelta(days=rule.late_window_days):
        raise fail(
            "late_attestation",
            f"rule {p.rule_id} accepts a day's attestation for {rule.late_window_days} day(s) after it; "
            f"{p.day} is {(today - p.day).days} days ago",
        )
    claimable = rule.claim_mode == ClaimMode.CLAIM.value
    if claimable:
        report = _project_claiming(ctx, scope_key(rule.displaced_source, rule.subject), p.day)
        if report is not None:
            raise fail(
                "claimed_elsewhere",
                f"monitoring report {report} already claims the reductions of {rule.displaced_source} by "
                f"{rule.subject} subjects on {p.day}; a claim-mode rule cannot claim them too",
            )
    records = _checked_records(ctx, p, ctx.attachment)
    return _award_all(ctx, p, rule, records, claimable)


def _checked_records(ctx: Context, p: PointsAttest, attachment: Any) -> Sequence[PointRecord]:
    """The batch's records, once they match what the entry commits to."""
    if attachment is None:
        raise fail("records_missing", f"no records are uploaded for batch {p.batch_id}; upload them, then attest")
    records: Sequence[PointRecord] = attachment
    if len(records) != p.count:
        raise fail(
            "root_mismatch", f"batch {p.batch_id} has {len(records)} records uploaded; the attestation says {p.count}"
        )
    total = sum(r.quantity for r in records)
    if total != p.total_quantity:
        raise fail(
            "root_mismatch",
            f"the records of batch {p.batch_id} total {total}; the attestation says {p.total_quantity}",
        )
    if batch_root(p.batch_id, records).hex() != p.root:
        raise fail("root_mismatch", f"the records uploaded for batch {p.batch_id} do not have the root it attests")
    return records


def _award_all(
    ctx: Context, p: PointsAttest, rule: PointsRule, records: Sequence[PointRecord], claimable: bool
) -> Outcome:
    st = ctx.state
    period = subject_period(rule.subject, p.day)
    rewarded = st.rewarded_subjects.get(period, {})
    month = p.day.strftime("%Y-%m")
    keys = (f"D{p.day.isoformat()}", f"M{month}", f"Y{p.day.year}")
    caps = (rule.daily_cap, rule.monthly_cap, rule.annual_cap)
    per_point = rule.emission_factor_g * rule.points_per_gram
    seen_accounts: set[str] = set()
    seen_subjects: set[str] = set()
    awards: list[tuple[str, int]] = []
    capped_total = 0
    for position, record in enumerate(records):
        account = record.account_id
        where = f"record {position} of batch {p.batch_id}"
        if not 1 <= record.quantity <= MAX_QUANTITY:
            raise fail("invalid_batch", f"{where}: quantity {record.quantity} is not between 1 and {MAX_QUANTITY}")
        if account in seen_accounts:
            raise fail("invalid_batch", f"{where}: {account} has two records in one day's batch; sum them into one")
        seen_accounts.add(account)
        if account not in st.point_accounts:
            raise fail("not_found", f"{where}: no point account {account}")
        consent = st.consents.get((account, ctx.actor, p.rule_id))
        if consent is None or not consent.granted:
            raise fail("no_consent", f"{where}: {account} has not consented to {ctx.actor} attesting rule {p.rule_id}")
        if rule.subject == "account_day" and record.subject != subject_commitment("account_day", account, period):
            raise fail("invalid_batch", f"{where}: the subject of an account_day record is its account and day")
        if record.subject in seen_subjects:
            raise fail("invalid_batch", f"{where}: its subject appears twice in the batch")
        seen_subjects.add(record.subject)
        earlier = rewarded.get(record.subject)
        if earlier is not None:
            raise fail("subject_rewarded", f"{where}: its subject for {period} was already rewarded by batch {earlier}")
        earned = record.quantity * per_point
        room = min(cap - st.earned.get((account, p.rule_id, key), 0) for key, cap in zip(keys, caps, strict=True))
        points = max(0, min(earned, room))
        capped_total += earned - points
        awards.append((account, points))
    # Every record passed: plan the awards.
    for account, points in awards:
        if points:
            lots.award(ctx, account, month, points)
    awarded = sum(points for _, points in awards)
    reduction_g = p.total_quantity * rule.emission_factor_g
    ctx.put(
        Attestation(
            p.batch_id,
            ctx.actor,
            p.rule_id,
            p.version,
            p.day.isoformat(),
            p.count,
            p.total_quantity,
            p.root,
            awarded,
            capped_total,
            reduction_g,
            claimable,
            0,
            ctx.index,
        )
    )
    subjects = [r.subject for r in records]
    ctx.on_commit(lambda state: _remember(state, p.batch_id, p.rule_id, period, keys, awards, subjects))
    return PointsAttested(
        p.kind, p.batch_id, p.count, awarded, capped_total, reduction_g if claimable else 0, claimable
    )


def _remember(
    state: State,
    batch_id: str,
    rule_id: str,
    period: str,
    keys: tuple[str, ...],
    awards: list[tuple[str, int]],
    subjects: list[str],
) -> None:
    """Add an attestation to the memory-only indexes: its subjects, its awards, the caps' running sums."""
    rewarded = state.rewarded_subjects.setdefault(period, {})
    for subject in subjects:
        rewarded[subject] = batch_id
    per_batch = state.batch_awards.setdefault(batch_id, {})
    earned = state.earned
    for account, points in awards:
        per_batch[account] = points
        for key in keys:
            k = (account, rule_id, key)
            earned[k] = earned.get(k, 0) + points


def _policy(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsPolicy)
    current = lifetime_months(ctx)
    if p.lifetime_months < current and ctx.state.point_totals:
        raise fail(
            "shorter_lifetime",
            f"points are redeemable for {current} months; once points are awarded the lifetime may only be "
            "lengthened, never shortened against their holders",
        )
    ctx.put(PointsPolicySet(1, p.lifetime_months, ctx.index))
    return PolicySet(p.kind, p.lifetime_months)


def _expire(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsExpire)
    st = ctx.state
    if not lapsed(ctx, p.through_month):
        raise fail(
            "not_expirable",
            f"points of {p.through_month} stay redeemable for {lifetime_months(ctx)} months after it; they expire "
            f"from {expirable_from(ctx, p.through_month)}",
        )
    by_account: dict[str, int] = {}
    for (account, month), lot in st.point_lots.items():
        if month <= p.through_month:
            by_account[account] = by_account.get(account, 0) + lot.points
    for account, points in sorted(by_account.items()):
        months = [m for m in st.lot_months[account] if m <= p.through_month]
        for month in months:
            ctx.remove("point_lots", (account, month))
        lots.moved(ctx, account, points, to="expired")
    return PointsExpired(p.kind, p.through_month, len(by_account), sum(by_account.values()))


def _clawback(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsClawback)
    st = ctx.state
    attestation = st.attestations.get(p.batch_id)
    if attestation is None:
        raise fail("not_found", f"no attested batch {p.batch_id}")
    awarded = st.batch_awards.get(p.batch_id, {})
    if len(set(p.accounts)) != len(p.accounts):
        raise fail("invalid_state", "the clawback names an account twice")
    for account in p.accounts:
        if account not in awarded:
            raise fail("not_found", f"batch {p.batch_id} has no record for {account}")
    targets = list(p.accounts) if p.accounts else sorted(awarded)
    due = {account: awarded[account] for account in targets if awarded[account] > 0}
    if not due:
        raise fail("invalid_state", f"batch {p.batch_id} has nothing left to claw back from those accounts")
    month = attestation.day[:7]
    # An account's pending orders hold points out of the balance's reach: where the balance does not cover
    # what the account owes, cancel them (newest first) until it does, so no order shelters the points.
    from ledger.state.scenes import OrderCancels, pending_orders  # scenes imports this module (`lapsed`)

    short = {account for account, points in due.items() if lots.totals(ctx, account).balance < points}
    pending = pending_orders(st, short) if short else {}
    cancels = OrderCancels(ctx)
    cancelled: list[str] = []
    expired = 0
    taken_total = 0
    for account, points in due.items():
        held = lots.holding(ctx, account)
        for order in pending.get(account, ()):
            if held.balance >= points:
                break
            expired += cancels.cancel(order, held)
            cancelled.append(order.id)
        take = min(points, held.balance)
        if take:
            held.take_oldest(take, first=month)
            held.moved(take, to="clawed_back")
        held.plan(ctx)
        taken_total += take
    cancels.plan()
    ctx.put(dataclasses.replace(attestation, clawed_back=attestation.clawed_back + taken_total))
    settled = tuple(due)
    ctx.on_commit(lambda state: _settle(state, p.batch_id, settled))
    owed = sum(due.values())
    return ClawedBack(p.kind, p.batch_id, len(due), taken_total, owed - taken_total, tuple(cancelled), expired)


def _settle(state: State, batch_id: str, accounts: tuple[str, ...]) -> None:
    """Mark a batch's clawed-back awards as settled, so none is clawed back twice."""
    per_batch = state.batch_awards[batch_id]
    for account in accounts:
        per_batch[account] = 0


def _spec(payload: type[BaseModel], role: Role, handler: Callable[[Context], Outcome], codes: str) -> KindSpec:
    return KindSpec(payload, frozenset({role}), handler, frozenset(codes.split()))


SPECS = (
    _spec(
        PointsAttest,
        Role.DATA_PROVIDER,
        _attest,
        "out_of_scope duplicate_key not_found not_in_force rule_version period_not_ended late_attestation "
        "claimed_elsewhere records_missing root_mismatch invalid_batch no_consent subject_rewarded",
    ),
    _spec(PointsPolicy, Role.AUTHORITY, _policy, "shorter_lifetime"),
    _spec(PointsExpire, Role.AUTHORITY, _expire, "not_expirable"),
    _spec(PointsClawback, Role.AUTHORITY, _clawback, "not_found invalid_state"),
)
