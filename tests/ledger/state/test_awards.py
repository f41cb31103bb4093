"""Points from providers' attestations: the batch's records against its root, consent, scope, the late
window, one reward per subject across providers, caps, lots by month, expiry and clawback."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from ledger.invariants import check_points
from ledger.points_batch import PointRecord, batch_root, record_proof, subject_commitment, verify_record
from ledger.state.awards import DEFAULT_LIFETIME_MONTHS
from ledger.transactions import (
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsClawback,
    PointsConsent,
    PointsExpire,
    PointsPolicy,
    PointsSubject,
    ProviderScope,
    Role,
)
from tests.ledger.scenario import World
from tests.ledger.state.test_points import refuse, rule

A1, A2, A3 = "PA00000000000000a1", "PA00000000000000a2", "PA00000000000000a3"


@pytest.fixture
def world() -> World:
    """A bike-km rule (120 g/km, 1 point a gram, caps 2,000/30,000/200,000) in force for ten days; two
    providers scoped to it; three citizens, two of whom consent to bike-co."""
    w = World()
    w.found()
    w.register("bike-co", [Role.DATA_PROVIDER])
    w.register("metro-co", [Role.DATA_PROVIDER])
    w.register("tianfu-app", [Role.PLATFORM_OPERATOR])
    w.submit("authority", rule("bike-km", w.clock.date()))
    w.submit("authority", rule("plate-day", w.clock.date(), subject=PointsSubject.VEHICLE_DAY, late_window_days=30))
    for provider in ("bike-co", "metro-co"):
        w.submit("authority", ProviderScope(provider=provider, rules=("bike-km", "plate-day")))
    for account in (A1, A2, A3):
        w.submit("tianfu-app", PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
    for account in (A1, A2):
        for provider in ("bike-co", "metro-co"):
            for rule_id in ("bike-km", "plate-day"):
                w.submit(
                    "tianfu-app", PointsConsent(account_id=account, provider=provider, rule_id=rule_id, granted=True)
                )
    w.advance(timedelta(days=10))
    return w


def day_of(w: World, days_ago: int) -> date:
    return w.clock.date() - timedelta(days=days_ago)


def km(account: str, quantity: int, day: date) -> PointRecord:
    return PointRecord(account, quantity, subject_commitment("account_day", account, day.isoformat()))


def attest(
    w: World,
    provider: str,
    batch_id: str,
    records: list[PointRecord],
    day: date,
    *,
    rule_id: str = "bike-km",
    upload: bool = True,
    **changes: object,
) -> PointsAttest:
    if upload:
        w.upload(provider, batch_id, records)
    fields: dict[str, object] = {
        "batch_id": batch_id,
        "rule_id": rule_id,
        "version": 1,
        "day": day,
        "count": len(records),
        "total_quantity": sum(r.quantity for r in records),
        "root": batch_root(batch_id, records).hex(),
    }
    fields.update(changes)
    return PointsAttest.model_validate(fields)


def test_a_batch_awards_each_record_its_points_up_to_the_daily_cap(world: World) -> None:
    day = day_of(world, 2)
    out = world.submit("bike-co", attest(world, "bike-co", "b-1", [km(A1, 10, day), km(A2, 30, day)], day))
    assert out.details == {
        "batch_id": "b-1",
        "records": 2,
        "points_awarded": 1_200 + 2_000,
        "points_capped": 3_600 - 2_000,
        "reduction_g": 0,  # reward-only: it claims nothing
        "claimable": False,
    }
    month = day.strftime("%Y-%m")
    assert world.state.point_lots[(A1, month)].points == 1_200
    assert world.state.point_lots[(A2, month)].points == 2_000
    totals = world.state.point_totals[A2]
    assert (totals.awarded, totals.balance) == (2_000, 2_000)
    attestation = world.state.attestations["b-1"]
    assert (attestation.reduction_g, attestation.points_capped, attestation.claimable) == (40 * 120, 1_600, False)
    assert check_points(world.state) == []


def test_the_cap_counts_what_earlier_batches_of_the_day_and_month_awarded(world: World) -> None:
    day = day_of(world, 3)
    world.submit("bike-co", attest(world, "bike-co", "b-1", [km(A1, 10, day)], day))
    # metro-co's plate-day rule is another rule: its own caps. The same rule from another provider shares them.
    out = world.submit(
        "metro-co", attest(world, "metro-co", "m-1", [PointRecord(A1, 10, "ab" * 32)], day, rule_id="plate-day")
    )
    assert out.details["points_awarded"] == 1_200
    # A second bike-km batch that day has no account_day subject left for A1: the day was rewarded.
    refuse(
        world,
        "metro-co",
        attest(world, "metro-co", "m-2", [km(A1, 5, day)], day),
        "subject_rewarded",
        "already rewarded by batch b-1",
    )


def test_a_subject_is_rewarded_once_whichever_provider_attests_it(world: World) -> None:
    day = day_of(world, 1)
    plate = subject_commitment("vehicle_day", "川A12345", day.isoformat())
    world.submit("bike-co", attest(world, "bike-co", "b-1", [PointRecord(A1, 3, plate)], day, rule_id="plate-day"))
    refuse(
        world,
        "metro-co",
        attest(world, "metro-co", "m-1", [PointRecord(A2, 3, plate)], day, rule_id="plate-day"),
        "subject_rewarded",
        f"its subject for {day} was already rewarded by batch b-1",
    )


def test_the_records_must_be_the_ones_the_entry_commits_to(world: World) -> None:
    day = day_of(world, 1)
    records = [km(A1, 10, day), km(A2, 5, day)]
    refuse(
        world, "bike-co", attest(world, "bike-co", "b-0", records, day, upload=False), "records_missing", "upload them"
    )
    refuse(world, "bike-co", attest(world, "bike-co", "b-1", records, day, count=3), "root_mismatch", "says 3")
    refuse(
        world, "bike-co", attest(world, "bike-co", "b-2", records, day, total_quantity=16), "root_mismatch", "says 16"
    )
    refuse(
        world,
        "bike-co",
        attest(world, "bike-co", "b-3", records, day, root=batch_root("b-x", records).hex()),
        "root_mismatch",
        "do not have the root",
    )
    # Records another provider uploaded under the same id are not this provider's attachment.
    world.upload("metro-co", "b-4", records)
    refuse(world, "bike-co", attest(world, "bike-co", "b-4", records, day, upload=False), "records_missing", "b-4")


@pytest.mark.parametrize(
    ("records", "code", "match"),
    [
        (lambda d: [km(A1, 1, d), km(A1, 2, d)], "invalid_batch", "two records in one day's batch"),
        (lambda d: [PointRecord(A1, 1, "00" * 32)], "invalid_batch", "its account and day"),
        (lambda d: [km(A1, 0, d), km(A2, 3, d)], "invalid_batch", "quantity 0"),
        (lambda d: [km("PA00000000000000ff", 1, d)], "not_found", "no point account PA00000000000000ff"),
        (lambda d: [km(A1, 1, d), km(A3, 1, d)], "no_consent", f"record 1 of batch b-1: {A3} has not consented"),
    ],
)
def test_every_record_is_checked_before_anything_is_awarded(world: World, records, code: str, match: str) -> None:  # type: ignore[no-untyped-def]
    day = day_of(world, 1)
    refuse(world, "bike-co", attest(world, "bike-co", "b-1", records(day), day), code, match)


def test_scope_rule_version_and_the_late_window(world: World) -> None:
    world.register("solar-co", [Role.DATA_PROVIDER])
    day = day_of(world, 1)
    one = [km(A1, 1, day)]
    refuse(world, "solar-co", attest(world, "solar-co", "s-1", one, day), "out_of_scope", "may not attest rule bike-km")
    refuse(world, "bike-co", attest(world, "bike-co", "b-1", one, day, version=2), "rule_version", "not version 2")
    refuse(world, "bike-co", attest(world, "bike-co", "b-2", one, day, rule_id="walk-km"), "out_of_scope", "walk-km")
    early = day_of(world, 11)
    refuse(world, "bike-co", attest(world, "bike-co", "b-3", [km(A1, 1, early)], early), "not_in_force", "not in force")
    today = world.clock.date()
    refuse(
        world,
        "bike-co",
        attest(world, "bike-co", "b-4", [km(A1, 1, today)], today),
        "period_not_ended",
        "has not ended",
    )
    late = day_of(world, 8)  # bike-km's late window is 7 days
    refuse(world, "bike-co", attest(world, "bike-co", "b-5", [km(A1, 1, late)], late), "late_attestation", "8 days ago")
    world.submit("bike-co", attest(world, "bike-co", "b-6", [km(A1, 1, day_of(world, 7))], day_of(world, 7)))
    refuse(world, "bike-co", attest(world, "bike-co", "b-6", one, day), "duplicate_key", "already attested")
    # Withdrawn consent stops the next batch.
    world.submit("tianfu-app", PointsConsent(account_id=A1, provider="bike-co", rule_id="bike-km", granted=False))
    refuse(world, "bike-co", attest(world, "bike-co", "b-7", one, day), "no_consent", "has not consented")


def test_a_holder_verifies_its_own_record_against_the_attested_root(world: World) -> None:
    day = day_of(world, 1)
    records = [km(f"PA{n:016x}", n + 1, day) for n in range(7)]
    root = batch_root("b-1", records)
    for position, record in enumerate(records):
        proof = record_proof("b-1", records, position)
        verify_record(batch_id="b-1", position=position, record=record, count=7, proof=proof, root=root)
    forged = PointRecord(records[3].account_id, 1_000, records[3].subject)
    with pytest.raises(Exception, match="not in the batch"):
        verify_record(
            batch_id="b-1", position=3, record=forged, count=7, proof=record_proof("b-1", records, 3), root=root
        )


def test_expiry_waits_for_the_lifetime_and_conserves_points(world: World) -> None:
    day = day_of(world, 1)
    world.submit("bike-co", attest(world, "bike-co", "b-1", [km(A1, 10, day)], day))
    month = day.strftime("%Y-%m")
    refuse(
        world, "authority", PointsExpire(through_month=month), "not_expirable", f"for {DEFAULT_LIFETIME_MONTHS} months"
    )
    refuse(world, "authority", PointsPolicy(lifetime_months=1), "shorter_lifetime", "never shortened")
    world.submit("authority", PointsPolicy(lifetime_months=24))
    world.advance(timedelta(days=31 * 26))
    out = world.submit("authority", PointsExpire(through_month=month))
    assert out.details == {"through_month": month, "accounts": 1, "points": 1_200}
    totals = world.state.point_totals[A1]
    assert (totals.balance, totals.expired, totals.awarded) == (0, 1_200, 1_200)
    assert (A1, month) not in world.state.point_lots
    assert A1 not in world.state.lot_months
    assert check_points(world.state) == []


def test_a_clawback_takes_a_batchs_awards_back_once_and_never_below_zero(world: World) -> None:
    day = day_of(world, 2)
    world.submit("bike-co", attest(world, "bike-co", "b-1", [km(A1, 10, day), km(A2, 5, day)], day))
    refuse(world, "authority", PointsClawback(batch_id="b-9", reason="fraud"), "not_found", "no attested batch b-9")
    refuse(
        world,
        "authority",
        PointsClawback(batch_id="b-1", accounts=(A3,), reason="fraud"),
        "not_found",
        f"no record for {A3}",
    )
    out = world.submit("authority", PointsClawback(batch_id="b-1", accounts=(A1,), reason="GPS spoofing"))
    assert out.details == {
        "batch_id": "b-1",
        "accounts": 1,
        "points": 1_200,
        "shortfall": 0,
        "cancelled": [],  # A1 has no pending order: its balance covers the clawback
        "expired": 0,
    }
    refuse(
        world,
        "authority",
        PointsClawback(batch_id="b-1", accounts=(A1,), reason="again"),
        "invalid_state",
        "nothing left to claw back",
    )
    out = world.submit("authority", PointsClawback(batch_id="b-1", reason="the whole batch"))
    assert out.details == {
        "batch_id": "b-1",
        "accounts": 1,
        "points": 600,
        "shortfall": 0,
        "cancelled": [],
        "expired": 0,
    }
    assert world.state.attestations["b-1"].clawed_back == 1_800
    assert world.state.point_totals[A1].clawed_back == 1_200
    assert check_points(world.state) == []


@pytest.mark.parametrize(
    ("who", "payload"),
    [
        ("tianfu-app", PointsExpire(through_month="2020-01")),
        ("bike-co", PointsPolicy(lifetime_months=6)),
        ("bike-co", PointsClawback(batch_id="b-1", reason="x")),
    ],
)
def test_only_the_authority_expires_sets_the_policy_and_claws_back(world: World, who: str, payload: object) -> None:
    from pydantic import BaseModel

    assert isinstance(payload, BaseModel)
    refuse(world, who, payload, "forbidden", "needs the role authority")


def test_only_a_data_provider_attests(world: World) -> None:
    day = day_of(world, 1)
    refuse(world, "tianfu-app", attest(world, "tianfu-app", "t-1", [km(A1, 1, day)], day), "forbidden", "data_provider")
