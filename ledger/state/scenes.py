"""Low-carbon scenes, the offers merchants make at them, and the redemption orders that spend points.

A merchant applies to have a place recognised as a low-carbon scene; a scene evaluator with no stake in
it scores it and gives an opinion; the authority approves it (until a day) or rejects it, and later
suspends, reinstates, revokes or renews it (a renewal needs a positive evaluation made since the scene
was last approved). At a scene that is approved and still valid, its merchant publishes offers: a price
in points, a stock, a limit per account and the days it runs.

A platform operator places an order for a holder of one of its point accounts (`points.redeem`): the
order takes the points from the account's oldest lots still within their lifetime (a lapsed lot's points
are never spent, though they stay in the balance until `points.expire` runs) and one item of stock per
item ordered, and holds them while it is pending. The offer's merchant fulfils it (the points are spent)
or it is cancelled, by that merchant, by the account's operator, or by a `points.clawback` the account's
balance does not cover (the points go back to the lots they came from, except those of a month past its
lifetime by then, which expire as `points.expire` would have expired them; the items go back to the
stock). Points never move between accounts: no kind transfers them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ledger.state import awards, lots
from ledger.state.context import Context, fail
from ledger.state.outcomes import Outcome
from ledger.state.records import Offer, PointAccount, Redemption, Scene
from ledger.state.spec import KindSpec
from ledger.transactions import (
    OfferPublish,
    OfferWithdraw,
    Opinion,
    PointsRedeem,
    RedemptionCancel,
    RedemptionFulfil,
    Role,
    SceneApply,
    SceneDecide,
    SceneEvaluate,
    SceneReinstate,
    SceneRenew,
    SceneRevoke,
    SceneSuspend,
)

if TYPE_CHECKING:
    from ledger.state.core import State

# --- outcomes -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SceneStateSet(Outcome):
    """A scene was applied for, or moved to another state (rejected, suspended, reinstated, revoked)."""

    scene_id: str
    state: str


@dataclass(frozen=True, slots=True)
class SceneEvaluated(Outcome):
    scene_id: str
    score: int
    opinion: str


@dataclass(frozen=True, slots=True)
class SceneApproved(Outcome):
    """A scene was approved, or its approval renewed, until `valid_until` (inclusive)."""

    scene_id: str
    valid_until: str


@dataclass(frozen=True, slots=True)
class OfferPublished(Outcome):
    offer_id: str
    scene_id: str
    stock: int


@dataclass(frozen=True, slots=True)
class OfferWithdrawn(Outcome):
    offer_id: str


@dataclass(frozen=True, slots=True)
class Redeemed(Outcome):
    """An order was placed: its points left the account's lots (``YYYY-MM:points``, oldest first)."""

    order_id: str
    offer_id: str
    account_id: str
    quantity: int
    points: int
    lots: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RedemptionClosed(Outcome):
    """An order was fulfilled (its points spent) or cancelled (its items back in stock, its points back in
    the `lots` it took them from but for the `expired` ones: those of a month now past its lifetime)."""

    order_id: str
    state: str
    points: int
    lots: tuple[str, ...]
    expired: int = 0


# --- lookups --------------------------------------------------------------------------------------------


def _scene(ctx: Context, scene_id: str) -> Scene:
    found = ctx.state.scenes.get(scene_id)
    if found is None:
        raise fail("not_found", f"no scene {scene_id}")
    return found


def _offer(ctx: Context, offer_id: str) -> Offer:
    found = ctx.state.offers.get(offer_id)
    if found is None:
        raise fail("not_found", f"no offer {offer_id}")
    return found


def _order(ctx: Context, order_id: str) -> Redemption:
    found = ctx.state.redemptions.get(order_id)
    if found is None:
        raise fail("not_found", f"no redemption order {order_id}")
    return found


def _account(ctx: Context, account_id: str) -> PointAccount:
    found = ctx.state.point_accounts.get(account_id)
    if found is None:
        raise fail("not_found", f"no point account {account_id}")
    return found


def _require_merchant(ctx: Context, merchant: str, what: str) -> None:
    if merchant != ctx.actor:
        raise fail("forbidden", f"{what} belongs to {merchant}, not {ctx.actor}")


def _require_valid_scene(ctx: Context, scene: Scene, what: str) -> None:
    """An offer is made, and an order placed, only at a scene that is approved and valid today."""
    today = ctx.time.date()
    if scene.state != "approved":
        raise fail("scene_not_approved", f"scene {scene.id} is {scene.state}; {what} needs an approved scene")
    assert scene.valid_until is not None  # an approved scene always has one
    if date.fromisoformat(scene.valid_until) < today:
        raise fail(
            "scene_not_approved",
            f"the approval of scene {scene.id} ended on {scene.valid_until} (today is {today} UTC); "
            f"{what} needs it renewed",
        )


