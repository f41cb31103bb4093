"""A `cdcer` command for every write of SPEC section 3, each signed with the user's key file.

Each command builds its payload with the pydantic model of `ledger.transactions` (so a bad value is refused
here, naming the option), then `cli.client.Client.submit` signs it, sends it and verifies the receipt.
The options every write shares (``--registry``, ``--origin``, ``--as``, ``--key``, ``--vkey``, ``--json``)
are added by `write`, so each command below says only what its transaction needs.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from cli.client import (
    DEFAULT_REGISTRY,
    ActorOpt,
    Client,
    JsonOpt,
    KeyOpt,
    OriginOpt,
    RegistryOpt,
    VkeyOpt,
    model,
    show_receipt,
)
from cli.console import EXIT_OPERATIONAL, EXIT_USAGE, fail
from ledger import transactions as tx
from ledger.encoding import b64decode
from ledger.errors import KeyFileError, LedgerError
from ledger.keys import read_public_key
from ledger.log import decode_entry

participant = typer.Typer(
    help="Register participants, set their roles, suspend and reinstate them.", no_args_is_help=True
)
key = typer.Typer(
    help="The registry's key transactions: add, revoke and rotate a participant's keys.", no_args_is_help=True
)
witness = typer.Typer(help="Register and remove the witnesses that cosign checkpoints.", no_args_is_help=True)
methodology = typer.Typer(help="Publish and withdraw methodologies.", no_args_is_help=True)
project = typer.Typer(help="Submit, validate, decide and manage projects.", no_args_is_help=True)
report = typer.Typer(help="Submit, verify and reject monitoring reports.", no_args_is_help=True)
event = typer.Typer(help="Register events and declare their footprint.", no_args_is_help=True)
claim = typer.Typer(help="Carbon-neutral claims.", no_args_is_help=True)
units = typer.Typer()  # the top-level writes (issue, transfer, retire, cancel, freeze, unfreeze)

_COMMON = [
    inspect.Parameter("registry", inspect.Parameter.KEYWORD_ONLY, default=DEFAULT_REGISTRY, annotation=RegistryOpt),
    inspect.Parameter("origin", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=OriginOpt),
    inspect.Parameter("actor", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ActorOpt),
    inspect.Parameter("key_file", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=KeyOpt),
    inspect.Parameter("vkey", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=VkeyOpt),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=JsonOpt),
]

Build = Callable[..., BaseModel]


def write(app: typer.Typer, name: str) -> Callable[[Build], Build]:
    """Register `build` (options -> payload) as command `name` of `app`, with the shared client options.

    A `build` with a parameter named `client` is given the command's `Client`, to read what its payload
    must name (e.g. the entry that registered an event) from the registry."""

    def register(build: Build) -> Build:
        def command(**options: Any) -> None:
            common = {p.name: options.pop(p.name) for p in _COMMON}
            client = Client(
                common["registry"],
                actor=common["actor"],
                key_file=common["key_file"],
                origin=common["origin"],
                vkey=common["vkey"],
            )
            try:
                payload = build(**options, client=client) if wants_client else build(**options)
                receipt = client.submit(payload)
            finally:
                client.close()
            show_receipt(receipt, as_json=common["as_json"])

        signature = inspect.signature(build, eval_str=True)
        wants_client = "client" in signature.parameters
        parameters = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in signature.parameters.values() if p.name != "client"
        ]
        command.__signature__ = signature.replace(  # type: ignore[attr-defined]  # read by Typer
            parameters=[*parameters, *_COMMON], return_annotation=None
        )
        command.__annotations__ = {p.name: p.annotation for p in [*parameters, *_COMMON]}
        command.__doc__ = build.__doc__
        app.command(name)(command)
        return build

    return register


# --- option types and conversions ------------------------------------------------------------------

Day = Annotated[datetime, typer.Option(formats=["%Y-%m-%d"], help="A date, YYYY-MM-DD.")]
Reason = Annotated[str, typer.Option(help="Why (recorded in the log).")]
ParticipantArg = Annotated[str, typer.Argument(help="The participant id.")]
ProjectArg = Annotated[str, typer.Argument(help="The project id (e.g. P0001).")]
ReportArg = Annotated[str, typer.Argument(help="The monitoring report id (e.g. MR0001).")]
EventArg = Annotated[str, typer.Argument(help="The event id (e.g. E0001).")]
Roles = Annotated[list[tx.Role], typer.Option("--role", help="A role (repeat for several).")]
Sha = Annotated[str | None, typer.Option(help="The document's SHA-256, hex (or give --document FILE).")]
DocFile = Annotated[Path | None, typer.Option("--document", help="A file whose SHA-256 is recorded.")]
Docs = Annotated[list[str] | None, typer.Option("--document-sha256", help="A supporting document's SHA-256 (repeat).")]
Quantity = Annotated[int | None, typer.Option(help="How many units (the oldest serials first).")]
Blocks = Annotated[list[str] | None, typer.Option("--block", help="A serial block to move (repeat).")]


def _sha256(sha: str | None, document: Path | None, option: str) -> str:
    if (sha is None) == (document is None):
        fail(f"give exactly one of --{option} HEX or --document FILE", EXIT_USAGE)
    if document is None:
        assert sha is not None
        return sha
    try:
        return hashlib.sha256(document.read_bytes()).hexdigest()
    except OSError as exc:
        fail(f"cannot read {document}: {exc.strerror or exc}", EXIT_USAGE)


def _public_key(text: str) -> str:
    """A public key given as base64, or as a key file (whose public key is in its clear header)."""
    path = Path(text)
    if len(text) == 44 and text.endswith("=") and not path.exists():
        return text
    try:
        return read_public_key(path.read_bytes()).b64()
    except OSError as exc:
        fail(f"cannot read key file {path}: {exc.strerror or exc}", EXIT_USAGE)
    except KeyFileError as exc:
        fail(f"{path}: {exc}", EXIT_USAGE)


def _selection(quantity: int | None, blocks: list[str] | None) -> tx.Selection:
    if (quantity is None) == (not blocks):
        fail("give exactly one of --quantity N or --block B (repeatable)", EXIT_USAGE)
    return model(tx.Selection, quantity=quantity, blocks=tuple(blocks) if blocks else None)


def _details(
    methodology_code: str,
    methodology_version: str,
    title: str,
    district: str,
    description: str,
    crediting_start: datetime,
    crediting_end: datetime,
    estimated_annual_reductions: int,
    documents: list[str] | None,
) -> tx.ProjectDetails:
    return model(
        tx.ProjectDetails,
        methodology_code=methodology_code,
        methodology_version=methodology_version,
        title=title,
        district=district,
        description=description,
        crediting_start=crediting_start.date(),
        crediting_end=crediting_end.date(),
        estimated_annual_reductions=estimated_annual_reductions,
        documents=tuple(documents or ()),
    )


def _day(value: datetime) -> date:
    return value.date()


# --- participants and keys -------------------------------------------------------------------------

PublicKeys = Annotated[
    list[str], typer.Option("--public-key", help="A public key (base64) or a key file holding it (repeat).")
]


@write(participant, "register")
def participant_register(
    participant_id: ParticipantArg, name: Annotated[str, typer.Option()], roles: Roles, public_keys: PublicKeys
) -> BaseModel:
    """Register a participant with its roles and public keys (authority)."""
    return model(
        tx.ParticipantRegister,
        participant_id=participant_id,
        name=name,
        roles=tuple(roles),
        public_keys=tuple(_public_key(k) for k in public_keys),
    )


@write(participant, "set-roles")
def participant_set_roles(participant_id: ParticipantArg, roles: Roles) -> BaseModel:
    """Replace a participant's roles (authority)."""
    return model(tx.ParticipantSetRoles, participant_id=participant_id, roles=tuple(roles))


