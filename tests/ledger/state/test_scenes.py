"""Low-carbon scenes (apply, evaluate, decide, suspend, reinstate, revoke, renew), their offers, and the
redemption orders that hold, spend or give back an account's points."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any, get_args

import pytest
from pydantic import BaseModel

from ledger.invariants import check_points
from ledger.points_batch import PointRecord, batch_root, subject_commitment
from ledger.state import KIND_ROLES
from ledger.state.records import PointLot, PointTotals
from ledger.transactions import (
    PAYLOAD_TYPES,
    OfferPublish,
    OfferWithdraw,
    Opinion,
    PointAccountId,
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsClawback,
    PointsConsent,
    PointsExpire,
    PointsPolicy,
    PointsRedeem,
    ProviderScope,
    RedemptionCancel,
    RedemptionFulfil,
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
    SceneEvaluate,
    SceneReinstate,
    SceneRenew,
    SceneRevoke,
    SceneSuspend,
)
from tests.ledger.scenario import SHA, World
from tests.ledger.state.test_points import out_index, refuse, rule

A1, A2, A3 = "PA00000000000000a1", "PA00000000000000a2", "PA00000000000000a3"
MARCH, APRIL = "2025-03", "2025-04"


def order_id(n: int) -> str:
    return f"RO{n:016x}"


def award(w: World, batch_id: str, account: str, km: int, day: date) -> None:
    """bike-co attests `km` kilometres of `account` on `day` (120 points a km under bike-km)."""
    records = [PointRecord(account, km, subject_commitment("account_day", account, day.isoformat()))]
    w.upload("bike-co", batch_id, records)
    attest = PointsAttest(
        batch_id=batch_id,
        rule_id="bike-km",
        version=1,
        day=day,
        count=1,
        total_quantity=km,
        root=batch_root(batch_id, records).hex(),
    )
    w.submit("bike-co", attest)


@pytest.fixture
def world() -> World:
    """`points_world()`."""
    return points_world()


def points_world() -> World:
    """Two merchants, an evaluator, a merchant who also evaluates, two operators' apps; on 2 April 2025,
    A1 (tianfu-app) holds 1,200 points from March and 1,200 from April, A2 (tianfu-app) 600 from March,
    and A3 (other-app) 1,200 from April."""
    w = World()
    w.found()
    w.register("teahouse", [Role.MERCHANT])
    w.register("bakery", [Role.MERCHANT])
    w.register("green-eval", [Role.SCENE_EVALUATOR])
    w.register("eval-shop", [Role.MERCHANT, Role.SCENE_EVALUATOR])
    w.register("bike-co", [Role.DATA_PROVIDER])
    w.register("tianfu-app", [Role.PLATFORM_OPERATOR])
    w.register("other-app", [Role.PLATFORM_OPERATOR])
    w.submit("authority", rule("bike-km", w.clock.date()))
    w.submit("authority", ProviderScope(provider="bike-co", rules=("bike-km",)))
    for account, app in ((A1, "tianfu-app"), (A2, "tianfu-app"), (A3, "other-app")):
        w.submit(app, PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
        w.submit(app, PointsConsent(account_id=account, provider="bike-co", rule_id="bike-km", granted=True))
    w.advance(timedelta(days=32))
    award(w, "b-0330", A1, 10, date(2025, 3, 30))
    award(w, "b-0330-2", A2, 5, date(2025, 3, 30))
    award(w, "b-0401", A1, 10, date(2025, 4, 1))
    award(w, "b-0401-2", A3, 10, date(2025, 4, 1))
    assert w.clock.date() == date(2025, 4, 2)
    return w


def today(w: World) -> date:
    return w.clock.date()


def apply(scene_id: str = "tea-house") -> SceneApply:
    return SceneApply(
        scene_id=scene_id,
        name="Jinli Tea House",
        category=SceneCategory.RESTAURANT,
        district="Wuhou",
        address="231 Wuhou Ci Street",
        description="Refill cups, no disposables",
    )


def evaluate(scene_id: str = "tea-house", opinion: Opinion = Opinion.POSITIVE, score: int = 86) -> SceneEvaluate:
    return SceneEvaluate(scene_id=scene_id, score=score, opinion=opinion, report_sha256=SHA)


def approve(w: World, scene_id: str = "tea-house", days: int = 365) -> SceneDecide:
    return SceneDecide(scene_id=scene_id, approve=True, valid_until=today(w) + timedelta(days=days), reason="Meets it")


def approved_scene(w: World, scene_id: str = "tea-house", merchant: str = "teahouse", days: int = 365) -> None:
    w.submit(merchant, apply(scene_id))
    w.submit("green-eval", evaluate(scene_id))
    w.submit("authority", approve(w, scene_id, days))


def offer(w: World, offer_id: str = "tea-set", scene_id: str = "tea-house", **changes: Any) -> OfferPublish:
    fields: dict[str, Any] = {
        "offer_id": offer_id,
        "scene_id": scene_id,
        "title": "A pot of Zhuyeqing",
        "price_points": 500,
        "stock": 10,
        "per_account_limit": 3,
        "valid_from": today(w),
        "valid_until": today(w) + timedelta(days=30),
    }
    fields.update(changes)
    return OfferPublish.model_validate(fields)


def redeem(n: int, account: str = A1, quantity: int = 1, offer_id: str = "tea-set") -> PointsRedeem:
    return PointsRedeem(order_id=order_id(n), offer_id=offer_id, account_id=account, quantity=quantity)


@pytest.fixture
def shop(world: World) -> World:
    """`open_shop(world)`."""
    return open_shop(world)


def open_shop(world: World) -> World:
    """The world with tea-house approved for a year and its tea-set offer (500 points, 10 in stock, 3 an
    account) running for 30 days."""
    approved_scene(world)
    world.submit("teahouse", offer(world))
    return world


def balances(w: World, account: str) -> tuple[int, int, dict[str, int]]:
    """(balance, redeemed, lots by month) of an account."""
    t = w.state.point_totals[account]
    held = {month: w.state.point_lots[(account, month)].points for month in w.state.lot_months.get(account, ())}
    return t.balance, t.redeemed, held


# --- scenes ---------------------------------------------------------------------------------------------


def test_a_merchant_applies_for_a_scene_under_a_new_id(world: World) -> None:
    out = world.submit("teahouse", apply())
    assert out.details == {"scene_id": "tea-house", "state": "applied"}
    scene = world.state.scenes["tea-house"]
    assert (scene.merchant, scene.state, scene.category, scene.applied_at) == (
        "teahouse",
        "applied",
        "restaurant",
        out_index(world),
    )
    assert (scene.evaluator, scene.decided_at, scene.valid_until) == (None, None, None)
    refuse(world, "bakery", apply(), "conflict", "scene tea-house already exists; apply under another scene id")


def test_an_evaluator_scores_a_scene_it_has_no_stake_in(world: World) -> None:
    refuse(world, "green-eval", evaluate("ghost"), "not_found", "no scene ghost")
    world.submit("eval-shop", apply("eval-cafe"))
    refuse(
        world,
        "eval-shop",
        evaluate("eval-cafe"),
        "conflict_of_interest",
        "eval-shop runs scene eval-cafe and may not evaluate it",
    )
    world.submit("teahouse", apply())
    out = world.submit("eval-shop", evaluate(score=72))  # a merchant may evaluate another merchant's scene
    assert out.details == {"scene_id": "tea-house", "score": 72, "opinion": "positive"}
    scene = world.state.scenes["tea-house"]
    assert (scene.state, scene.evaluator, scene.score, scene.opinion, scene.evaluated_at) == (
        "evaluated",
        "eval-shop",
        72,
        "positive",
        out_index(world),
    )
    refuse(
        world,
        "green-eval",
        evaluate(),
        "invalid_state",
        "scene tea-house is evaluated; only an applied scene, or an approved one",
    )


def test_the_authority_approves_an_evaluated_scene_with_a_positive_opinion_until_a_later_day(world: World) -> None:
    refuse(world, "authority", approve(world, "ghost"), "not_found", "no scene ghost")
    world.submit("teahouse", apply())
    refuse(world, "authority", approve(world), "invalid_state", "tea-house is applied; only an evaluated scene")
    world.submit("green-eval", evaluate())
    for days in (0, -1):
        refuse(
            world,
            "authority",
            approve(world, days=days),
            "invalid_state",
            f"until {today(world) + timedelta(days=days)} would not outlast today \\({today(world)} UTC\\)",
        )
    out = world.submit("authority", approve(world, days=1))
    until = (today(world) + timedelta(days=1)).isoformat()
    assert out.details == {"scene_id": "tea-house", "valid_until": until}
    scene = world.state.scenes["tea-house"]
    assert (scene.state, scene.valid_until, scene.decided_at) == ("approved", until, out_index(world))
    refuse(world, "authority", approve(world), "invalid_state", "tea-house is approved; only an evaluated scene")


def test_a_scene_with_a_negative_evaluation_is_rejected_not_approved(world: World) -> None:
    world.submit("bakery", apply("bakery-1"))
    world.submit("green-eval", evaluate("bakery-1", Opinion.NEGATIVE, 31))
    refuse(
        world,
        "authority",
        approve(world, "bakery-1"),
        "invalid_state",
        "bakery-1 has a negative evaluation; approval needs a positive one \\(reject it instead\\)",
    )
    reject = SceneDecide(scene_id="bakery-1", approve=False, reason="Disposable packaging")
    out = world.submit("authority", reject)
    assert out.details == {"scene_id": "bakery-1", "state": "rejected"}
    scene = world.state.scenes["bakery-1"]
    assert (scene.state, scene.valid_until, scene.decided_at) == ("rejected", None, out_index(world))
    refuse(world, "green-eval", evaluate("bakery-1"), "invalid_state", "bakery-1 is rejected")
    refuse(world, "authority", reject, "invalid_state", "bakery-1 is rejected; only an evaluated scene is decided")


def test_an_approved_scene_is_suspended_reinstated_and_revoked_for_good(world: World) -> None:
    approved_scene(world)
    suspend = SceneSuspend(scene_id="tea-house", reason="Complaint under review")
    reinstate = SceneReinstate(scene_id="tea-house", reason="Complaint dismissed")
    revoke = SceneRevoke(scene_id="tea-house", reason="Disposables found")
    refuse(world, "authority", reinstate, "invalid_state", "tea-house is approved; scene.reinstate needs suspended")
    assert world.submit("authority", suspend).details == {"scene_id": "tea-house", "state": "suspended"}
    refuse(world, "authority", suspend, "invalid_state", "tea-house is suspended; scene.suspend needs approved")
    assert world.submit("authority", reinstate).details == {"scene_id": "tea-house", "state": "approved"}
    world.submit("authority", suspend)
    assert world.submit("authority", revoke).details == {"scene_id": "tea-house", "state": "revoked"}
    for payload in (suspend, reinstate, revoke):
        refuse(world, "authority", payload, "invalid_state", "tea-house is revoked")
    refuse(world, "green-eval", evaluate(), "invalid_state", "tea-house is revoked")
    refuse(world, "authority", SceneSuspend(scene_id="ghost", reason="r"), "not_found", "no scene ghost")

    approved_scene(world, "tea-house-2")
    assert world.submit("authority", SceneRevoke(scene_id="tea-house-2", reason="r")).details["state"] == "revoked"


def test_a_renewal_needs_a_positive_evaluation_since_the_last_approval_and_a_later_end(world: World) -> None:
    approved_scene(world, days=30)
    approved_until = world.state.scenes["tea-house"].valid_until
    renew = SceneRenew(scene_id="tea-house", valid_until=today(world) + timedelta(days=400))
    refuse(world, "authority", SceneRenew(scene_id="ghost", valid_until=date(2030, 1, 1)), "not_found", "no scene")
    refuse(world, "authority", renew, "invalid_state", "has not been evaluated since it was last approved")
    world.submit("green-eval", evaluate(opinion=Opinion.NEGATIVE, score=40))
    assert world.state.scenes["tea-house"].state == "approved"  # a re-evaluation leaves the approval in place
    refuse(world, "authority", renew, "invalid_state", "latest evaluation of scene tea-house is negative")
    world.submit("green-eval", evaluate(score=90))
    refuse(
        world,
        "authority",
        SceneRenew(scene_id="tea-house", valid_until=today(world) + timedelta(days=30)),
        "invalid_state",
        f"already approved until {approved_until}; a renewal must end later",
    )
    out = world.submit("authority", renew)
    assert out.details == {"scene_id": "tea-house", "valid_until": renew.valid_until.isoformat()}
    scene = world.state.scenes["tea-house"]
    assert (scene.state, scene.valid_until, scene.decided_at) == (
        "approved",
        renew.valid_until.isoformat(),
        out_index(world),
    )
    later = SceneRenew(scene_id="tea-house", valid_until=today(world) + timedelta(days=800))
    refuse(world, "authority", later, "invalid_state", "has not been evaluated since it was last approved")


def test_a_lapsed_approval_is_renewed_only_beyond_today(world: World) -> None:
    approved_scene(world, days=5)
    world.advance(timedelta(days=10))
    world.submit("green-eval", evaluate())
    past = SceneRenew(scene_id="tea-house", valid_until=today(world) - timedelta(days=1))
    refuse(world, "authority", past, "invalid_state", "would not outlast today")
    world.submit("authority", SceneRenew(scene_id="tea-house", valid_until=today(world) + timedelta(days=90)))
    assert world.state.scenes["tea-house"].valid_until == (today(world) + timedelta(days=90)).isoformat()


def test_a_suspended_scene_is_neither_evaluated_nor_renewed(world: World) -> None:
    approved_scene(world)
    world.submit("authority", SceneSuspend(scene_id="tea-house", reason="r"))
    refuse(world, "green-eval", evaluate(), "invalid_state", "tea-house is suspended")
    renew = SceneRenew(scene_id="tea-house", valid_until=today(world) + timedelta(days=800))
    refuse(world, "authority", renew, "invalid_state", "tea-house is suspended; only an approved scene is renewed")


# --- offers ---------------------------------------------------------------------------------------------


def test_a_merchant_publishes_an_offer_at_its_own_approved_scene(world: World) -> None:
    refuse(world, "teahouse", offer(world, scene_id="ghost"), "not_found", "no scene ghost")
    world.submit("teahouse", apply())
    refuse(
        world,
        "teahouse",
        offer(world),
        "scene_not_approved",
        "scene tea-house is applied; an offer needs an approved scene",
    )
    world.submit("green-eval", evaluate())
    world.submit("authority", approve(world, days=60))
    refuse(world, "bakery", offer(world), "forbidden", "scene tea-house belongs to teahouse, not bakery")
    scene_until = today(world) + timedelta(days=60)
    refuse(
        world,
        "teahouse",
        offer(world, valid_until=scene_until + timedelta(days=1)),
        "invalid_state",
        f"after the approval of scene tea-house ends \\({scene_until}\\); end it by then",
    )
    refuse(
        world,
        "teahouse",
        offer(world, valid_from=today(world) - timedelta(days=1)),
        "invalid_state",
        "before today .*; start it today or later",
    )
    out = world.submit("teahouse", offer(world, valid_until=scene_until))
    assert out.details == {"offer_id": "tea-set", "scene_id": "tea-house", "stock": 10}
    stored = world.state.offers["tea-set"]
    assert (stored.merchant, stored.state, stored.stock, stored.valid_until, stored.published_at) == (
        "teahouse",
        "active",
        10,
        scene_until.isoformat(),
        out_index(world),
    )
    refuse(world, "teahouse", offer(world), "conflict", "offer tea-set already exists")


def test_no_offer_at_a_suspended_or_lapsed_scene(world: World) -> None:
    approved_scene(world, days=3)
    world.submit("authority", SceneSuspend(scene_id="tea-house", reason="r"))
    refuse(world, "teahouse", offer(world), "scene_not_approved", "tea-house is suspended")
    world.submit("authority", SceneReinstate(scene_id="tea-house", reason="r"))
    world.advance(timedelta(days=4))
    refuse(
        world,
        "teahouse",
        offer(world, valid_until=today(world)),
        "scene_not_approved",
        "the approval of scene tea-house ended on .*; an offer needs it renewed",
    )


def test_a_merchant_withdraws_its_own_active_offer(shop: World) -> None:
    refuse(shop, "teahouse", OfferWithdraw(offer_id="ghost"), "not_found", "no offer ghost")
    refuse(shop, "bakery", OfferWithdraw(offer_id="tea-set"), "forbidden", "offer tea-set belongs to teahouse")
    assert shop.submit("teahouse", OfferWithdraw(offer_id="tea-set")).details == {"offer_id": "tea-set"}
    assert shop.state.offers["tea-set"].state == "withdrawn"
    refuse(shop, "teahouse", OfferWithdraw(offer_id="tea-set"), "invalid_state", "tea-set is already withdrawn")


# --- redemption orders ----------------------------------------------------------------------------------


def test_an_order_takes_the_oldest_points_and_the_stock_and_holds_them(shop: World) -> None:
    out = shop.submit("tianfu-app", redeem(1, quantity=3))
    assert out.details == {
        "order_id": order_id(1),
        "offer_id": "tea-set",
        "account_id": A1,
        "quantity": 3,
        "points": 1_500,
        "lots": [f"{MARCH}:1200", f"{APRIL}:300"],
    }
    assert balances(shop, A1) == (900, 1_500, {APRIL: 900})
    assert shop.state.offers["tea-set"].stock == 7
    order = shop.state.redemptions[order_id(1)]
    assert (order.state, order.lots, order.placed_at, order.closed_at) == (
        "pending",
        (f"{MARCH}:1200", f"{APRIL}:300"),
        out_index(shop),
        None,
    )
    refuse(shop, "tianfu-app", redeem(1, A2), "conflict", f"order {order_id(1)} already exists")
    assert check_points(shop.state) == []


def test_an_order_is_placed_by_the_accounts_operator_for_an_open_offer(shop: World) -> None:
    refuse(shop, "tianfu-app", redeem(1, "PA00000000000000ff"), "not_found", "no point account PA00000000000000ff")
    refuse(
        shop,
        "other-app",
        redeem(1, A1),
        "forbidden",
        f"point account {A1} is held in tianfu-app's app; only tianfu-app orders for it",
    )
    refuse(shop, "tianfu-app", redeem(1, offer_id="ghost"), "not_found", "no offer ghost")
    shop.submit("teahouse", offer(shop, "later", valid_from=today(shop) + timedelta(days=2)))
    refuse(shop, "tianfu-app", redeem(1, offer_id="later"), "offer_closed", "offer later runs .*; today .* is outside")
    shop.submit("teahouse", OfferWithdraw(offer_id="later"))
    refuse(shop, "tianfu-app", redeem(1, offer_id="later"), "offer_closed", "offer later is withdrawn")
    shop.submit("tianfu-app", redeem(1, offer_id="tea-set"))
    shop.advance(timedelta(days=31))  # tea-set ran for 30 days
    refuse(shop, "tianfu-app", redeem(2), "offer_closed", "offer tea-set runs .*; today .* is outside it")


def test_no_order_at_a_scene_that_is_not_approved(shop: World) -> None:
    shop.submit("authority", SceneSuspend(scene_id="tea-house", reason="r"))
    refuse(shop, "tianfu-app", redeem(1), "scene_not_approved", "tea-house is suspended; an order needs")
    shop.submit("authority", SceneReinstate(scene_id="tea-house", reason="r"))
    shop.submit("tianfu-app", redeem(1))


def test_an_order_needs_stock_the_accounts_limit_and_points(shop: World) -> None:
    shop.submit("teahouse", offer(shop, "cake", price_points=100, stock=2, per_account_limit=5))
    refuse(shop, "tianfu-app", redeem(1, A2, 3, "cake"), "out_of_stock", "offer cake has 2 item\\(s\\) left; 3 were")
    shop.submit("tianfu-app", redeem(1, A1, 2))
    refuse(
        shop,
        "tianfu-app",
        redeem(2, A1, 2),
        "limit_reached",
        f"offer tea-set allows 3 item\\(s\\) per account; {A1} has ordered 2, so at most 1 more",
    )
    refuse(shop, "tianfu-app", redeem(2, A2, 2), "insufficient_points", f"{A2} holds 600 points; 1000 are needed")
    shop.submit("tianfu-app", redeem(2, A2, 1))  # the limit is per account
    assert balances(shop, A2) == (100, 500, {MARCH: 100})


def test_the_offers_merchant_fulfils_a_pending_order_and_its_points_are_spent(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=2))
    fulfil = RedemptionFulfil(order_id=order_id(1))
    refuse(shop, "teahouse", RedemptionFulfil(order_id=order_id(9)), "not_found", f"no redemption order {order_id(9)}")
    refuse(shop, "bakery", fulfil, "forbidden", "only teahouse may fulfil it, not bakery")
    out = shop.submit("teahouse", fulfil)
    assert out.details == {
        "order_id": order_id(1),
        "state": "fulfilled",
        "points": 1_000,
        "lots": [f"{MARCH}:1000"],
        "expired": 0,
    }
    order = shop.state.redemptions[order_id(1)]
    assert (order.state, order.closed_at) == ("fulfilled", out_index(shop))
    assert balances(shop, A1) == (1_400, 1_000, {MARCH: 200, APRIL: 1_200})
    refuse(shop, "teahouse", fulfil, "invalid_state", "is already fulfilled; only a pending order is fulfilled")
    refuse(
        shop,
        "teahouse",
        RedemptionCancel(order_id=order_id(1), reason="r"),
        "invalid_state",
        "is already fulfilled; only a pending order is cancelled",
    )
    refuse(shop, "tianfu-app", redeem(2, quantity=2), "limit_reached", "has ordered 2")  # fulfilled still counts
    assert check_points(shop.state) == []


@pytest.mark.parametrize("canceller", ["teahouse", "tianfu-app"])
def test_the_merchant_or_the_operator_cancels_and_points_and_stock_come_back(shop: World, canceller: str) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=3))
    cancel = RedemptionCancel(order_id=order_id(1), reason="Shop closed that day")
    refuse(shop, "tianfu-app", RedemptionCancel(order_id=order_id(9), reason="r"), "not_found", "no redemption order")
    for other in ("bakery", "other-app"):
        refuse(shop, other, cancel, "forbidden", f"only teahouse or tianfu-app may cancel it, not {other}")
    out = shop.submit(canceller, cancel)
    assert out.details == {
        "order_id": order_id(1),
        "state": "cancelled",
        "points": 1_500,
        "lots": [f"{MARCH}:1200", f"{APRIL}:300"],
        "expired": 0,
    }
    assert balances(shop, A1) == (2_400, 0, {MARCH: 1_200, APRIL: 1_200})
    assert shop.state.offers["tea-set"].stock == 10
    order = shop.state.redemptions[order_id(1)]
    assert (order.state, order.closed_at) == ("cancelled", out_index(shop))
    refuse(shop, canceller, cancel, "invalid_state", "is already cancelled")
    shop.submit("tianfu-app", redeem(2, quantity=3))  # a cancelled order no longer counts toward the limit
    assert check_points(shop.state) == []


def test_a_cancelled_order_of_a_withdrawn_offer_still_returns_its_stock(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=2))
    shop.submit("teahouse", OfferWithdraw(offer_id="tea-set"))
    shop.submit("tianfu-app", RedemptionCancel(order_id=order_id(1), reason="r"))
    assert (shop.state.offers["tea-set"].stock, shop.state.offers["tea-set"].state) == (10, "withdrawn")


# --- a cancel after the lot's lifetime, and the ordered index ------------------------------------------


def advance_to(w: World, day: date) -> None:
    """Move the world's clock forward to `day` (same time of day)."""
    w.advance(timedelta(days=(day - today(w)).days))


