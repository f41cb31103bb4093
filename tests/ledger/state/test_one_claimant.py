"""One reduction, one claimant: a project's declared activity data against claim-mode points rules."""

from __future__ import annotations

from datetime import date

import pytest

from ledger.invariants import check_one_claimant
from ledger.state import ProjectScopes
from ledger.transactions import (
    ClaimMode,
    ClaimScope,
    Issue,
    PointsSubject,
    ProjectScope,
    ReportSubmit,
    ReportVerify,
    Role,
)
from tests.ledger.scenario import SHA, World
from tests.ledger.state.test_points import refuse, rule

CAR_TRIPS = ClaimScope(displaced_source="car-trips", subject=PointsSubject.ACCOUNT_DAY)
START = date(2025, 3, 1)  # the world's first day


@pytest.fixture
def bikes() -> World:
    """A bike operator's registered project P0001 (crediting 2022-2031), its data provider and an app."""
    w = World()
    w.found()
    w.register("bike-co", [Role.DATA_PROVIDER])
    w.registered_project()
    assert w.clock.date() == START
    return w


def report(start: date, end: date) -> ReportSubmit:
    return ReportSubmit(project_id="P0001", period_start=start, period_end=end, claimed=100, verifier="verifier")


def test_a_reward_only_rule_leaves_the_reduction_to_the_project(bikes: World) -> None:
    bikes.submit("authority", rule("bike-km", START, claim_mode=ClaimMode.REWARD_ONLY))
    out = bikes.submit("owner", ProjectScope(project_id="P0001", scopes=(CAR_TRIPS,)))
    assert out.details == {"project_id": "P0001", "scopes": ["car-trips/account_day"]}
    bikes.clock = bikes.clock.replace(year=2025, month=8)
    rid = str(bikes.submit("owner", report(START, date(2025, 6, 30))).details["report_id"])
    bikes.submit("verifier", ReportVerify(report_id=rid, verified=90, opinion_sha256=SHA, statement="ok"))
    assert bikes.submit("authority", Issue(report_id=rid)).details["quantity"] == 90
    assert check_one_claimant(bikes.state) == []


def test_a_claim_mode_rule_blocks_an_overlapping_report_and_not_an_earlier_one(bikes: World) -> None:
    bikes.submit("authority", rule("bike-km", START, claim_mode=ClaimMode.CLAIM))
    bikes.submit("owner", ProjectScope(project_id="P0001", scopes=(CAR_TRIPS,)))
    bikes.clock = bikes.clock.replace(year=2025, month=8)
    refuse(
        bikes,
        "owner",
        report(date(2025, 2, 1), date(2025, 6, 30)),
        "claimed_elsewhere",
        "points rule bike-km \\(version 1, claim mode, in force from 2025-03-01\\) already claims the reductions of "
        "car-trips/account_day; one reduction has one claimant",
    )
    bikes.submit("owner", report(date(2024, 1, 1), date(2025, 2, 28)))  # before the rule took effect
    # Another displaced source, or a project without a scope, is not the rule's.
    other = ClaimScope(displaced_source="bus-trips", subject=PointsSubject.ACCOUNT_DAY)
    bikes.submit("owner", ProjectScope(project_id="P0001", scopes=(other,)))
    bikes.submit("owner", report(date(2025, 3, 1), date(2025, 6, 30)))
    assert check_one_claimant(bikes.state) == []


def test_a_rule_claims_only_while_its_claim_mode_version_is_in_force(bikes: World) -> None:
    bikes.submit("authority", rule("bike-km", START, claim_mode=ClaimMode.CLAIM))
    april = date(2025, 4, 1)
    bikes.submit("authority", rule("bike-km", april, version=2, claim_mode=ClaimMode.REWARD_ONLY))
    bikes.submit("owner", ProjectScope(project_id="P0001", scopes=(CAR_TRIPS,)))
    bikes.clock = bikes.clock.replace(year=2025, month=8)
    refuse(
        bikes, "owner", report(START, date(2025, 3, 31)), "claimed_elsewhere", "in force from 2025-03-01 to 2025-03-31"
    )
    bikes.submit("owner", report(april, date(2025, 6, 30)))


def test_a_scope_cannot_reach_back_over_a_reported_period_a_rule_claims(bikes: World) -> None:
    bikes.submit("authority", rule("bike-km", START, claim_mode=ClaimMode.CLAIM))
    bikes.clock = bikes.clock.replace(year=2025, month=8)
    rid = str(bikes.submit("owner", report(START, date(2025, 6, 30))).details["report_id"])
    refuse(
        bikes,
        "owner",
        ProjectScope(project_id="P0001", scopes=(CAR_TRIPS,)),
        "claimed_elsewhere",
        f"report {rid} of P0001: points rule bike-km",
    )


def test_only_the_owner_declares_a_scope_once_per_key(bikes: World) -> None:
    bikes.register("rival", [Role.PROJECT_OWNER])
    refuse(bikes, "rival", ProjectScope(project_id="P0001", scopes=(CAR_TRIPS,)), "forbidden", "belongs to owner")
    refuse(bikes, "owner", ProjectScope(project_id="P0404", scopes=(CAR_TRIPS,)), "not_found", "no project P0404")
    refuse(
        bikes,
        "owner",
        ProjectScope(project_id="P0001", scopes=(CAR_TRIPS, CAR_TRIPS)),
        "invalid_scope",
        "lists a displaced source and subject twice",
    )
    refuse(bikes, "verifier", ProjectScope(project_id="P0001", scopes=()), "forbidden", "needs the role project_owner")


def test_the_audits_check_finds_two_claimants(bikes: World) -> None:
    bikes.submit("authority", rule("bike-km", START, claim_mode=ClaimMode.CLAIM))
    bikes.clock = bikes.clock.replace(year=2025, month=8)
    bikes.submit("owner", report(START, date(2025, 6, 30)))
    # A scope written past the rules (as a tampered projection or a buggy writer would): the check sees it.
    bikes.state.project_scopes["P0001"] = ProjectScopes("P0001", ("car-trips/account_day",), bikes.state.size)
    [finding] = check_one_claimant(bikes.state)
    assert finding.invariant == "one_claimant"
    assert "both claim car-trips/account_day" in finding.message
