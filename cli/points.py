"""`cdcer points ...`: the public path's writes (points rules, providers' rules, point accounts, consent),
and `cdcer project scope`, the activity data a project claims.

Each command builds its payload with the pydantic model of `ledger.transactions` and is signed, sent and
checked like every other write (`cli.writes.write`).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated

import typer
from pydantic import BaseModel

from cli.client import model
from cli.console import EXIT_USAGE, fail
from cli.writes import Day, project, write
from ledger import transactions as tx

app = typer.Typer(
    help="The public path: points rules, providers' rules, point accounts and consent.", no_args_is_help=True
)

RuleArg = Annotated[str, typer.Argument(help="The points rule's id (e.g. bike-km).")]
Points = Annotated[int, typer.Option(help="Points (an integer).")]


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
