"""`cdcer points ...`: the public path's writes (points rules, providers' rules, point accounts, consent,
the points' lifetime, expiry and clawback, redemptions), `cdcer scene ...` and `cdcer offer ...` (low-carbon
scenes and what merchants offer there for points), `cdcer redemption ...` (orders fulfilled or cancelled),
and `cdcer project scope`, the activity data a project claims.

Each command builds its payload with the pydantic model of `ledger.transactions` and is signed, sent and
checked like every other write (`cli.writes.write`).
"""

from __future__ import annotations

import csv
import hashlib
import re
import secrets
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from pydantic import BaseModel

from cli.client import Client, model, problem_of
from cli.console import EXIT_USAGE, fail
from cli.writes import Day, Reason, project, write
from ledger import transactions as tx
from ledger.points_batch import MAX_QUANTITY, PointRecord, batch_root, subject_commitment

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


# --- attestations ----------------------------------------------------------------------------------

CHUNK = 10_000
"""Records per upload request."""
HEADER = ["account_id", "quantity", "subject"]
_ACCOUNT = re.compile(r"^PA[0-9a-f]{16}$")
_SUBJECT = re.compile(r"^[0-9a-f]{64}$")
_QUANTITY = re.compile(r"^[0-9]{1,10}$")


@write(app, "attest")
def attest(
    records_file: Annotated[
        Path, typer.Argument(metavar="RECORDS.csv", help="The batch's records: account_id,quantity,subject.")
    ],
    rule_id: Annotated[str, typer.Option("--rule", help="The points rule attested under.")],
    version: Annotated[int, typer.Option(help="The rule's version in force on --day.")],
    day: Day,
    batch_id: Annotated[str, typer.Option("--batch", help="Your id for this batch, unique in the registry.")],
    client: Client,
    resume_from: Annotated[
        int, typer.Option(min=0, help="Upload from this record on (after an interrupted upload).")
    ] = 0,
) -> BaseModel:
    """Upload one day's records under a rule, then attest them: count, total and Merkle root (data provider).

    An empty subject is the account's day (`account_day` rules): the commitment is computed here."""
    records = read_records(records_file, day.date())
    # Checked before anything is sent: the payload's own constraints (ids, version, count).
    options = {"rule_id": "--rule", "batch_id": "--batch"}
    payload = model(
        tx.PointsAttest,
        options=options,
        batch_id=batch_id,
        rule_id=rule_id,
        version=version,
        day=day.date(),
        count=len(records),
        total_quantity=sum(r.quantity for r in records),
        root=batch_root(batch_id, records).hex(),
    )
    if resume_from > len(records):
        fail(f"--resume-from {resume_from}: {records_file} has only {len(records)} records", EXIT_USAGE)
    client.need_actor()
    for offset in range(resume_from, len(records), CHUNK):
        upload(client, batch_id, offset, records[offset : offset + CHUNK])
    return payload


def read_records(path: Path, day: date) -> list[PointRecord]:
    """The records of a CSV file, each row checked; a bad row is one line naming its line (exit 2)."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_USAGE)
    except (UnicodeDecodeError, csv.Error) as exc:
        fail(f"{path}: not a UTF-8 CSV file: {exc}", EXIT_USAGE)
    if not rows or [cell.strip() for cell in rows[0]] != HEADER:
        found = ",".join(rows[0]) if rows else "an empty file"
        fail(f"{path} line 1: expected the header {','.join(HEADER)}, found {found}", EXIT_USAGE)
    records: list[PointRecord] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        records.append(_record(path, line, row, day, seen))
    if not records:
        fail(f"{path}: no records after the header", EXIT_USAGE)
    if len(records) > tx.MAX_ATTESTED_RECORDS:
        fail(f"{path}: {len(records)} records; a batch holds at most {tx.MAX_ATTESTED_RECORDS}", EXIT_USAGE)
    return records


def _record(path: Path, line: int, row: Sequence[str], day: date, seen: dict[str, int]) -> PointRecord:
    where = f"{path} line {line}"
    if len(row) != len(HEADER):
        fail(f"{where}: expected {len(HEADER)} fields ({','.join(HEADER)}), found {len(row)}", EXIT_USAGE)
    account_id, quantity_text, subject = (cell.strip() for cell in row)
    if not _ACCOUNT.match(account_id):
        fail(f"{where}: account_id {account_id!r} is not PA followed by 16 lowercase hex digits", EXIT_USAGE)
    if not _QUANTITY.match(quantity_text) or not 1 <= int(quantity_text) <= MAX_QUANTITY:
        fail(f"{where}: quantity {quantity_text!r} is not an integer between 1 and {MAX_QUANTITY}", EXIT_USAGE)
    if not subject:
        subject = subject_commitment("account_day", account_id, day.isoformat())
    elif not _SUBJECT.match(subject):
        fail(
            f"{where}: subject {subject!r} is not 64 lowercase hex digits (or empty for the account's day)", EXIT_USAGE
        )
    if subject in seen:
        fail(f"{where}: its subject is already on line {seen[subject]}; a subject is rewarded once", EXIT_USAGE)
    seen[subject] = line
    return PointRecord(account_id, int(quantity_text), subject)


def upload(client: Client, batch_id: str, offset: int, records: Sequence[PointRecord]) -> None:
    """PUT one chunk of records at `offset`; a 409 (the registry holds a different prefix) says where to resume."""
    document = {
        "records": [{"account_id": r.account_id, "quantity": r.quantity, "subject": r.subject} for r in records]
    }
    response = client.put_signed(f"/v1/points/batches/{batch_id}/records?offset={offset}", document)
    if response.status_code in (200, 201, 204):
        return
    context = f"uploading the records of batch {batch_id} at offset {offset}: "
    if response.status_code == 409:
        resume = _resume_offset(response)
        where = f"--resume-from {resume}" if resume is not None else "--resume-from set to the records it holds"
        problem = problem_of(response)
        fail(f"{context}refused: {problem.detail} (409); to resume the upload, rerun with {where}", EXIT_USAGE)
    client.refused(response, context=context)


def _resume_offset(response: httpx.Response) -> int | None:
    """The offset a 409 says the upload should go on from: its problem's `uploaded` member, if it has one."""
    try:
        document = response.json()
    except ValueError:
        return None
    value = document.get("uploaded") if isinstance(document, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None