@write(participant, "suspend")
def participant_suspend(participant_id: ParticipantArg, reason: Reason) -> BaseModel:
    """Suspend a participant (authority)."""
    return model(tx.ParticipantSuspend, participant_id=participant_id, reason=reason)


@write(participant, "reinstate")
def participant_reinstate(participant_id: ParticipantArg, reason: Reason) -> BaseModel:
    """Reinstate a suspended participant (authority)."""
    return model(tx.ParticipantReinstate, participant_id=participant_id, reason=reason)


PublicKeyOpt = Annotated[str, typer.Option("--public-key", help="The public key (base64) or a key file holding it.")]
KeyIdOpt = Annotated[str, typer.Option("--key-id", help="The key's id (16 hex digits).")]


@write(key, "add")
def key_add(participant_id: ParticipantArg, public_key: PublicKeyOpt) -> BaseModel:
    """Add a public key to a participant."""
    return model(tx.KeyAdd, participant_id=participant_id, public_key=_public_key(public_key))


@write(key, "revoke")
def key_revoke(participant_id: ParticipantArg, key_id: KeyIdOpt, reason: Reason) -> BaseModel:
    """Revoke one of a participant's keys."""
    return model(tx.KeyRevoke, participant_id=participant_id, key_id=key_id, reason=reason)