def _after_today(ctx: Context, valid_until: date, what: str) -> None:
    today = ctx.time.date()
    if valid_until <= today:
        raise fail(
            "invalid_state", f"{what} until {valid_until} would not outlast today ({today} UTC); pick a later day"
        )


def ordered(state: State, account_id: str, offer_id: str) -> int:
    """The items an account has ordered of an offer and not had cancelled (pending or fulfilled orders)."""
    return state.ordered.get((account_id, offer_id), 0)


# --- scenes ---------------------------------------------------------------------------------------------


def _scene_apply(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, SceneApply)
    if p.scene_id in ctx.state.scenes:
        raise fail("conflict", f"scene {p.scene_id} already exists; apply under another scene id")
    ctx.put(
        Scene(
            p.scene_id,
            ctx.actor,
            p.name,
            p.category.value,
            p.district,
            p.address,
            p.description,
            "applied",
            None,
            None,
            None,
            None,
            None,
            None,
            ctx.index,
        )
    )
    return SceneStateSet(p.kind, p.scene_id, "applied")


def _scene_evaluate(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, SceneEvaluate)
    scene = _scene(ctx, p.scene_id)
    if scene.merchant == ctx.actor:
        raise fail("conflict_of_interest", f"{ctx.actor} runs scene {scene.id} and may not evaluate it")
    if scene.state not in ("applied", "approved"):
        raise fail(
            "invalid_state",
            f"scene {scene.id} is {scene.state}; only an applied scene, or an approved one (for its renewal), "
            "is evaluated",
        )
    ctx.put(
        replace(
            scene,
            state="evaluated" if scene.state == "applied" else scene.state,
            evaluator=ctx.actor,
            score=p.score,
            opinion=p.opinion.value,
            evaluated_at=ctx.index,
        )
    )
    return SceneEvaluated(p.kind, scene.id, p.score, p.opinion.value)


def _scene_decide(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, SceneDecide)
    scene = _scene(ctx, p.scene_id)
    if scene.state != "evaluated":
        raise fail("invalid_state", f"scene {scene.id} is {scene.state}; only an evaluated scene is decided")
    if not p.approve:
        ctx.put(replace(scene, state="rejected", decided_at=ctx.index))
        return SceneStateSet(p.kind, scene.id, "rejected")
    if scene.opinion != Opinion.POSITIVE.value:
        raise fail(
            "invalid_state",
            f"scene {scene.id} has a {scene.opinion} evaluation; approval needs a positive one (reject it instead)",
        )
    assert p.valid_until is not None  # the payload requires it with an approval
    _after_today(ctx, p.valid_until, f"approving scene {scene.id}")
    until = p.valid_until.isoformat()
    ctx.put(replace(scene, state="approved", valid_until=until, decided_at=ctx.index))
    return SceneApproved(p.kind, scene.id, until)


_MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "scene.suspend": (("approved",), "suspended"),
    "scene.reinstate": (("suspended",), "approved"),
    "scene.revoke": (("approved", "suspended"), "revoked"),
}


def _scene_lifecycle(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, SceneSuspend | SceneReinstate | SceneRevoke)
    scene = _scene(ctx, p.scene_id)
    sources, target = _MOVES[p.kind]
    if scene.state not in sources:
        raise fail("invalid_state", f"scene {scene.id} is {scene.state}; {p.kind} needs {' or '.join(sources)}")
    ctx.put(replace(scene, state=target))
    return SceneStateSet(p.kind, scene.id, target)


def _scene_renew(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, SceneRenew)
    scene = _scene(ctx, p.scene_id)
    if scene.state != "approved":
        raise fail("invalid_state", f"scene {scene.id} is {scene.state}; only an approved scene is renewed")
    assert scene.decided_at is not None  # both set by its approval
    assert scene.valid_until is not None
    if scene.evaluated_at is None or scene.evaluated_at <= scene.decided_at:
        raise fail(
            "invalid_state",
            f"scene {scene.id} has not been evaluated since it was last approved (entry {scene.decided_at}); "
            "a renewal needs a new evaluation",
        )
    if scene.opinion != Opinion.POSITIVE.value:
        raise fail(
            "invalid_state",
            f"the latest evaluation of scene {scene.id} is {scene.opinion}; a renewal needs a positive one",
        )
    if p.valid_until <= date.fromisoformat(scene.valid_until):
        raise fail(
            "invalid_state",
            f"scene {scene.id} is already approved until {scene.valid_until}; a renewal must end later",
        )
    _after_today(ctx, p.valid_until, f"renewing scene {scene.id}")
    until = p.valid_until.isoformat()
    ctx.put(replace(scene, valid_until=until, decided_at=ctx.index))
    return SceneApproved(p.kind, scene.id, until)