def expired_of(w: World, account: str) -> int:
    return w.state.point_totals[account].expired


def cancel(n: int) -> RedemptionCancel:
    return RedemptionCancel(order_id=order_id(n), reason="Shop closed that day")


# March's points stay redeemable for DEFAULT_LIFETIME_MONTHS (12) months after March 2025: through 31 March
# 2026. From 1 April 2026 `points.expire` may expire them; April's, from 1 May 2026.
MARCH_LAPSES, APRIL_LAPSES = date(2026, 4, 1), date(2026, 5, 1)


def test_a_cancel_after_the_lots_month_was_expired_counts_its_points_expired(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=2))  # 1,000 of March's 1,200
    advance_to(shop, MARCH_LAPSES)
    shop.submit("authority", PointsExpire(through_month=MARCH))  # the 200 left in March's lot
    assert balances(shop, A1) == (1_200, 1_000, {APRIL: 1_200})
    out = shop.submit("tianfu-app", cancel(1))
    assert out.details == {
        "order_id": order_id(1),
        "state": "cancelled",
        "points": 1_000,
        "lots": [f"{MARCH}:1000"],
        "expired": 1_000,
    }
    # March's lot is not brought back: the points are expired, not in the balance.
    assert balances(shop, A1) == (1_200, 0, {APRIL: 1_200})
    assert expired_of(shop, A1) == 1_200
    assert shop.state.offers["tea-set"].stock == 10  # the stock still comes back
    # The projection rows storage writes say the same.
    assert shop.state.lookup(PointLot.TABLE, (A1, MARCH)) is None
    assert shop.state.lookup(PointTotals.TABLE, (A1,)) == PointTotals(A1, 2_400, 1_200, 0, 1_200, 0)
    assert [lot for lot in shop.state.records(PointLot.TABLE) if lot.account_id == A1] == [PointLot(A1, APRIL, 1_200)]
    assert check_points(shop.state) == []


