"""`cdcer points ...`: the public path's writes (points rules, providers' rules, point accounts, consent,
the points' lifetime, expiry and clawback, redemptions), `cdcer scene ...` and `cdcer offer ...` (low-carbon
scenes and what merchants offer there for points), `cdcer redemption ...` (orders fulfilled or cancelled),
and `cdcer project scope`, the activity data a project claims.

Each command builds its payload with the pydantic model of `ledger.transactions` and is signed, sent and
checked like every other write (`cli.writes.write`).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from cli.client import model
from cli.console import EXIT_USAGE, fail
from cli.writes import Day, Reason, project, write
from ledger import transactions as tx

app = typer.Typer(
    help="The public path: points rules, providers' rules, point accounts and consent.", no_args_is_help=True
)

scene = typer.Typer(help="Low-carbon scenes: apply, evaluate, decide, and their lifecycle.", no_args_is_help=True)
offer = typer.Typer(help="Merchants' offers at approved scenes, for points.", no_args_is_help=True)
redemption = typer.Typer(help="Redemption orders: fulfil or cancel them.", no_args_is_help=True)
GROUPS: dict[str, typer.Typer] = {"points": app, "scene": scene, "offer": offer, "redemption": redemption}
"""The command groups of `cdcer` these writes make."""

RuleArg = Annotated[str, typer.Argument(help="The points rule's id (e.g. bike-km).")]
Points = Annotated[int, typer.Option(help="Points (an integer).")]
SceneArg = Annotated[str, typer.Argument(help="The scene's id (e.g. wuhou-teahouse).")]
OrderArg = Annotated[str, typer.Argument(help="The redemption order (RO + 16 hex digits).")]
OfferArg = Annotated[str, typer.Argument(help="The offer's id.")]
Until = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="The last day it is valid (YYYY-MM-DD).")]


@write(app, "rule-publish")
def rule_publish(
    rule_id: RuleArg,
    version: Annotated[int, typer.Option(help="The version: 1 for a new rule, else the last one plus 1.")],
    title: Annotated[str, typer.Option(help="What the rule rewards, for people.")],
    activity_unit: Annotated[str, typer.Option(help="The unit of activity attested (km, trip, kwh, day).")],
    emission_factor_g: Annotated[int, typer.Option(help="gCO2e avoided per activity unit.")],
    factor_source: Annotated[str, typer.Option(help="Where the emission factor comes from.")],
    points_per_gram: Annotated[int, typer.Option(help="Points per gram of CO2e avoided.")],
    daily_cap: Points,
    monthly_cap: Points,
    annual_cap: Points,
    late_window_days: Annotated[int, typer.Option(help="Days after an activity day its attestation is accepted.")],
    claim_mode: Annotated[tx.ClaimMode, typer.Option(help="reward_only, or claim the reduction too.")],
    subject: Annotated[tx.PointsSubject, typer.Option(help="What one record is about (rewarded once).")],
    displaced_source: Annotated[str, typer.Option(help="The emission source the activity displaces.")],
    effective_from: Day,
    effective_until: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="The last day it applies (YYYY-MM-DD).")
    ] = None,
) -> BaseModel:
    """Publish a version of a points rule, effective today or later (authority)."""
    return model(
        tx.PointsRulePublish,
        rule_id=rule_id,
        version=version,
        title=title,
        activity_unit=activity_unit,
        emission_factor_g=emission_factor_g,
        factor_source=factor_source,
        points_per_gram=points_per_gram,
        daily_cap=daily_cap,
        monthly_cap=monthly_cap,
        annual_cap=annual_cap,
        late_window_days=late_window_days,
        claim_mode=claim_mode,
        subject=subject,
        displaced_source=displaced_source,
        effective_from=effective_from.date(),
        effective_until=None if effective_until is None else effective_until.date(),
    )


@write(app, "provider-scope")
def provider_scope(
    provider: Annotated[str, typer.Argument(help="The data provider's participant id.")],
    rules: Annotated[
        list[str] | None, typer.Option("--rule", help="A rule it may attest (repeat; none: revoke all).")
    ] = None,
) -> BaseModel:
    """Set the points rules a data provider may attest (authority)."""
    return model(tx.ProviderScope, provider=provider, rules=tuple(rules or ()))


@write(app, "account-open")
def account_open(
    account_kind: Annotated[tx.PointAccountKind, typer.Option("--kind", help="citizen or small_business.")],
    account_id: Annotated[
        str | None, typer.Argument(help="PA + 16 hex digits; a random one when omitted (no personal data).")
    ] = None,
) -> BaseModel:
    """Open a pseudonymous point account (platform operator)."""
    return model(tx.PointAccountOpen, account_id=account_id or f"PA{secrets.token_hex(8)}", account_kind=account_kind)


@write(app, "consent")
def consent(
    account_id: Annotated[str, typer.Argument(help="The point account (PA...).")],
    provider: Annotated[str, typer.Option(help="The data provider.")],
    rule_id: Annotated[str, typer.Option("--rule", help="The points rule.")],
    withdraw: Annotated[bool, typer.Option("--withdraw", help="Withdraw the consent instead of giving it.")] = False,
) -> BaseModel:
    """Record a holder's consent (or its withdrawal) for a provider to attest under a rule (platform operator)."""
    return model(tx.PointsConsent, account_id=account_id, provider=provider, rule_id=rule_id, granted=not withdraw)