# --- offers ---------------------------------------------------------------------------------------------


def _offer_publish(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, OfferPublish)
    if p.offer_id in ctx.state.offers:
        raise fail("conflict", f"offer {p.offer_id} already exists; publish under another offer id")
    scene = _scene(ctx, p.scene_id)
    _require_merchant(ctx, scene.merchant, f"scene {scene.id}")
    _require_valid_scene(ctx, scene, "an offer")
    assert scene.valid_until is not None
    if p.valid_until > date.fromisoformat(scene.valid_until):
        raise fail(
            "invalid_state",
            f"offer {p.offer_id} would run until {p.valid_until}, after the approval of scene {scene.id} ends "
            f"({scene.valid_until}); end it by then",
        )
    today = ctx.time.date()
    if p.valid_from < today:
        raise fail(
            "invalid_state",
            f"offer {p.offer_id} would start on {p.valid_from}, before today ({today} UTC); start it today or later",
        )
    ctx.put(
        Offer(
            p.offer_id,
            scene.id,
            ctx.actor,
            p.title,
            p.price_points,
            p.stock,
            p.per_account_limit,
            p.valid_from.isoformat(),
            p.valid_until.isoformat(),
            "active",
            ctx.index,
        )
    )
    return OfferPublished(p.kind, p.offer_id, scene.id, p.stock)


def _offer_withdraw(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, OfferWithdraw)
    offer = _offer(ctx, p.offer_id)
    _require_merchant(ctx, offer.merchant, f"offer {offer.id}")
    if offer.state != "active":
        raise fail("invalid_state", f"offer {offer.id} is already {offer.state}")
    ctx.put(replace(offer, state="withdrawn"))
    return OfferWithdrawn(p.kind, offer.id)


# --- redemption orders ----------------------------------------------------------------------------------


def _redeem(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, PointsRedeem)
    st = ctx.state
    account = _account(ctx, p.account_id)
    if account.operator != ctx.actor:
        raise fail(
            "forbidden",
            f"point account {account.id} is held in {account.operator}'s app; only {account.operator} orders for it",
        )
    if p.order_id in st.redemptions:
        raise fail("conflict", f"redemption order {p.order_id} already exists; place it under a new order id")
    offer = _offer(ctx, p.offer_id)
    today = ctx.time.date()
    if offer.state != "active":
        raise fail("offer_closed", f"offer {offer.id} is {offer.state}; it takes no orders")
    if not offer.valid_from <= today.isoformat() <= offer.valid_until:
        raise fail(
            "offer_closed",
            f"offer {offer.id} runs {offer.valid_from}..{offer.valid_until}; today ({today} UTC) is outside it",
        )
    _require_valid_scene(ctx, st.scenes[offer.scene_id], "an order")
    if offer.stock < p.quantity:
        raise fail("out_of_stock", f"offer {offer.id} has {offer.stock} item(s) left; {p.quantity} were ordered")
    already = ordered(st, account.id, offer.id)
    if already + p.quantity > offer.per_account_limit:
        raise fail(
            "limit_reached",
            f"offer {offer.id} allows {offer.per_account_limit} item(s) per account; {account.id} has ordered "
            f"{already}, so at most {offer.per_account_limit - already} more",
        )
    points = offer.price_points * p.quantity
    # Points past their lifetime are never spent, though they stay in the balance until `points.expire`.
    held = lots.holding(ctx, account.id)
    taken = held.take_oldest(points, lapsed=lambda month: awards.lapsed(ctx, month))
    held.moved(points, to="redeemed")
    held.plan(ctx)
    ctx.put(replace(offer, stock=offer.stock - p.quantity))
    recorded = lots.format_taken(taken)
    ctx.put(Redemption(p.order_id, offer.id, account.id, p.quantity, points, recorded, "pending", ctx.index, None))
    return Redeemed(p.kind, p.order_id, offer.id, account.id, p.quantity, points, recorded)


def _pending_order(ctx: Context, order_id: str, action: str, done: str) -> tuple[Redemption, Offer]:
    """The pending order `order_id`, and its offer, if the actor may `action` it (to make it `done`)."""
    order = _order(ctx, order_id)
    offer = ctx.state.offers[order.offer_id]
    allowed = {offer.merchant}
    if action == "cancel":
        allowed.add(ctx.state.point_accounts[order.account_id].operator)
    if ctx.actor not in allowed:
        raise fail(
            "forbidden",
            f"order {order.id} is for offer {offer.id} of {offer.merchant}; only "
            + " or ".join(sorted(allowed))
            + f" may {action} it, not {ctx.actor}",
        )
    if order.state != "pending":
        raise fail("invalid_state", f"order {order.id} is already {order.state}; only a pending order is {done}")
    return order, offer