def test_a_cancel_past_the_lifetime_expires_the_points_even_before_points_expire_runs(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=2))
    advance_to(shop, MARCH_LAPSES)
    out = shop.submit("teahouse", cancel(1))
    assert out.details["expired"] == 1_000
    # The 200 still in March's lot stay in the balance until the authority expires them.
    assert balances(shop, A1) == (1_400, 0, {MARCH: 200, APRIL: 1_200})
    assert expired_of(shop, A1) == 1_000
    assert check_points(shop.state) == []
    shop.submit("authority", PointsExpire(through_month=MARCH))
    assert balances(shop, A1) == (1_200, 0, {APRIL: 1_200})
    assert expired_of(shop, A1) == 1_200
    assert check_points(shop.state) == []


def test_a_cancel_on_the_last_redeemable_day_returns_the_points_to_their_lot(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=3))
    advance_to(shop, MARCH_LAPSES - timedelta(days=1))
    out = shop.submit("tianfu-app", cancel(1))
    assert out.details["expired"] == 0
    assert balances(shop, A1) == (2_400, 0, {MARCH: 1_200, APRIL: 1_200})
    assert expired_of(shop, A1) == 0
    assert shop.state.lookup(PointLot.TABLE, (A1, MARCH)) == PointLot(A1, MARCH, 1_200)
    assert check_points(shop.state) == []