@write(key, "rotate")
def key_rotate(
    participant_id: ParticipantArg,
    old_key_id: Annotated[str, typer.Option(help="The key id to revoke.")],
    new_public_key: Annotated[str, typer.Option(help="The new public key (base64) or a key file.")],
    reason: Reason,
) -> BaseModel:
    """Add a new key and revoke an old one in one entry."""
    return model(
        tx.KeyRotate,
        participant_id=participant_id,
        old_key_id=old_key_id,
        new_public_key=_public_key(new_public_key),
        reason=reason,
    )


@write(witness, "register")
def witness_register(witness_vkey: Annotated[str, typer.Argument(help="The witness's verifier key.")]) -> BaseModel:
    """Register a witness by its verifier key (authority)."""
    return model(tx.WitnessRegister, vkey=witness_vkey)


@write(witness, "remove")
def witness_remove(name: Annotated[str, typer.Argument(help="The witness's key name.")], reason: Reason) -> BaseModel:
    """Remove a witness (authority)."""
    return model(tx.WitnessRemove, name=name, reason=reason)


# --- methodologies and projects --------------------------------------------------------------------

Code = Annotated[str, typer.Argument(help="The methodology code, e.g. CDCER-PV.")]
Version = Annotated[str, typer.Argument(help="The version, e.g. 1.0.")]


@write(methodology, "publish")
def methodology_publish(
    code: Code,
    version: Version,
    title: Annotated[str, typer.Option()],
    sector: Annotated[str, typer.Option()],
    document_sha256: Sha = None,
    document: DocFile = None,
) -> BaseModel:
    """Publish a methodology version (authority)."""
    return model(
        tx.MethodologyPublish,
        code=code,
        version=version,
        title=title,
        sector=sector,
        document_sha256=_sha256(document_sha256, document, "document-sha256"),
    )


@write(methodology, "withdraw")
def methodology_withdraw(code: Code, version: Version, reason: Reason) -> BaseModel:
    """Withdraw a methodology version (authority)."""
    return model(tx.MethodologyWithdraw, code=code, version=version, reason=reason)


MethodologyCode = Annotated[str, typer.Option("--methodology", help="The methodology code.")]
MethodologyVersion = Annotated[str, typer.Option("--methodology-version", help="Its version.")]
Title = Annotated[str, typer.Option()]
District = Annotated[str, typer.Option()]
Description = Annotated[str, typer.Option()]
Estimate = Annotated[int, typer.Option("--estimated-annual-reductions", help="tCO2e a year.")]


@write(project, "submit")
def project_submit(
    methodology_code: MethodologyCode,
    methodology_version: MethodologyVersion,
    title: Title,
    district: District,
    crediting_start: Day,
    crediting_end: Day,
    estimated_annual_reductions: Estimate,
    description: Description = "",
    documents: Docs = None,
) -> BaseModel:
    """Submit a project (project owner)."""
    details = _details(
        methodology_code,
        methodology_version,
        title,
        district,
        description,
        crediting_start,
        crediting_end,
        estimated_annual_reductions,
        documents,
    )
    return model(tx.ProjectSubmit, details=details)


@write(project, "resubmit")
def project_resubmit(
    project_id: ProjectArg,
    methodology_code: MethodologyCode,
    methodology_version: MethodologyVersion,
    title: Title,
    district: District,
    crediting_start: Day,
    crediting_end: Day,
    estimated_annual_reductions: Estimate,
    description: Description = "",
    documents: Docs = None,
) -> BaseModel:
    """Resubmit a project after the authority asked for changes (project owner)."""
    details = _details(
        methodology_code,
        methodology_version,
        title,
        district,
        description,
        crediting_start,
        crediting_end,
        estimated_annual_reductions,
        documents,
    )
    return model(tx.ProjectResubmit, project_id=project_id, details=details)


Statement = Annotated[str, typer.Option(help="The verifier's statement.")]


