"""The public path's foundations: points rules, the providers allowed to attest them, point accounts, consent.

The authority publishes points rules in versions that never apply retroactively (a version takes effect
on or after the day it is published, and after the version before it); a rule's subject and displaced
source, which with a period make the claim key of its reductions, are fixed by its first version. The
authority scopes each data provider to the rules it may attest. A platform operator opens pseudonymous
point accounts (random ids, no personal data) and records, from its app, each holder's consent for a
provider to attest its activity under a rule; consent needs a provider scoped for that rule.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ledger.state.context import Context, fail, participant
from ledger.state.outcomes import ConsentSet, Outcome, PointAccountOpened, ProviderScoped, RulePublished
from ledger.state.records import Consent, PointAccount, PointsRule, ProviderRules
from ledger.state.spec import KindSpec
from ledger.transactions import ClaimMode, PointAccountOpen, PointsConsent, PointsRulePublish, ProviderScope, Role

if TYPE_CHECKING:
    from ledger.state.core import State


def rule_versions(ctx: Context, rule_id: str) -> list[PointsRule]:
    """Every published version of a rule, oldest first."""
    st = ctx.state
    return [st.points_rules[(rule_id, v)] for v in range(1, st.rule_versions.get(rule_id, 0) + 1)]


def scope_key(displaced_source: str, subject: str) -> str:
    """A claim scope as projects record it: ``<displaced source>/<subject>``."""
    return f"{displaced_source}/{subject}"


def claim_windows(state: State, scope: str) -> list[tuple[PointsRule, date, date | None]]:
    """The claim-mode rule versions over `scope`, each with the days it is in force (None: open-ended).

    A version is in force from its effective day until its own last day or the day before the next
    version takes effect, whichever comes first; a rule's scope is fixed by its first version.
    """
    windows = []
    for (rule_id, version), rule in state.points_rules.items():
        if rule.claim_mode != ClaimMode.CLAIM.value or scope_key(rule.displaced_source, rule.subject) != scope:
            continue
        until = None if rule.effective_until is None else date.fromisoformat(rule.effective_until)
        following = state.points_rules.get((rule_id, version + 1))
        if following is not None:
            before_next = date.fromisoformat(following.effective_from) - timedelta(days=1)
            until = before_next if until is None else min(until, before_next)
        windows.append((rule, date.fromisoformat(rule.effective_from), until))
    return windows


def claimed_by_a_rule(state: State, scope: str, start: date, end: date) -> tuple[PointsRule, date, date | None] | None:
    """A claim-mode rule version over `scope` in force on some day of ``start..end``, if there is one."""
    for rule, since, until in claim_windows(state, scope):
        if since <= end and (until is None or start <= until):
            return rule, since, until
    return None


def _rule_publish(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsRulePublish)
    versions = rule_versions(ctx, p.rule_id)
    expected = len(versions) + 1
    if p.version != expected:
        raise fail(
            "rule_version",
            f"rule {p.rule_id} has {len(versions)} published version(s); the next one is version {expected}",
        )
    today = ctx.time.date()
    if p.effective_from < today:
        raise fail(
            "retroactive",
            f"version {p.version} of rule {p.rule_id} would take effect on {p.effective_from}, before today "
            f"({today} UTC); a rule never applies retroactively",
        )
    if versions:
        first, last = versions[0], versions[-1]
        if (p.subject.value, p.displaced_source) != (first.subject, first.displaced_source):
            raise fail(
                "invalid_rule",
                f"rule {p.rule_id} rewards {first.subject} subjects displacing {first.displaced_source}; a new "
                "version cannot change what it rewards (publish a new rule instead)",
            )
        if p.effective_from <= date.fromisoformat(last.effective_from):
            raise fail(
                "retroactive",
                f"version {p.version} of rule {p.rule_id} must take effect after version {last.version} "
                f"(effective from {last.effective_from})",
            )
    ctx.put(
        PointsRule(
            p.rule_id,
            p.version,
            p.title,
            p.activity_unit,
            p.emission_factor_g,
            p.factor_source,
            p.points_per_gram,
            p.daily_cap,
            p.monthly_cap,
            p.annual_cap,
            p.late_window_days,
            p.claim_mode.value,
            p.subject.value,
            p.displaced_source,
            p.effective_from.isoformat(),
            None if p.effective_until is None else p.effective_until.isoformat(),
            ctx.index,
        )
    )
    return RulePublished(p.kind, p.rule_id, p.version)


def _require_provider(ctx: Context, pid: str) -> None:
    if Role.DATA_PROVIDER.value not in participant(ctx, pid).roles:
        raise fail("invalid_provider", f"{pid} is not a data provider")


def _provider_scope(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProviderScope)
    _require_provider(ctx, p.provider)
    if len(set(p.rules)) != len(p.rules):
        raise fail("invalid_rule", f"the rules of {p.provider} list a rule twice")
    for rule_id in p.rules:
        if rule_id not in ctx.state.rule_versions:
            raise fail("not_found", f"no points rule {rule_id!r} is published")
    rules = tuple(sorted(p.rules))
    ctx.put(ProviderRules(p.provider, rules, ctx.index))
    return ProviderScoped(p.kind, p.provider, rules)


def _account_open(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointAccountOpen)
    if p.account_id in ctx.state.point_accounts:
        raise fail("conflict", f"point account {p.account_id} is already open")
    ctx.put(PointAccount(p.account_id, p.account_kind.value, ctx.actor, ctx.index))
    return PointAccountOpened(p.kind, p.account_id)


def _consent(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsConsent)
    st = ctx.state
    account = st.point_accounts.get(p.account_id)
    if account is None:
        raise fail("not_found", f"no point account {p.account_id}")
    if account.operator != ctx.actor:
        raise fail("forbidden", f"point account {p.account_id} is held in {account.operator}'s app, not {ctx.actor}'s")
    _require_provider(ctx, p.provider)
    if p.rule_id not in st.rule_versions:
        raise fail("not_found", f"no points rule {p.rule_id!r} is published")
    key = (p.account_id, p.provider, p.rule_id)
    current = st.consents.get(key)
    if p.granted:
        scope = st.provider_rules.get(p.provider)
        if scope is None or p.rule_id not in scope.rules:
            raise fail("out_of_scope", f"{p.provider} may not attest rule {p.rule_id}; consent cannot be given for it")
        if current is not None and current.granted:
            raise fail("invalid_state", f"{p.account_id} already consents to {p.provider} attesting rule {p.rule_id}")
    elif current is None or not current.granted:
        raise fail(
            "invalid_state", f"{p.account_id} has no consent for {p.provider} under rule {p.rule_id} to withdraw"
        )
    ctx.put(Consent(p.account_id, p.provider, p.rule_id, p.granted, ctx.index))
    return ConsentSet(p.kind, p.account_id, p.provider, p.rule_id, p.granted)


def _spec(payload: type[BaseModel], role: Role, handler: Callable[[Context], Outcome], codes: str) -> KindSpec:
    return KindSpec(payload, frozenset({role}), handler, frozenset(codes.split()))


SPECS = (
    _spec(PointsRulePublish, Role.AUTHORITY, _rule_publish, "invalid_rule retroactive rule_version"),
    _spec(ProviderScope, Role.AUTHORITY, _provider_scope, "invalid_provider invalid_rule not_found"),
    _spec(PointAccountOpen, Role.PLATFORM_OPERATOR, _account_open, "conflict"),
    _spec(
        PointsConsent,
        Role.PLATFORM_OPERATOR,
        _consent,
        "forbidden invalid_provider invalid_state not_found out_of_scope",
    ),
)