def test_a_mixed_order_expires_the_lapsed_lots_part_and_returns_the_live_ones(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=3))  # March:1200, April:300
    advance_to(shop, MARCH_LAPSES + timedelta(days=14))
    out = shop.submit("tianfu-app", cancel(1))
    assert (out.details["lots"], out.details["expired"]) == ([f"{MARCH}:1200", f"{APRIL}:300"], 1_200)
    assert balances(shop, A1) == (1_200, 0, {APRIL: 1_200})
    assert expired_of(shop, A1) == 1_200
    assert A1 not in {lot.account_id for lot in shop.state.records(PointLot.TABLE) if lot.month == MARCH}
    assert check_points(shop.state) == []
    advance_to(shop, APRIL_LAPSES)
    shop.submit("authority", PointsExpire(through_month=APRIL))
    totals = shop.state.point_totals[A1]
    assert (totals.awarded, totals.balance, totals.redeemed, totals.expired) == (2_400, 0, 0, 2_400)
    assert check_points(shop.state) == []


@pytest.mark.parametrize(
    ("lifetime", "day", "lapsed"),
    [
        (None, MARCH_LAPSES - timedelta(days=1), False),
        (None, MARCH_LAPSES, True),
        (24, MARCH_LAPSES + timedelta(days=14), False),  # the policy in force at the cancel, lengthened since
        (24, date(2027, 4, 1), True),
    ],
)
def test_a_cancel_expires_exactly_what_points_expire_would(
    shop: World, lifetime: int | None, day: date, lapsed: bool
) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=2))  # March:1000
    if lifetime is not None:
        shop.submit("authority", PointsPolicy(lifetime_months=lifetime))
    advance_to(shop, day)
    out = shop.submit("tianfu-app", cancel(1))
    assert out.details["expired"] == (1_000 if lapsed else 0)
    expire = PointsExpire(through_month=MARCH)
    if lapsed:
        shop.submit("authority", expire)
    else:
        refuse(shop, "authority", expire, "not_expirable", f"points of {MARCH} stay redeemable")
    assert check_points(shop.state) == []