def _fulfil(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, RedemptionFulfil)
    order, _ = _pending_order(ctx, p.order_id, "fulfil", "fulfilled")
    ctx.put(replace(order, state="fulfilled", closed_at=ctx.index))
    return RedemptionClosed(p.kind, order.id, "fulfilled", order.points, order.lots)


def _cancel(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, RedemptionCancel)
    order, _ = _pending_order(ctx, p.order_id, "cancel", "cancelled")
    held = lots.holding(ctx, order.account_id)
    cancels = OrderCancels(ctx)
    expired = cancels.cancel(order, held)
    held.plan(ctx)
    cancels.plan()
    return RedemptionClosed(p.kind, order.id, "cancelled", order.points, order.lots, expired)


def pending_orders(state: State, account_ids: Collection[str]) -> dict[str, list[Redemption]]:
    """The pending orders of each of `account_ids` that has one, newest first (one scan of the orders)."""
    found: dict[str, list[Redemption]] = {}
    for order in state.redemptions.values():
        if order.state == "pending" and order.account_id in account_ids:
            found.setdefault(order.account_id, []).append(order)
    for orders in found.values():
        orders.sort(key=lambda order: order.placed_at, reverse=True)
    return found


@dataclass(slots=True)
class OrderCancels:
    """The pending orders one entry cancels (a `redemption.cancel`, or a clawback reaching their points):
    each order's points go back to its account's `Holding`, and its items back to its offer's stock,
    planned once per offer by `plan` (two orders of one offer may be cancelled together)."""

    ctx: Context
    items: dict[str, int] = field(default_factory=dict)
    """Items to give back, by offer id."""

    def cancel(self, order: Redemption, held: lots.Holding) -> int:
        """Cancel the pending `order` of `held`'s account; return its points expired on the way back."""
        ctx = self.ctx
        # Points of a lot past its lifetime expire on the way back, by the rule `points.expire` applies.
        expired = held.put_back(lots.parse_taken(order.lots), lapsed=lambda month: awards.lapsed(ctx, month))
        self.items[order.offer_id] = self.items.get(order.offer_id, 0) + order.quantity
        ctx.put(replace(order, state="cancelled", closed_at=ctx.index))
        return expired

    def plan(self) -> None:
        """Plan the offers' stock with the cancelled orders' items back."""
        for offer_id, items in sorted(self.items.items()):
            offer = self.ctx.state.offers[offer_id]
            self.ctx.put(replace(offer, stock=offer.stock + items))


# --- specs ----------------------------------------------------------------------------------------------


def _spec(payload: type[BaseModel], roles: set[Role], handler: Callable[[Context], Outcome], codes: str) -> KindSpec:
    return KindSpec(payload, frozenset(roles), handler, frozenset(codes.split()))


_LIFECYCLE = "invalid_state not_found"
SPECS = (
    _spec(SceneApply, {Role.MERCHANT}, _scene_apply, "conflict"),
    _spec(SceneEvaluate, {Role.SCENE_EVALUATOR}, _scene_evaluate, "conflict_of_interest invalid_state not_found"),
    _spec(SceneDecide, {Role.AUTHORITY}, _scene_decide, _LIFECYCLE),
    _spec(SceneSuspend, {Role.AUTHORITY}, _scene_lifecycle, _LIFECYCLE),
    _spec(SceneReinstate, {Role.AUTHORITY}, _scene_lifecycle, _LIFECYCLE),
    _spec(SceneRevoke, {Role.AUTHORITY}, _scene_lifecycle, _LIFECYCLE),
    _spec(SceneRenew, {Role.AUTHORITY}, _scene_renew, _LIFECYCLE),
    _spec(
        OfferPublish, {Role.MERCHANT}, _offer_publish, "conflict forbidden invalid_state not_found scene_not_approved"
    ),
    _spec(OfferWithdraw, {Role.MERCHANT}, _offer_withdraw, "forbidden invalid_state not_found"),
    _spec(
        PointsRedeem,
        {Role.PLATFORM_OPERATOR},
        _redeem,
        "conflict forbidden insufficient_points limit_reached not_found offer_closed out_of_stock scene_not_approved",
    ),
    _spec(RedemptionFulfil, {Role.MERCHANT}, _fulfil, "forbidden invalid_state not_found"),
    _spec(RedemptionCancel, {Role.MERCHANT, Role.PLATFORM_OPERATOR}, _cancel, "forbidden invalid_state not_found"),
)