@write(project, "validate")
def project_validate(
    project_id: ProjectArg,
    opinion: Annotated[tx.Opinion, typer.Option()],
    statement: Statement = "",
    opinion_sha256: Sha = None,
    document: DocFile = None,
) -> BaseModel:
    """Give the validation opinion on a project (verifier)."""
    return model(
        tx.ProjectValidate,
        project_id=project_id,
        opinion=opinion,
        opinion_sha256=_sha256(opinion_sha256, document, "opinion-sha256"),
        statement=statement,
    )


@write(project, "decide")
def project_decide(
    project_id: ProjectArg, decision: Annotated[tx.ProjectDecision, typer.Option()], reason: Reason
) -> BaseModel:
    """Register, reject or send back a validated project (authority)."""
    return model(tx.ProjectDecide, project_id=project_id, decision=decision, reason=reason)


@write(project, "suspend")
def project_suspend(project_id: ProjectArg, reason: Reason) -> BaseModel:
    """Suspend a project (authority)."""
    return model(tx.ProjectSuspend, project_id=project_id, reason=reason)


@write(project, "reinstate")
def project_reinstate(project_id: ProjectArg, reason: Reason) -> BaseModel:
    """Reinstate a suspended project (authority)."""
    return model(tx.ProjectReinstate, project_id=project_id, reason=reason)


@write(project, "close")
def project_close(project_id: ProjectArg, reason: Reason) -> BaseModel:
    """Close a project (authority)."""
    return model(tx.ProjectClose, project_id=project_id, reason=reason)


# --- monitoring reports and issuance ---------------------------------------------------------------


@write(report, "submit")
def report_submit(
    project_id: ProjectArg,
    period_start: Day,
    period_end: Day,
    claimed: Annotated[int, typer.Option(help="tCO2e claimed for the period.")],
    verifier: Annotated[
        str, typer.Option(help="The verification body engaged for this report: only it may verify or reject it.")
    ],
    documents: Docs = None,
) -> BaseModel:
    """Submit a monitoring report of a period that has ended, naming the verifier engaged (project owner)."""
    return model(
        tx.ReportSubmit,
        project_id=project_id,
        period_start=_day(period_start),
        period_end=_day(period_end),
        claimed=claimed,
        verifier=verifier,
        documents=tuple(documents or ()),
    )


@write(report, "verify")
def report_verify(
    report_id: ReportArg,
    verified: Annotated[int, typer.Option(help="tCO2e verified.")],
    statement: Statement = "",
    opinion_sha256: Sha = None,
    document: DocFile = None,
) -> BaseModel:
    """Verify a monitoring report (verifier)."""
    return model(
        tx.ReportVerify,
        report_id=report_id,
        verified=verified,
        opinion_sha256=_sha256(opinion_sha256, document, "opinion-sha256"),
        statement=statement,
    )


@write(report, "reject")
def report_reject(report_id: ReportArg, reason: Reason) -> BaseModel:
    """Reject a monitoring report (verifier)."""
    return model(tx.ReportReject, report_id=report_id, reason=reason)


@write(units, "issue")
def issue(report_id: ReportArg) -> BaseModel:
    """Issue a verified report's units to the project owner (authority)."""
    return model(tx.Issue, report_id=report_id)


# --- units ---------------------------------------------------------------------------------------


@write(units, "transfer")
def transfer(
    to: Annotated[str, typer.Option(help="The receiving account.")],
    quantity: Quantity = None,
    blocks: Blocks = None,
    memo: Annotated[str, typer.Option()] = "",
) -> BaseModel:
    """Transfer units to another account."""
    return model(tx.Transfer, to=to, selection=_selection(quantity, blocks), memo=memo)


@write(units, "retire")
def retire(
    beneficiary: Annotated[str, typer.Option()],
    purpose: Annotated[tx.RetirementPurpose, typer.Option()],
    reason: Reason,
    quantity: Quantity = None,
    blocks: Blocks = None,
    event_id: Annotated[str | None, typer.Option("--event", help="The event (purpose 'event').")] = None,
    year: Annotated[int | None, typer.Option(help="The year offset (purpose 'organisation').")] = None,
) -> BaseModel:
    """Retire units for a beneficiary."""
    return model(
        tx.Retire,
        selection=_selection(quantity, blocks),
        beneficiary=beneficiary,
        purpose=purpose,
        event_id=event_id,
        year=year,
        reason=reason,
    )