def scanned_orders(w: World) -> dict[tuple[str, str], int]:
    """What `state.ordered` must hold: items of each (account, offer) in orders not cancelled."""
    out: dict[tuple[str, str], int] = {}
    for r in w.state.redemptions.values():
        if r.state != "cancelled":
            out[(r.account_id, r.offer_id)] = out.get((r.account_id, r.offer_id), 0) + r.quantity
    return out


def replayed(w: World) -> World:
    """A fresh world that replays `w`'s log from scratch (with the same uploaded points batches)."""
    fresh = World(uploads=dict(w.uploads))
    for tx, at in w.log:
        fresh.accept_at(tx, at)
    return fresh


def test_the_ordered_index_follows_orders_and_matches_a_replay(shop: World) -> None:
    shop.submit("teahouse", offer(shop, "cake", price_points=100, stock=5, per_account_limit=5))
    shop.submit("tianfu-app", redeem(1, A1, 2))
    shop.submit("tianfu-app", redeem(2, A2, 1))
    shop.submit("tianfu-app", redeem(3, A1, 2, "cake"))
    assert shop.state.ordered == {(A1, "tea-set"): 2, (A2, "tea-set"): 1, (A1, "cake"): 2}
    shop.submit("teahouse", RedemptionFulfil(order_id=order_id(1)))
    shop.submit("teahouse", cancel(3))
    assert shop.state.ordered == {(A1, "tea-set"): 2, (A2, "tea-set"): 1}  # fulfilled counts, cancelled not
    refuse(shop, "tianfu-app", redeem(4, A1, 2), "limit_reached", f"{A1} has ordered 2, so at most 1 more")
    shop.submit("tianfu-app", redeem(4, A1, 1, "cake"))
    advance_to(shop, MARCH_LAPSES)
    shop.submit("tianfu-app", cancel(2))  # A2's March points, expired on the way back
    assert shop.state.ordered == scanned_orders(shop) == {(A1, "tea-set"): 2, (A1, "cake"): 1}
    again = replayed(shop)
    assert again.snapshot() == shop.snapshot()
    assert check_points(again.state) == []