@write(project, "scope")
def project_scope(
    project_id: Annotated[str, typer.Argument(help="The project id (e.g. P0001).")],
    scopes: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="SOURCE:SUBJECT, the activity data its reductions rest on, e.g. car-trips:account_day (repeat; "
            "none: clear it).",
        ),
    ] = None,
) -> BaseModel:
    """Declare the activity data a project's reductions rest on (project owner): one reduction, one claimant."""
    return model(tx.ProjectScope, project_id=project_id, scopes=tuple(_claim_scope(text) for text in scopes or ()))


def _claim_scope(text: str) -> tx.ClaimScope:
    source, _, subject = text.partition(":")
    subjects = ", ".join(s.value for s in tx.PointsSubject)
    if not subject or subject not in {s.value for s in tx.PointsSubject}:
        fail(f"--scope {text!r}: expected SOURCE:SUBJECT with SUBJECT one of {subjects}", EXIT_USAGE)
    return model(tx.ClaimScope, displaced_source=source, subject=tx.PointsSubject(subject))


# --- the points' lifetime, expiry and clawback -----------------------------------------------------


@write(app, "policy")
def policy(
    lifetime_months: Annotated[int, typer.Option(help="Months points stay redeemable after their activity month.")],
) -> BaseModel:
    """Set how long points stay redeemable; it may be shortened only before any are awarded (authority)."""
    return model(tx.PointsPolicy, lifetime_months=lifetime_months)


@write(app, "expire")
def expire(
    through: Annotated[str, typer.Option(help="The last activity month whose points expire (YYYY-MM).")],
) -> BaseModel:
    """Expire the points of a month and earlier, once past their lifetime (authority)."""
    return model(tx.PointsExpire, options={"through_month": "--through"}, through_month=through)


@write(app, "clawback")
def clawback(
    batch_id: Annotated[str, typer.Argument(help="The attested batch whose points are taken back.")],
    reason: Reason,
    accounts: Annotated[
        list[str] | None, typer.Option("--account", help="An account to claw back from (repeat; none: all).")
    ] = None,
) -> BaseModel:
    """Take back the points a batch awarded fraudulently, from the named accounts or all of them (authority)."""
    return model(
        tx.PointsClawback,
        options={"accounts": "--account", "batch_id": "BATCH"},
        batch_id=batch_id,
        accounts=tuple(accounts or ()),
        reason=reason,
    )


# --- redemptions -----------------------------------------------------------------------------------


@write(app, "redeem")
def redeem(
    offer_id: Annotated[str, typer.Option("--offer", help="The offer redeemed.")],
    account_id: Annotated[str, typer.Option("--account", help="The holder's point account (PA...).")],
    quantity: Annotated[int, typer.Option(help="How many of the offer (1-100).")],
    order_id: Annotated[
        str | None, typer.Option("--order", help="RO + 16 hex digits; a random one when omitted (printed).")
    ] = None,
) -> BaseModel:
    """Order an offer for a holder's points (platform operator); the receipt shows the order id."""
    return model(
        tx.PointsRedeem,
        options={"offer_id": "--offer", "account_id": "--account", "order_id": "--order"},
        order_id=order_id or f"RO{secrets.token_hex(8)}",
        offer_id=offer_id,
        account_id=account_id,
        quantity=quantity,
    )


@write(redemption, "fulfil")
def redemption_fulfil(order_id: OrderArg) -> BaseModel:
    """Hand over what was ordered: the order's points are spent (merchant)."""
    return model(tx.RedemptionFulfil, options={"order_id": "ORDER"}, order_id=order_id)


@write(redemption, "cancel")
def redemption_cancel(order_id: OrderArg, reason: Reason) -> BaseModel:
    """Cancel a pending order: its points and stock come back (merchant or the holder's operator)."""
    return model(tx.RedemptionCancel, options={"order_id": "ORDER"}, order_id=order_id, reason=reason)


