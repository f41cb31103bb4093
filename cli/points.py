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
import json
import re
import secrets
import sys
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer
from pydantic import BaseModel

from cli.certificate import _verifier_key
from cli.client import (
    DEFAULT_REGISTRY,
    VKEY_VARIABLE,
    ActorOpt,
    Client,
    JsonOpt,
    KeyOpt,
    RegistryOpt,
    VkeyOpt,
    model,
    need_vkey,
    problem_of,
    show_json,
    show_record,
    show_rows,
)
from cli.console import (
    EXIT_INTEGRITY,
    EXIT_USAGE,
    add_row,
    echo,
    fail,
    json_option,
    json_text,
    plural,
    stdout,
    table,
)
from cli.writes import Day, Reason, project, write
from ledger import transactions as tx
from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError
from ledger.note import NoteVerifier
from ledger.points_batch import MAX_QUANTITY, PointRecord, batch_root, subject_commitment
from ledger.points_proof import MAX_BUNDLE_BYTES, PROOF_FORMAT, BundleError, verify_bundle

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

    An empty subject is the account's day (`account_day` rules): the commitment is computed here. The records
    go up in chunks of 10,000; if the upload is interrupted, rerunning says where the registry stands (a 409
    naming --resume-from N) and the same command with --resume-from N sends the rest, then attests. If the
    attestation itself is refused, the uploaded records stay: rerun with --resume-from COUNT once the cause is
    fixed, or `cdcer points discard BATCH` to start again."""
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
    resume = _resume_offset(response) if response.status_code == 409 else None
    if resume is not None:
        problem = problem_of(response)
        fail(
            f"{context}refused: {problem.detail} (409); to resume the upload, rerun with --resume-from {resume}",
            EXIT_USAGE,
        )
    # Any other refusal (an attested batch, another provider's id, a bad key) cannot be resumed: say why.
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


@app.command("discard")
def discard(
    batch_id: Annotated[str, typer.Argument(help="The unattested batch whose uploaded records are deleted.")],
    registry: RegistryOpt = DEFAULT_REGISTRY,
    actor: ActorOpt = None,
    key_file: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete the records you uploaded under a batch id that is not attested, to start it again (data provider)."""
    client = Client(registry, actor=actor, key_file=key_file)
    try:
        document = client.delete_signed(f"/v1/points/batches/{quote(batch_id, safe='')}/records")
    finally:
        client.close()
    if as_json:
        show_json(document)
        return
    echo(f"batch {document['batch_id']}: {plural(document['discarded'], 'uploaded record')} discarded")


# --- reads: a point account, its records and their proofs --------------------------------------------

AccountArg = Annotated[str, typer.Argument(help="The point account (PA + 16 hex digits).")]
_ORDER_COLUMNS = ["id", "offer_id", "quantity", "points", "lots", "state", "placed_at", "closed_at"]
_RECORD_COLUMNS = ["batch_id", "position", "day", "rule_id", "version", "quantity", "attested_at"]