# --- a clawback reaches the points of pending orders ----------------------------------------------------


def clawback(batch_id: str = "b-0330", *accounts: str) -> PointsClawback:
    return PointsClawback(batch_id=batch_id, accounts=accounts, reason="GPS spoofing")


def assert_consistent(w: World) -> None:
    """Conservation, the ordered index and every memory index match a replay of the log from scratch, and
    each account's redeemed points are its pending and fulfilled orders' points."""
    assert check_points(w.state) == []
    assert w.state.ordered == scanned_orders(w)
    held: dict[str, int] = {}
    for r in w.state.redemptions.values():
        if r.state != "cancelled":
            held[r.account_id] = held.get(r.account_id, 0) + r.points
    assert {a: t.redeemed for a, t in w.state.point_totals.items() if t.redeemed} == held
    assert replayed(w).snapshot() == w.snapshot()


def test_a_pending_order_no_longer_dodges_a_clawback(shop: World) -> None:
    """A1 holds 1,200 fraudulent March points and 1,200 April ones; an order holds all of March's and 300 of
    April's. The clawback cancels the order first, so it takes March's points, not April's."""
    shop.submit("tianfu-app", redeem(1, quantity=3))
    assert balances(shop, A1) == (900, 1_500, {APRIL: 900})
    out = shop.submit("authority", clawback("b-0330", A1))
    assert out.details == {
        "batch_id": "b-0330",
        "accounts": 1,
        "points": 1_200,
        "shortfall": 0,
        "cancelled": [order_id(1)],
        "expired": 0,
    }
    assert balances(shop, A1) == (1_200, 0, {APRIL: 1_200})  # no fraudulent point left, no legitimate one lost
    assert shop.state.point_totals[A1].clawed_back == 1_200
    order = shop.state.redemptions[order_id(1)]
    assert (order.state, order.closed_at) == ("cancelled", out_index(shop))
    assert shop.state.offers["tea-set"].stock == 10
    # The order cannot be cancelled again to bring the points back, and the batch is settled for A1.
    refuse(shop, "tianfu-app", cancel(1), "invalid_state", "is already cancelled")
    refuse(shop, "authority", clawback("b-0330", A1), "invalid_state", "nothing left to claw back")
    assert shop.state.attestations["b-0330"].clawed_back == 1_200
    assert_consistent(shop)


