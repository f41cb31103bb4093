"""`cdcer demo`: fill a new registry with a realistic story, sized by ``--entries``."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.console import EXIT_INTEGRITY, EXIT_OPERATIONAL, EXIT_USAGE, err, fail, json_option, plural
from cli.registry import DEFAULT_DATABASE, LOG_KEY_PASSPHRASE
from demo import DEFAULT_CITIZENS, DEFAULT_ENTRIES, DEFAULT_SEED, DemoError, DemoRefused, DemoSummary, run_demo
from ledger.errors import IntegrityError, KeyFileError, LedgerError, StorageError
from ledger.keys import read_key_file
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.schema import require_current

AUTHORITY_KEY_PASSPHRASE = "CDCER_AUTHORITY_KEY_PASSPHRASE"


def demo(
    database: Annotated[str, typer.Option("--database", "-d", envvar="CDCER_DATABASE_URL")] = DEFAULT_DATABASE,
    data_dir: Annotated[Path, typer.Option(help="The folder `cdcer init` wrote the keys to.")] = Path("data"),
    entries: Annotated[
        int,
        typer.Option(min=1, help="About how many entries the project path appends (its story alone is about 150)."),
    ] = DEFAULT_ENTRIES,
    citizens: Annotated[
        int,
        typer.Option(
            min=1,
            max=100_000,
            help="Point accounts the points story opens (about 2.5 entries each). Its days are attested only "
            "if the log began before them: see `cdcer init --founded-days-ago`.",
        ),
    ] = DEFAULT_CITIZENS,
    seed: Annotated[int, typer.Option(help="The same seed on the same registry gives the same demo.")] = DEFAULT_SEED,
    log_key_file: Annotated[
        Path | None,
        typer.Option(envvar="CDCER_LOG_KEY_FILE", help="The log signing key (default: <data-dir>/registry-log.key)."),
    ] = None,
    authority_key_file: Annotated[
        Path | None, typer.Option(help="The authority's key (default: <data-dir>/authority.key).")
    ] = None,
    force_append: Annotated[
        bool, typer.Option(help="Append to a registry that already holds more than its genesis.")
    ] = False,
    as_json: Annotated[bool, json_option("Print the summary as JSON.")] = False,
) -> None:
    """Fill a registry with a realistic demo: participants, projects, issuances, transfers, events, claims,
    and the points path: providers, rules, citizens' point accounts, attested days, scenes, offers, orders."""
    log_key_path = log_key_file or data_dir / "registry-log.key"
    authority_path = authority_key_file or data_dir / "authority.key"
    try:
        log_key = read_key_file(log_key_path, passphrase=os.environ.get(LOG_KEY_PASSPHRASE) or None)
        authority_key = read_key_file(authority_path, passphrase=os.environ.get(AUTHORITY_KEY_PASSPHRASE) or None)
    except KeyFileError as exc:
        hint = " (its passphrase is read from $CDCER_LOG_KEY_PASSPHRASE / $CDCER_AUTHORITY_KEY_PASSPHRASE)"
        fail(f"{exc}{hint if 'passphrase' in str(exc) else ''}", EXIT_USAGE)
    try:
        engine = make_engine(database)
        require_current(engine)
        with read_transaction(engine) as conn:
            size, origin, vkey = store.log_size(conn), store.get_meta(conn, "origin"), store.get_meta(conn, "vkey")
        if size == 0 or origin is None:
            fail(f"{database} holds no registry yet; create it with `cdcer init`", EXIT_USAGE)
        if size > 1 and not force_append:
            fail(
                f"{database} already holds {plural(size, 'entry')}; the demo fills a new registry "
                "(pass --force-append to add to this one)",
                EXIT_USAGE,
            )
        signer = NoteSigner(origin, log_key.seed)
        if vkey is not None and vkey != signer.verifier_key():
            fail(f"{log_key_path} is not the log signing key of the registry in {database}", EXIT_USAGE)
        with _progress(enabled=not as_json and sys.stderr.isatty()) as report:
            summary = run_demo(
                Ledger(engine, signer),
                authority_key=authority_key,
                data_dir=data_dir,
                entries=entries,
                seed=seed,
                citizens=citizens,
                progress=report,
            )
    except DemoRefused as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except DemoError as exc:
        fail(str(exc), EXIT_USAGE)
    except IntegrityError as exc:
        fail(str(exc), EXIT_INTEGRITY)
    except StorageError as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except LedgerError as exc:
        fail(str(exc), EXIT_USAGE)
    if as_json:
        typer.echo(json.dumps({"database": database, **summary.to_json()}, indent=2, ensure_ascii=False))
        return
    _print_summary(database, summary)


@contextmanager
def _progress(*, enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    columns = (TextColumn("appending the demo"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("demo", total=None)

        def report(done: int, target: int) -> None:
            bar.update(task, completed=done, total=target)

        yield report


def _print_summary(database: str, summary: DemoSummary) -> None:
    echo = typer.echo
    echo(
        f"demo appended {plural(summary.entries, 'entry')} to {summary.origin} in {database} "
        f"(log size {summary.log_size:,}; {summary.entries_per_second:,.0f} entries/s)"
    )
    width = max(len(kind) for kind in summary.kinds)
    for kind, count in sorted(summary.kinds.items()):
        echo(f"  {kind:<{width}}  {count:>8,}")
    echo(f"participants (demo keys, plain files, not secret: {summary.keys_folder}):")
    shown = summary.participants[:12]
    for p in shown:
        echo(f"  {p.id:<24} {','.join(p.roles):<16} key {p.key_id}  {p.name}")
    if len(summary.participants) > len(shown):
        echo(f"  ... and {len(summary.participants) - len(shown)} more (see --json)")