@app.command("account")
def account(
    account_id: AccountArg,
    registry: RegistryOpt = DEFAULT_REGISTRY,
    actor: ActorOpt = None,
    key_file: KeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A point account's totals, its lots (oldest month first) and its redemption orders (signed read).

    Sign with your key (--as, --key): the account's platform operator, the authority or an auditor."""
    client = Client(registry, actor=actor, key_file=key_file)
    try:
        document: dict[str, Any] = client.get(f"/v1/points/accounts/{quote(account_id, safe='')}", signed=True)
    finally:
        client.close()
    if as_json:
        show_json(document)
        return
    totals = document["totals"]
    title = f"{document['account_id']} ({document['account_kind']}, operator {document['operator']})"
    show_record({**totals, "opened_at": document["opened_at"]}, title=f"{title}: {plural(totals['balance'], 'point')}")
    show_rows(document["lots"], ["month", "points"], title="lots")
    orders = [{**order, "lots": " ".join(order["lots"])} for order in document["redemptions"]]
    show_rows(orders, _ORDER_COLUMNS, title="redemption orders")


@app.command("records")
def records(
    account_id: AccountArg,
    proof: Annotated[
        Path | None,
        typer.Option(
            "--proof",
            metavar="DIR",
            help="Also write, into DIR, one self-contained proof bundle per record (BATCH-POSITION.json), for "
            "`cdcer points verify-record`; each is checked before it is written.",
        ),
    ] = None,
    registry: RegistryOpt = DEFAULT_REGISTRY,
    actor: ActorOpt = None,
    key_file: KeyOpt = None,
    vkey: VkeyOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Every attested record of a point account, with its proof in its batch (signed read).

    Sign with your key (--as, --key): the account's platform operator, the authority or an auditor.

    With --proof DIR, each record's bundle adds the attestation's log entry, its inclusion proof and the
    registry's signed checkpoint, so the holder can verify it offline with `cdcer points verify-record`."""
    client = Client(registry, actor=actor, key_file=key_file, vkey=vkey)
    try:
        document: dict[str, Any] = client.get(f"/v1/points/accounts/{quote(account_id, safe='')}/records", signed=True)
        written = [] if proof is None else _write_bundles(client, document["items"], proof)
    finally:
        client.close()
    if as_json:
        show_json(document if proof is None else {**document, "proof_files": [str(path) for path in written]})
        return
    show_rows(document["items"], _RECORD_COLUMNS, title=f"{document['account_id']}: attested records")
    if proof is not None:
        echo(f"wrote {plural(len(written), 'proof bundle')} to {proof}", to_stderr=True)


def _write_bundles(client: Client, items: Sequence[dict[str, Any]], directory: Path) -> list[Path]:
    """One bundle per record: the record, its batch's entry, the entry's inclusion proof in the latest
    checkpoint, and that checkpoint; each verified (with the client's verifier key) before it is written."""
    verifier = client.verifier()
    checkpoint = client.get_text("/v1/log/checkpoint")
    try:
        size = open_checkpoint(checkpoint.encode(), verifier).checkpoint.size
    except LedgerError as exc:
        fail(f"the registry's checkpoint does not verify: {exc}", EXIT_INTEGRITY)
    entries: dict[int, tuple[dict[str, Any], dict[str, Any]]] = {}
    bundles: list[tuple[Path, dict[str, Any]]] = []
    for item in items:
        index = item["attested_at"]
        if index not in entries:
            page = client.get(f"/v1/log/entries?start={index}&limit=1")
            if not page.get("entries") or index >= size:
                fail(f"the registry's log has no entry {index} in its checkpoint of size {size}", EXIT_INTEGRITY)
            proof = client.get(f"/v1/log/proof/inclusion?index={index}&size={size}")
            entries[index] = (page["entries"][0], proof)
        entry, proof = entries[index]
        bundle = {
            "format": PROOF_FORMAT,
            "record": item,
            "entry": entry,
            "inclusion_proof": proof,
            "checkpoint": checkpoint,
        }
        name = f"{item['batch_id']}-{item['position']}.json"
        try:
            verify_bundle(json.dumps(bundle).encode(), verifier)
        except BundleError as exc:
            fail(
                f"the registry's proof of record {item['position']} of batch {item['batch_id']}: {exc}", EXIT_INTEGRITY
            )
        bundles.append((directory / name, bundle))
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path, bundle in bundles:
            path.write_text(json_text(bundle) + "\n", encoding="utf-8")
    except OSError as exc:
        fail(f"--proof {directory}: cannot write it: {exc.strerror or exc}", EXIT_USAGE)
    return [path for path, _ in bundles]


# --- verifying a record offline ----------------------------------------------------------------------

RECORD_LIMITS = (
    "that the key which signed the attestation was a data provider's, registered and unrevoked at the time "
    "(the full audit, cdcer audit verify, replays that)",
    "how many points the record earned: caps, expiry and clawbacks are the ledger's replay, not this proof",
    "that this checkpoint is the log everyone sees (check it against witnesses' cosignatures or a later one)",
)


@app.command("verify-record")
def verify_record_command(
    bundle_file: Annotated[
        str, typer.Argument(metavar="BUNDLE", help="The proof bundle (JSON) to verify, or - for stdin.")
    ],
    vkey: Annotated[
        str | None,
        typer.Option(
            envvar=VKEY_VARIABLE,
            help="The registry's verifier key, published out of band (the string, or a file holding it).",
        ),
    ] = None,
    as_json: Annotated[bool, json_option("Print a machine-readable result on stdout.")] = False,
) -> None:
    """Verify a point record OFFLINE, from its proof bundle and the registry's verifier key.

    Exit 0 verified, 1 it does not verify, 2 bad --vkey or unreadable file.

    BUNDLE is a file `cdcer points records ACCOUNT --proof DIR` writes (or - for stdin): one JSON object,
    {"format": "cdcer/points-record-proof/v1", "record", "entry", "inclusion_proof", "checkpoint"}, with
    record: an item of GET /v1/points/accounts/ACCOUNT/records, as it came;
    entry: the record's attested_at entry, as GET /v1/log/entries returns it (index, leaf, leaf_hash, chain_hash);
    inclusion_proof: GET /v1/log/proof/inclusion?index=ENTRY&size=SIZE, SIZE the checkpoint's;
    checkpoint: GET /v1/log/checkpoint, the signed note, as text.

    Checked, in order: the checkpoint's signature by --vkey; the entry's inclusion in that checkpoint; the entry
    is a signed points.attest committing to the record's batch id, count and root; the record's leaf, by its
    proof, gives that root.
    """
    verifier = NoteVerifier.from_vkey(_verifier_key(need_vkey(vkey, what="verifying a point record")))
    data = _read_bundle(bundle_file)
    try:
        verified = verify_bundle(data, verifier)
    except BundleError as exc:
        name = "stdin" if bundle_file == "-" else bundle_file
        fail(f"{name} does not verify: {exc}", EXIT_INTEGRITY, report={"verified": False, "reason": str(exc)})
    r = verified.record
    if as_json:
        show_json(
            {
                "verified": True,
                "record": {
                    "batch_id": verified.batch_id,
                    "position": verified.position,
                    "account_id": r.account_id,
                    "quantity": r.quantity,
                    "subject": r.subject,
                },
                "batch": {
                    "batch_id": verified.batch_id,
                    "provider": verified.provider,
                    "rule_id": verified.rule_id,
                    "version": verified.version,
                    "day": verified.day,
                    "count": verified.count,
                    "root": verified.root,
                },
                "entry": verified.entry,
                "origin": verified.origin,
                "checkpoint_size": verified.checkpoint_size,
                "key_id": verified.key_id,
                "limits": list(RECORD_LIMITS),
            }
        )
        return
    echo(f"verified: record {verified.position} of batch {verified.batch_id}")
    shown = table(show_header=False)
    add_row(shown, "account", r.account_id)
    add_row(shown, "quantity", f"{r.quantity:,} ({verified.rule_id} v{verified.version}, {verified.day})")
    add_row(shown, "batch", f"{verified.count:,} records, root {verified.root}, attested by {verified.provider}")
    add_row(shown, "entry", verified.entry)
    add_row(shown, "checkpoint", f"{verified.origin}, size {verified.checkpoint_size:,}, signed by {verified.key_id}")
    stdout().print(shown)
    echo("What this offline check cannot prove:")
    for limit in RECORD_LIMITS:
        echo(f"  - {limit}")


def _read_bundle(name: str) -> bytes:
    try:
        if name == "-":
            data = sys.stdin.buffer.read(MAX_BUNDLE_BYTES + 1)
        else:
            with Path(name).open("rb") as stream:
                data = stream.read(MAX_BUNDLE_BYTES + 1)
    except FileNotFoundError:
        fail(f"bundle {name} not found", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read bundle {name}: {exc.strerror or exc}", EXIT_USAGE)
    if len(data) > MAX_BUNDLE_BYTES:
        fail(f"bundle {name}: larger than {MAX_BUNDLE_BYTES:,} bytes; not a record's proof bundle", EXIT_USAGE)
    return data