def test_a_clawback_the_balance_covers_cancels_no_order(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1))  # 500 of March's points
    out = shop.submit("authority", clawback("b-0330", A1))
    assert (out.details["points"], out.details["shortfall"], out.details["cancelled"]) == (1_200, 0, [])
    assert balances(shop, A1) == (700, 500, {APRIL: 700})  # March's 700, then 500 of April's
    assert shop.state.redemptions[order_id(1)].state == "pending"
    assert shop.state.offers["tea-set"].stock == 9
    assert_consistent(shop)


def test_a_fulfilled_order_is_spent_and_the_clawback_records_a_shortfall(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=3))
    shop.submit("teahouse", RedemptionFulfil(order_id=order_id(1)))
    out = shop.submit("authority", clawback("b-0330", A1))
    assert out.details == {
        "batch_id": "b-0330",
        "accounts": 1,
        "points": 900,
        "shortfall": 300,
        "cancelled": [],
        "expired": 0,
    }
    assert balances(shop, A1) == (0, 1_500, {})
    assert shop.state.redemptions[order_id(1)].state == "fulfilled"
    assert_consistent(shop)


def test_a_clawback_cancels_pending_orders_newest_first_until_the_balance_covers_it(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1))  # March:500
    shop.submit("tianfu-app", redeem(2, quantity=2))  # March:700, April:300
    shop.submit("teahouse", offer(shop, "cake", price_points=100, stock=5, per_account_limit=5))
    shop.submit("tianfu-app", redeem(3, quantity=2, offer_id="cake"))  # April:200
    shop.submit("teahouse", RedemptionFulfil(order_id=order_id(3)))  # spent: never cancelled
    assert balances(shop, A1) == (700, 1_700, {APRIL: 700})
    out = shop.submit("authority", clawback("b-0330", A1))
    # Cancelling order 2 brings the balance to 1,700, which covers 1,200: order 1 stays pending.
    assert (out.details["cancelled"], out.details["points"], out.details["shortfall"]) == ([order_id(2)], 1_200, 0)
    assert balances(shop, A1) == (500, 700, {APRIL: 500})  # March's 700 first, then 500 of April's
    states = {n: shop.state.redemptions[order_id(n)].state for n in (1, 2, 3)}
    assert states == {1: "pending", 2: "cancelled", 3: "fulfilled"}
    assert (shop.state.offers["tea-set"].stock, shop.state.offers["cake"].stock) == (9, 3)
    assert_consistent(shop)


def test_a_batch_clawback_cancels_orders_of_several_accounts_and_returns_all_their_stock(shop: World) -> None:
    day = date(2025, 3, 31)
    records = [PointRecord(a, 10, subject_commitment("account_day", a, day.isoformat())) for a in (A1, A2)]
    shop.upload("bike-co", "b-0331", records)
    shop.submit(
        "bike-co",
        PointsAttest(
            batch_id="b-0331",
            rule_id="bike-km",
            version=1,
            day=day,
            count=2,
            total_quantity=20,
            root=batch_root("b-0331", records).hex(),
        ),
    )
    shop.submit("teahouse", offer(shop, "feast", price_points=1_000, stock=5, per_account_limit=5))
    shop.submit("tianfu-app", redeem(1, A2, 2))  # A2: March 1,800 → 800
    shop.submit("tianfu-app", redeem(2, A2, 1))  # → 300
    shop.submit("tianfu-app", redeem(3, A1, 3))  # A1: 3,600 → 2,100
    shop.submit("tianfu-app", redeem(4, A1, 2, "feast"))  # → 100
    assert shop.state.offers["tea-set"].stock == 4
    out = shop.submit("authority", clawback("b-0331"))
    assert out.details == {
        "batch_id": "b-0331",
        "accounts": 2,
        "points": 2_400,
        "shortfall": 0,
        "cancelled": [order_id(4), order_id(2), order_id(1)],  # by account, each account's newest first
        "expired": 0,
    }
    assert (shop.state.offers["tea-set"].stock, shop.state.offers["feast"].stock) == (7, 5)
    assert balances(shop, A1) == (900, 1_500, {APRIL: 900})
    assert balances(shop, A2) == (600, 0, {MARCH: 600})
    assert shop.state.redemptions[order_id(3)].state == "pending"
    assert_consistent(shop)


def test_a_clawback_cancel_expires_the_points_of_a_lapsed_lot_as_a_cancel_does(shop: World) -> None:
    shop.submit("tianfu-app", redeem(1, quantity=3))  # March:1200, April:300
    advance_to(shop, MARCH_LAPSES + timedelta(days=14))
    out = shop.submit("authority", clawback("b-0401", A1))
    assert out.details == {
        "batch_id": "b-0401",
        "accounts": 1,
        "points": 1_200,
        "shortfall": 0,
        "cancelled": [order_id(1)],
        "expired": 1_200,
    }
    assert balances(shop, A1) == (0, 0, {})
    totals = shop.state.point_totals[A1]
    assert (totals.awarded, totals.expired, totals.clawed_back) == (2_400, 1_200, 1_200)
    assert_consistent(shop)


# --- only points within their lifetime are spent -------------------------------------------------------


def late_offer(w: World) -> OfferPublish:
    """An offer that runs from today to the last day of tea-house's approval."""
    until = w.state.scenes["tea-house"].valid_until
    assert until is not None
    return offer(w, "late-tea", valid_until=date.fromisoformat(until))


