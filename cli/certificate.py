"""`cdcer certificate`: verify a retirement or claim certificate offline, or show what it states."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cli.client import VKEY_VARIABLE, need_vkey
from cli.console import (
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_USAGE,
    add_row,
    err,
    fail,
    json_option,
    json_text,
    plain,
    plural,
    printable,
    stdout,
)
from cli.witness import MinWitnessesOpt, WitnessOpt, require_witnesses, witness_policy
from ledger.certificate import (
    MAX_CERTIFICATE_BYTES,
    ClaimStatement,
    RetirementFacts,
    RetirementStatement,
    parse_certificate,
    verify_certificate,
)
from ledger.checkpoint import open_checkpoint
from ledger.encoding import b64encode
from ledger.errors import CertificateError, NoteError
from ledger.note import NoteVerifier

app = typer.Typer(help="Retirement and claim certificates: verify offline, or show.", no_args_is_help=True)


@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The certificate (JSON) to verify.")],
    vkey: Annotated[
        str | None,
        typer.Option(
            envvar=VKEY_VARIABLE,
            help="The registry's verifier key, published out of band (the string, or a file holding it).",
        ),
    ] = None,
    witness: WitnessOpt = None,
    min_witnesses: MinWitnessesOpt = None,
    as_json: Annotated[bool, json_option("Print a machine-readable result on stdout.")] = False,
) -> None:
    """Verify a certificate offline; exit 0 verified, 1 it does not verify, 2 bad --vkey or unreadable file.

    With --witness, its checkpoint must also carry cosignatures by (--min-witnesses of) those witnesses.
    The checkpoint's root hash is printed in base64, as in the checkpoint itself and the HTTP API.
    """
    key = _verifier_key(need_vkey(vkey, what="verifying a certificate"))
    policy = witness_policy(witness, min_witnesses)
    data = _read(file)
    try:
        verified = verify_certificate(data, key)
    except CertificateError as exc:
        fail(f"{file} does not verify: {exc}", EXIT_INTEGRITY, report={"verified": False, "reason": str(exc)})
    witnesses = None
    if policy is not None:
        # The very checkpoint note the certificate verified against: the same bytes, opened again.
        signed = open_checkpoint(parse_certificate(data).checkpoint.encode(), NoteVerifier.from_vkey(key))
        witnesses = require_witnesses(signed, policy, what="the certificate's checkpoint")
    statement = verified.statement
    if as_json:
        result = {
            "verified": True,
            "kind": verified.kind,
            "id": verified.id,
            "origin": verified.origin,
            "checkpoint_size": verified.checkpoint_size,
            "root_hash": b64encode(verified.root_hash),
            "key_id": verified.key_id,
            "entries": list(verified.entries),
            "statement": statement.model_dump(mode="json"),
            "proven": list(verified.proven),
            "limits": list(verified.limits),
        }
        if witnesses is not None:
            result["witnesses"] = witnesses
        typer.echo(json_text(result))
        raise typer.Exit(EXIT_OK)
    out = stdout()
    out.print(printable(f"verified: {verified.kind} certificate {verified.id}"))
    summary = _table()
    add_row(summary, "registry", verified.origin)
    add_row(summary, "checkpoint", f"size {verified.checkpoint_size:,}, root {b64encode(verified.root_hash)}")
    add_row(summary, "signed by", verified.key_id)
    if witnesses is not None:
        add_row(summary, "cosigned by", ", ".join(c["witness"] for c in witnesses["cosigned"]) or "(none)")
    add_row(summary, "entries", ", ".join(str(index) for index in verified.entries))
    out.print(summary)
    out.print(_statement_table(statement))
    out.print("What the signed entries prove:")
    for proven in verified.proven:
        out.print(printable(f"  - {proven}"))
    out.print("What this offline check cannot prove (the full audit, cdcer audit verify, does):")
    for limit in verified.limits:
        out.print(printable(f"  - {limit}"))


@app.command("show")
def show(
    file: Annotated[Path, typer.Argument(help="The certificate (JSON) to show.")],
    as_json: Annotated[bool, json_option("Print the statement as JSON.")] = False,
) -> None:
    """Show what a certificate states, WITHOUT verifying it (use `cdcer certificate verify` for that)."""
    data = _read(file)
    try:
        certificate = parse_certificate(data)
    except CertificateError as exc:
        fail(f"{file} is not a readable certificate: {exc}", EXIT_USAGE)
    err.print(
        "note: NOT verified; this shows what the certificate claims. Run `cdcer certificate verify --vkey ...`.",
        markup=False,
        highlight=False,
    )
    if as_json:
        result = {
            "verified": False,
            "kind": certificate.kind,
            "id": certificate.id,
            "origin": certificate.origin,
            "vkey": certificate.vkey,
            "entries": [entry.index for entry in certificate.entries],
            "statement": certificate.statement.model_dump(mode="json"),
        }
        typer.echo(json_text(result))
        return
    out = stdout()
    out.print(printable(f"{certificate.kind} certificate {certificate.id} (not verified)"))
    summary = _table()
    add_row(summary, "registry", certificate.origin)
    add_row(summary, "verifier key it names", certificate.vkey)
    add_row(summary, "entries", ", ".join(str(entry.index) for entry in certificate.entries))
    out.print(summary)
    out.print(_statement_table(certificate.statement))


# --- helpers -------------------------------------------------------------------------------------


def _verifier_key(value: str) -> str:
    """The verifier key string, from the option itself or from the file it names."""
    text = value
    path = Path(value)
    if "+" not in value and path.is_file():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"--vkey: cannot read {path}: {exc}", EXIT_USAGE)
    text = text.strip()
    try:
        NoteVerifier.from_vkey(text)
    except NoteError as exc:
        fail(f"--vkey: {exc}", EXIT_USAGE)
    return text


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_CERTIFICATE_BYTES + 1)
    except FileNotFoundError:
        fail(f"certificate {path} not found", EXIT_USAGE)
    except OSError as exc:
        fail(f"cannot read certificate {path}: {exc.strerror or exc}", EXIT_USAGE)
    return data


def _table() -> Table:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    return table


def _statement_table(statement: RetirementStatement | ClaimStatement) -> Table:
    table = _table()
    table.title = Text("statement")
    table.title_justify = "left"
    rows: list[tuple[str, Any]]
    if isinstance(statement, RetirementStatement):
        rows = _retirement_rows(statement)
    else:
        event = statement.event
        rows = [
            ("claim", f"{statement.id} (entry {statement.entry}, {statement.time})"),
            ("event", f"{event.id} {event.name!r} by {event.organiser}, {event.start_date} to {event.end_date}"),
            ("venue", event.venue),
            ("footprint", f"{statement.footprint_kg:,} kgCO2e (entry {statement.footprint_entry})"),
            *((f"  {source}", f"{kg:,} kg") for source, kg in sorted(statement.footprint.items())),
            ("units required", f"{statement.units:,}"),
            ("retirements", ", ".join(f"{r.id} ({r.quantity:,})" for r in statement.retirements)),
            ("blocks", _lines(statement.blocks)),
        ]
    batches = ", ".join(f"{b.id} ({b.project}, vintage {b.vintage})" for b in statement.batches)
    for label, value in [*rows, ("batches", batches)]:
        add_row(table, label, value)
    return table


def _lines(values: Sequence[str]) -> Text:
    """One line per value, each inert: a newline inside a value is escaped, not a line of its own."""
    return Text("\n").join(plain(value) for value in values)


def _retirement_rows(retirement: RetirementFacts) -> list[tuple[str, Any]]:
    return [
        ("retirement", f"{retirement.id} (entry {retirement.entry}, {retirement.time})"),
        ("holder", retirement.holder),
        ("quantity", plural(retirement.quantity, "unit")),
        ("beneficiary", retirement.beneficiary),
        ("purpose", retirement.purpose + (f" (event {retirement.event_id})" if retirement.event_id else "")),
        *([] if retirement.year is None else [("year", retirement.year)]),
        ("reason", retirement.reason),
        ("blocks", _lines(retirement.blocks)),
    ]
