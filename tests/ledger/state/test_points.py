"""The public path's foundations: points rules in versions, providers' scopes, point accounts, consent."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from pydantic import BaseModel, ValidationError

from ledger.errors import RuleViolation
from ledger.state import SPECS
from ledger.state.spec import AUTHORISATION_CODES
from ledger.transactions import (
    ClaimMode,
    PointAccountKind,
    PointAccountOpen,
    PointsConsent,
    PointsRulePublish,
    PointsSubject,
    ProviderScope,
    Role,
)
from tests.ledger.scenario import World

ACCOUNT = "PA00000000000000a1"


def rule(rule_id: str, effective_from: date, *, version: int = 1, **changes: object) -> PointsRulePublish:
    fields: dict[str, object] = {
        "rule_id": rule_id,
        "version": version,
        "title": "Shared-bike kilometres",
        "activity_unit": "km",
        "emission_factor_g": 120,
        "factor_source": "Chengdu transport survey 2024",
        "points_per_gram": 1,
        "daily_cap": 2_000,
        "monthly_cap": 30_000,
        "annual_cap": 200_000,
        "late_window_days": 7,
        "claim_mode": ClaimMode.REWARD_ONLY,
        "subject": PointsSubject.ACCOUNT_DAY,
        "displaced_source": "car-trips",
        "effective_from": effective_from,
    }
    fields.update(changes)
    return PointsRulePublish.model_validate(fields)


def out_index(world: World) -> int:
    return world.state.size - 1  # the entry just applied


def refuse(world: World, who: str, payload: BaseModel, code: str, match: str) -> None:
    before = world.snapshot()
    with pytest.raises(RuleViolation, match=match) as info:
        world.submit(who, payload)
    assert info.value.code == code
    kind = payload.model_dump()["kind"]
    assert code in SPECS[kind].codes | set(AUTHORISATION_CODES), f"{kind} refused with undeclared code {code}"
    assert world.snapshot() == before


@pytest.fixture
def points() -> World:
    """A founded registry with a data provider, a second one, and a platform operator."""
    w = World()
    w.found()
    w.register("bike-co", [Role.DATA_PROVIDER])
    w.register("metro-co", [Role.DATA_PROVIDER])
    w.register("tianfu-app", [Role.PLATFORM_OPERATOR])
    w.register("other-app", [Role.PLATFORM_OPERATOR])
    return w


def test_a_rule_is_published_in_versions_that_never_apply_retroactively(points: World) -> None:
    today = points.clock.date()
    out = points.submit("authority", rule("bike-km", today))
    assert out.details == {"rule_id": "bike-km", "version": 1}
    stored = points.state.points_rules[("bike-km", 1)]
    assert (stored.effective_from, stored.claim_mode, stored.published_at) == (
        today.isoformat(),
        "reward_only",
        out_index(points),
    )
    refuse(points, "authority", rule("bike-km", today, version=3), "rule_version", "the next one is version 2")
    refuse(points, "authority", rule("bike-km", today, version=2), "retroactive", "must take effect after version 1")
    refuse(
        points,
        "authority",
        rule("walk-steps", today - timedelta(days=1)),
        "retroactive",
        f"before today \\({today} UTC\\); a rule never applies retroactively",
    )
    points.submit("authority", rule("bike-km", today + timedelta(days=30), version=2, points_per_gram=2))
    assert points.state.rule_versions["bike-km"] == 2


def test_a_new_version_cannot_change_what_a_rule_rewards(points: World) -> None:
    today = points.clock.date()
    points.submit("authority", rule("bike-km", today))
    later = today + timedelta(days=1)
    for change in ({"subject": PointsSubject.VEHICLE_DAY}, {"displaced_source": "bus-trips"}):
        refuse(
            points,
            "authority",
            rule("bike-km", later, version=2, **change),
            "invalid_rule",
            "a new version cannot change what it rewards",
        )


def test_a_rules_caps_grow_and_its_dates_are_ordered() -> None:
    with pytest.raises(ValidationError, match="daily_cap <= monthly_cap <= annual_cap"):
        rule("bike-km", date(2026, 1, 1), daily_cap=40_000)
    with pytest.raises(ValidationError, match="effective_until is before effective_from"):
        rule("bike-km", date(2026, 1, 1), effective_until=date(2025, 12, 31))
    with pytest.raises(ValidationError, match="points_per_gram"):
        rule("bike-km", date(2026, 1, 1), points_per_gram=0)


def test_only_the_authority_publishes_rules_and_scopes_providers(points: World) -> None:
    today = points.clock.date()
    refuse(points, "tianfu-app", rule("bike-km", today), "forbidden", "needs the role authority")
    points.submit("authority", rule("bike-km", today))
    refuse(points, "bike-co", ProviderScope(provider="bike-co", rules=("bike-km",)), "forbidden", "needs the role")


def test_a_provider_is_scoped_to_published_rules(points: World) -> None:
    today = points.clock.date()
    points.submit("authority", rule("bike-km", today))
    points.submit("authority", rule("metro-trips", today))
    refuse(
        points,
        "authority",
        ProviderScope(provider="bike-co", rules=("bike-km", "ghost-rule")),
        "not_found",
        "no points rule 'ghost-rule' is published",
    )
    refuse(
        points,
        "authority",
        ProviderScope(provider="tianfu-app", rules=("bike-km",)),
        "invalid_provider",
        "tianfu-app is not a data provider",
    )
    refuse(
        points,
        "authority",
        ProviderScope(provider="bike-co", rules=("bike-km", "bike-km")),
        "invalid_rule",
        "list a rule twice",
    )
    out = points.submit("authority", ProviderScope(provider="bike-co", rules=("metro-trips", "bike-km")))
    assert out.details == {"provider": "bike-co", "rules": ["bike-km", "metro-trips"]}
    points.submit("authority", ProviderScope(provider="bike-co", rules=()))  # every scope revoked
    assert points.state.provider_rules["bike-co"].rules == ()


def test_point_accounts_are_pseudonymous_and_opened_once(points: World) -> None:
    out = points.submit("tianfu-app", PointAccountOpen(account_id=ACCOUNT, account_kind=PointAccountKind.CITIZEN))
    assert out.details == {"account_id": ACCOUNT}
    account = points.state.point_accounts[ACCOUNT]
    assert (account.operator, account.account_kind) == ("tianfu-app", "citizen")
    again = PointAccountOpen(account_id=ACCOUNT, account_kind=PointAccountKind.SMALL_BUSINESS)
    refuse(points, "other-app", again, "conflict", f"point account {ACCOUNT} is already open")
    refuse(points, "bike-co", again, "forbidden", "needs the role platform_operator")
    with pytest.raises(ValidationError, match="account_id"):
        PointAccountOpen(account_id="PA-alice-wang", account_kind=PointAccountKind.CITIZEN)


def test_consent_is_given_and_withdrawn_for_a_scoped_provider_by_the_accounts_operator(points: World) -> None:
    today = points.clock.date()
    points.submit("authority", rule("bike-km", today))
    points.submit("tianfu-app", PointAccountOpen(account_id=ACCOUNT, account_kind=PointAccountKind.CITIZEN))

    def consent(granted: bool, provider: str = "bike-co", rule_id: str = "bike-km") -> PointsConsent:
        return PointsConsent(account_id=ACCOUNT, provider=provider, rule_id=rule_id, granted=granted)

    refuse(points, "tianfu-app", consent(True), "out_of_scope", "bike-co may not attest rule bike-km")
    points.submit("authority", ProviderScope(provider="bike-co", rules=("bike-km",)))
    refuse(points, "other-app", consent(True), "forbidden", f"{ACCOUNT} is held in tianfu-app's app, not other-app's")
    refuse(points, "tianfu-app", consent(True, rule_id="walk-steps"), "not_found", "no points rule 'walk-steps'")
    refuse(points, "tianfu-app", consent(True, provider="other-app"), "invalid_provider", "not a data provider")
    refuse(
        points,
        "tianfu-app",
        PointsConsent(account_id="PA00000000000000ff", provider="bike-co", rule_id="bike-km", granted=True),
        "not_found",
        "no point account PA00000000000000ff",
    )
    refuse(points, "tianfu-app", consent(False), "invalid_state", "has no consent for bike-co under rule bike-km")
    out = points.submit("tianfu-app", consent(True))
    assert out.details == {"account_id": ACCOUNT, "provider": "bike-co", "rule_id": "bike-km", "granted": True}
    refuse(points, "tianfu-app", consent(True), "invalid_state", "already consents")
    points.submit("tianfu-app", consent(False))
    assert not points.state.consents[(ACCOUNT, "bike-co", "bike-km")].granted