def test_an_order_spends_no_point_past_its_lifetime_before_points_expire_runs(shop: World) -> None:
    advance_to(shop, MARCH_LAPSES)
    shop.submit("teahouse", late_offer(shop))
    refuse(
        shop,
        "tianfu-app",
        redeem(1, quantity=3, offer_id="late-tea"),
        "insufficient_points",
        f"{A1} holds 2400 points; 1500 are needed and 1200 are spendable \\(1200 are past their lifetime\\)",
    )
    refuse(
        shop,
        "tianfu-app",
        redeem(1, A2, offer_id="late-tea"),
        "insufficient_points",
        f"{A2} holds 600 points; 500 are needed and 0 are spendable \\(600 are past their lifetime\\)",
    )
    out = shop.submit("tianfu-app", redeem(1, quantity=2, offer_id="late-tea"))
    assert out.details["lots"] == [f"{APRIL}:1000"]
    # March's lapsed points stay in the balance until the authority expires them.
    assert balances(shop, A1) == (1_400, 1_000, {MARCH: 1_200, APRIL: 200})
    shop.submit("authority", PointsExpire(through_month=MARCH))
    assert balances(shop, A1) == (200, 1_000, {APRIL: 200})
    assert_consistent(shop)


def test_an_order_on_the_last_redeemable_day_spends_the_oldest_lot(shop: World) -> None:
    advance_to(shop, MARCH_LAPSES - timedelta(days=1))
    shop.submit("teahouse", late_offer(shop))
    out = shop.submit("tianfu-app", redeem(1, quantity=3, offer_id="late-tea"))
    assert out.details["lots"] == [f"{MARCH}:1200", f"{APRIL}:300"]
    shop.submit("tianfu-app", redeem(2, A2, offer_id="late-tea"))
    assert balances(shop, A2) == (100, 500, {MARCH: 100})
    assert_consistent(shop)


# --- who may sign what ----------------------------------------------------------------------------------

EXPECTED_ROLES: dict[str, set[Role]] = {
    "scene.apply": {Role.MERCHANT},
    "scene.evaluate": {Role.SCENE_EVALUATOR},
    "scene.decide": {Role.AUTHORITY},
    "scene.suspend": {Role.AUTHORITY},
    "scene.reinstate": {Role.AUTHORITY},
    "scene.revoke": {Role.AUTHORITY},
    "scene.renew": {Role.AUTHORITY},
    "offer.publish": {Role.MERCHANT},
    "offer.withdraw": {Role.MERCHANT},
    "points.redeem": {Role.PLATFORM_OPERATOR},
    "redemption.fulfil": {Role.MERCHANT},
    "redemption.cancel": {Role.MERCHANT, Role.PLATFORM_OPERATOR},
}

PAYLOADS: list[BaseModel] = [
    apply(),
    evaluate(),
    SceneDecide(scene_id="tea-house", approve=False, reason="r"),
    SceneSuspend(scene_id="tea-house", reason="r"),
    SceneReinstate(scene_id="tea-house", reason="r"),
    SceneRevoke(scene_id="tea-house", reason="r"),
    SceneRenew(scene_id="tea-house", valid_until=date(2030, 1, 1)),
    OfferPublish(
        offer_id="tea-set",
        scene_id="tea-house",
        title="t",
        price_points=1,
        stock=1,
        per_account_limit=1,
        valid_from=date(2025, 4, 2),
        valid_until=date(2025, 4, 3),
    ),
    OfferWithdraw(offer_id="tea-set"),
    redeem(1),
    RedemptionFulfil(order_id=order_id(1)),
    RedemptionCancel(order_id=order_id(1), reason="r"),
]


@pytest.fixture(scope="module")
def every_role() -> World:
    """A registry with one participant holding each role alone (the authority is the genesis one)."""
    w = World()
    w.found()
    for role in Role:
        if role is not Role.AUTHORITY:
            w.register(signer_of(role), [role])
    return w


def signer_of(role: Role) -> str:
    return "authority" if role is Role.AUTHORITY else f"only-{role.value.replace('_', '-')}"


def test_the_permission_table_covers_every_kind_of_the_module() -> None:
    assert [p.model_dump()["kind"] for p in PAYLOADS] == list(EXPECTED_ROLES)
    assert {kind: set(KIND_ROLES[kind]) for kind in EXPECTED_ROLES} == EXPECTED_ROLES


@pytest.mark.parametrize("payload", PAYLOADS, ids=lambda p: p.model_dump()["kind"])
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_kind_is_signed_only_by_its_roles(every_role: World, payload: BaseModel, role: Role) -> None:
    kind = payload.model_dump()["kind"]
    who = signer_of(role)
    if role in EXPECTED_ROLES[kind]:
        # Authorised (the handler's own rules, e.g. whose offer it is, are the tests above).
        tx = every_role.sign_as(who, payload)
        every_role.state.authorise(tx.body, index=every_role.state.size, accepted_at=every_role.clock)
    else:
        refuse(every_role, who, payload, "forbidden", f"{kind} needs the role")


# --- no transfer of points ------------------------------------------------------------------------------


def _mentions(schema: Any, defs: dict[str, Any], pattern: str) -> bool:
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and _mentions(defs[ref.rsplit("/", 1)[-1]], defs, pattern):
            return True
        return schema.get("pattern") == pattern or any(_mentions(v, defs, pattern) for v in schema.values())
    if isinstance(schema, list):
        return any(_mentions(v, defs, pattern) for v in schema)
    return False


def test_no_kind_moves_points_between_accounts() -> None:
    """No citizen-to-citizen transfer: no payload names two point accounts, or an account to receive points."""
    pattern = get_args(PointAccountId)[1].pattern
    naming: dict[str, list[str]] = {}
    for payload in PAYLOAD_TYPES:
        schema = payload.model_json_schema()
        defs = schema.get("$defs", {})
        fields = [name for name, prop in schema["properties"].items() if _mentions(prop, defs, pattern)]
        if fields:
            naming[payload.model_fields["kind"].default] = fields
    assert all(len(fields) == 1 for fields in naming.values()), naming
    assert {field for fields in naming.values() for field in fields} <= {"account_id", "accounts"}, naming
    assert "points.redeem" in naming  # the check does see point-account fields