@write(units, "cancel")
def cancel(
    holder: Annotated[str, typer.Option(help="The account whose units are cancelled.")],
    reason_code: Annotated[tx.CancellationReason, typer.Option()],
    reason: Reason,
    quantity: Quantity = None,
    blocks: Blocks = None,
) -> BaseModel:
    """Cancel units held by an account (authority)."""
    return model(
        tx.Cancel, holder=holder, selection=_selection(quantity, blocks), reason_code=reason_code, reason=reason
    )


Target = Annotated[tx.FreezeTarget, typer.Argument(help="account or project.")]
TargetId = Annotated[str, typer.Argument(help="The account or project id.")]


@write(units, "freeze")
def freeze(target: Target, target_id: TargetId, reason: Reason) -> BaseModel:
    """Freeze an account or a project (authority)."""
    return model(tx.Freeze, target=target, target_id=target_id, reason=reason)


@write(units, "unfreeze")
def unfreeze(target: Target, target_id: TargetId, reason: Reason) -> BaseModel:
    """Lift a freeze (authority)."""
    return model(tx.Unfreeze, target=target, target_id=target_id, reason=reason)


# --- events and claims -----------------------------------------------------------------------------


@write(event, "register")
def event_register(
    name: Annotated[str, typer.Option()],
    kind: Annotated[tx.EventKind, typer.Option("--kind")],
    venue: Annotated[str, typer.Option()],
    start_date: Day,
    end_date: Day,
    expected_attendees: Annotated[int, typer.Option()],
) -> BaseModel:
    """Register an event (event organiser)."""
    return model(
        tx.EventRegister,
        name=name,
        event_kind=kind,
        venue=venue,
        start_date=_day(start_date),
        end_date=_day(end_date),
        expected_attendees=expected_attendees,
    )


@write(event, "footprint")
def event_footprint(
    event_id: EventArg,
    stage: Annotated[tx.FootprintStage, typer.Option()],
    sources: Annotated[list[str], typer.Option("--source", help="SOURCE=KG, e.g. venue_energy=4200 (repeat).")],
    method_note: Annotated[str, typer.Option()] = "",
) -> BaseModel:
    """Declare an event's footprint in kgCO2e by source (event organiser)."""
    parsed: dict[tx.FootprintSource, int] = {}
    for item in sources:
        name, _, kg = item.partition("=")
        try:
            parsed[tx.FootprintSource(name.strip())] = int(kg)
        except ValueError:
            choices = ", ".join(s.value for s in tx.FootprintSource)
            fail(f"--source {item!r}: expected SOURCE=KG with SOURCE one of {choices}", EXIT_USAGE)
    return model(tx.EventFootprint, event_id=event_id, stage=stage, sources=parsed, method_note=method_note)


@write(claim, "issue")
def claim_issue(event_id: EventArg, client: Client) -> BaseModel:
    """Issue the carbon-neutral claim of an event whose footprint is covered (event organiser)."""
    return model(tx.ClaimIssue, event_id=event_id, event_entry=_event_entry(client, event_id))


def _event_entry(client: Client, event_id: str) -> int:
    """The log entry that registered `event_id`, checked to be the actor's own registration of that event."""
    event = client.get(f"/v1/events/{event_id}")
    index = event.get("registered_at") if isinstance(event, dict) else None
    if not isinstance(index, int) or isinstance(index, bool):
        fail(f"the registry's record of event {event_id} names no registration entry", EXIT_OPERATIONAL)
    page = client.get(f"/v1/log/entries?start={index}&limit=1")
    try:
        entry = decode_entry(b64decode(page["entries"][0]["leaf"]))
        body = tx.decode_body(entry.body_bytes)
    except (LedgerError, KeyError, IndexError, TypeError) as exc:
        fail(
            f"log entry {index}, named as the registration of event {event_id}, cannot be read: {exc}", EXIT_OPERATIONAL
        )
    payload = body.payload
    if not isinstance(payload, tx.EventRegister) or body.actor != client.need_actor() or payload.name != event["name"]:
        fail(
            f"log entry {index} is not {client.need_actor()}'s registration of event {event_id} "
            f"({body.kind} by {body.actor}); the registry's event record disagrees with its log",
            EXIT_OPERATIONAL,
        )
    return index


GROUPS: dict[str, typer.Typer] = {
    "participant": participant,
    "key": key,
    "methodology": methodology,
    "project": project,
    "report": report,
    "event": event,
    "claim": claim,
}
"""The command groups of `cdcer` these writes make (`witness` joins cli.witness's group; `units` is top-level)."""
