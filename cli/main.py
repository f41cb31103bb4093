"""The `cdcer` command. Issue 5 adds a command for every workflow; this is the auditor's core today."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.console import Console

from ledger.audit import audit
from ledger.errors import LedgerError, NoteError, StorageError
from ledger.note import NoteVerifier
from ledger.storage.engine import make_engine
from ledger.storage.schema import require_current
from ledger.storage.source import DatabaseSource

EXIT_VERIFIED, EXIT_INTEGRITY, EXIT_USAGE, EXIT_OPERATIONAL = 0, 1, 2, 3

app = typer.Typer(
    name="cdcer",
    help="CDCER registry: verifiable carbon credits.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
audit_app = typer.Typer(help="Verify a ledger: chain, tree, checkpoints, signatures, roles, replay.")
app.add_typer(audit_app, name="audit")
err = Console(stderr=True, soft_wrap=True)


@audit_app.command("verify")
def audit_verify(
    database: Annotated[str, typer.Option("--database", "-d", help="Database URL of the ledger to verify.")],
    vkey: Annotated[
        str | None, typer.Option("--vkey", help="The registry's verifier key, obtained out of band.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a machine-readable report on stdout.")] = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Signature-checking processes (default: cores).")] = None,
) -> None:
    """Verify a whole ledger from a database; exit 0 verified, 1 integrity failure, 3 operational error."""
    show_progress = not as_json and sys.stderr.isatty()
    if vkey is not None:
        try:
            NoteVerifier.from_vkey(vkey)
        except NoteError as exc:
            err.print(f"error: --vkey: {exc}", markup=False, highlight=False)
            raise typer.Exit(EXIT_USAGE) from None
    try:
        engine = make_engine(database)
        require_current(engine)
        with DatabaseSource(engine) as source:
            report = audit(
                source,
                vkey=vkey,
                workers=workers,
                progress=(lambda n: err.print(f"verified {n:,} entries", end="\r")) if show_progress else None,
            )
    except StorageError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_OPERATIONAL) from None
    except LedgerError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        raise typer.Exit(EXIT_INTEGRITY) from None
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif report.verified:
        typer.echo(f"verified: {report.entries:,} entries, {report.checkpoints:,} checkpoints")
    else:
        first = report.first_finding()
        typer.echo(f"NOT verified: {report.finding_count} finding(s); first: {first}")
    if vkey is None and not as_json:
        err.print("note: no --vkey given; checkpoints were checked against the key named in entry 0 only")
    raise typer.Exit(EXIT_VERIFIED if report.verified else EXIT_INTEGRITY)


@app.command("version")
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as dist_version

    typer.echo(dist_version("cdcer"))