# --- scenes and offers -----------------------------------------------------------------------------

_SCENE = {"scene_id": "SCENE"}


@write(scene, "apply")
def scene_apply(
    scene_id: SceneArg,
    name: Annotated[str, typer.Option(help="The place's name.")],
    category: Annotated[tx.SceneCategory, typer.Option(help="What kind of place it is.")],
    district: Annotated[str, typer.Option()],
    address: Annotated[str, typer.Option()],
    description: Annotated[str, typer.Option()] = "",
) -> BaseModel:
    """Apply to have a place evaluated as a low-carbon scene (merchant)."""
    return model(
        tx.SceneApply,
        options=_SCENE,
        scene_id=scene_id,
        name=name,
        category=category,
        district=district,
        address=address,
        description=description,
    )


@write(scene, "evaluate")
def scene_evaluate(
    scene_id: SceneArg,
    score: Annotated[int, typer.Option(help="The score, 0-100.")],
    opinion: Annotated[tx.Opinion, typer.Option()],
    report: Annotated[Path, typer.Option(help="The evaluation report, whose SHA-256 is recorded.")],
) -> BaseModel:
    """Score a scene you have no stake in and give your opinion (scene evaluator)."""
    return model(
        tx.SceneEvaluate,
        options=_SCENE,
        scene_id=scene_id,
        score=score,
        opinion=opinion,
        report_sha256=_file_sha256(report, "--report"),
    )


@write(scene, "decide")
def scene_decide(
    scene_id: SceneArg,
    approve: Annotated[bool, typer.Option("--approve/--reject", help="Approve the scene, or reject it.")],
    reason: Reason,
    valid_until: Annotated[
        datetime | None, typer.Option(formats=["%Y-%m-%d"], help="An approval's last valid day (YYYY-MM-DD).")
    ] = None,
) -> BaseModel:
    """Approve an evaluated scene until --valid-until, or reject it (authority)."""
    return model(
        tx.SceneDecide,
        options=_SCENE,
        scene_id=scene_id,
        approve=approve,
        valid_until=_date(valid_until),
        reason=reason,
    )


@write(scene, "suspend")
def scene_suspend(scene_id: SceneArg, reason: Reason) -> BaseModel:
    """Suspend an approved scene (authority)."""
    return model(tx.SceneSuspend, options=_SCENE, scene_id=scene_id, reason=reason)


@write(scene, "reinstate")
def scene_reinstate(scene_id: SceneArg, reason: Reason) -> BaseModel:
    """Reinstate a suspended scene (authority)."""
    return model(tx.SceneReinstate, options=_SCENE, scene_id=scene_id, reason=reason)


@write(scene, "revoke")
def scene_revoke(scene_id: SceneArg, reason: Reason) -> BaseModel:
    """Revoke a scene's approval for good (authority)."""
    return model(tx.SceneRevoke, options=_SCENE, scene_id=scene_id, reason=reason)


@write(scene, "renew")
def scene_renew(scene_id: SceneArg, valid_until: Until) -> BaseModel:
    """Extend an approved scene's validity after a new evaluation (authority)."""
    return model(tx.SceneRenew, options=_SCENE, scene_id=scene_id, valid_until=valid_until.date())


@write(offer, "publish")
def offer_publish(
    offer_id: OfferArg,
    scene_id: Annotated[str, typer.Option("--scene", help="The approved scene it is offered at.")],
    title: Annotated[str, typer.Option(help="What is offered.")],
    price_points: Annotated[int, typer.Option(help="Its price in points.")],
    stock: Annotated[int, typer.Option(help="How many are offered.")],
    per_account_limit: Annotated[int, typer.Option(help="How many one account may redeem.")],
    valid_from: Day,
    valid_until: Until,
) -> BaseModel:
    """Offer goods or services at an approved scene, for points (merchant)."""
    return model(
        tx.OfferPublish,
        options={"offer_id": "OFFER", "scene_id": "--scene"},
        offer_id=offer_id,
        scene_id=scene_id,
        title=title,
        price_points=price_points,
        stock=stock,
        per_account_limit=per_account_limit,
        valid_from=valid_from.date(),
        valid_until=valid_until.date(),
    )


@write(offer, "withdraw")
def offer_withdraw(offer_id: OfferArg) -> BaseModel:
    """Withdraw an offer (merchant)."""
    return model(tx.OfferWithdraw, options={"offer_id": "OFFER"}, offer_id=offer_id)


def _date(value: datetime | None) -> date | None:
    return None if value is None else value.date()


def _file_sha256(path: Path, option: str) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        fail(f"{option} {path}: cannot read it: {exc.strerror or exc}", EXIT_USAGE)
