"""`cdcer audit`: verify a ledger."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from cli.console import EXIT_INTEGRITY, EXIT_OK, EXIT_OPERATIONAL, EXIT_USAGE, err, fail
from ledger.audit import audit
from ledger.errors import LedgerError, NoteError, StorageError
from ledger.note import NoteVerifier
from ledger.storage.engine import make_engine
from ledger.storage.schema import require_current
from ledger.storage.source import DatabaseSource

app = typer.Typer(help="Verify a ledger: chain, tree, checkpoints, signatures, roles, replay.")


@app.command("verify")
def verify(
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
            fail(f"--vkey: {exc}", EXIT_USAGE)
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
        fail(str(exc), EXIT_OPERATIONAL)
    except LedgerError as exc:
        fail(str(exc), EXIT_INTEGRITY)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    elif report.verified:
        typer.echo(f"verified: {report.entries:,} entries, {report.checkpoints:,} checkpoints")
    else:
        typer.echo(f"NOT verified: {report.finding_count} finding(s); first: {report.first_finding()}")
    if vkey is None and not as_json:
        err.print("note: no --vkey given; checkpoints were checked against the key named in entry 0 only")
    raise typer.Exit(EXIT_OK if report.verified else EXIT_INTEGRITY)
