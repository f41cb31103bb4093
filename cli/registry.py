"""`cdcer init` and `cdcer serve`: create a registry, and run its HTTP API."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.engine import make_url

from cli.console import EXIT_OPERATIONAL, EXIT_USAGE, err, fail
from ledger.errors import KeyFileError, LedgerError, StorageError
from ledger.keys import PrivateKey, write_key_file
from ledger.ledger import Ledger, found_registry
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.schema import require_current, upgrade
from registry.app import ledger_from_settings
from registry.settings import Settings

DEFAULT_DATABASE = "sqlite:///data/registry.db"
LOG_KEY_PASSPHRASE = "CDCER_LOG_KEY_PASSPHRASE"


def _passphrase(variable: str, what: str, *, plain: bool) -> str | None:
    if plain:
        return None
    value = os.environ.get(variable)
    if value:
        return value
    if not os.isatty(0):
        fail(f"set {variable} to encrypt the {what}, or pass --plain-keys (development only)", EXIT_USAGE)
    return str(typer.prompt(f"passphrase for the {what}", hide_input=True, confirmation_prompt=True))


def init(
    database: Annotated[str, typer.Option("--database", "-d", envvar="CDCER_DATABASE_URL")] = DEFAULT_DATABASE,
    data_dir: Annotated[Path, typer.Option(help="Where the key files are written.")] = Path("data"),
    origin: Annotated[str, typer.Option(help="The registry's log origin (a name, no spaces or '+').")] = (
        "cdcer.localhost/registry"
    ),
    authority_id: Annotated[str, typer.Option(help="Participant id of the first authority.")] = "authority",
    authority_name: Annotated[str, typer.Option(help="Its name.")] = "Chengdu Ecology and Environment Bureau",
    plain_keys: Annotated[bool, typer.Option(help="Write unencrypted key files (development only).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Create a registry: its log signing key, the first authority and its key, entry 0."""
    if re.search(r"\s|\+", origin) or not origin:
        fail(f"--origin {origin!r}: a non-empty name without spaces or '+'", EXIT_USAGE)
    log_file = data_dir / "registry-log.key"
    authority_file = data_dir / f"{authority_id}.key"
    for path in (log_file, authority_file):
        if path.exists():
            fail(f"{path} already exists; this data folder already has a registry", EXIT_USAGE)
    log_pass = _passphrase(LOG_KEY_PASSPHRASE, "registry's log signing key", plain=plain_keys)
    authority_pass = _passphrase("CDCER_AUTHORITY_KEY_PASSPHRASE", "authority's key", plain=plain_keys)
    try:
        url = make_url(database)
        if url.get_backend_name() == "sqlite" and url.database:
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(database)
        upgrade(engine)
        with read_transaction(engine) as conn:
            if store.log_size(conn):
                fail(f"{database} already holds a registry ({store.get_meta(conn, 'origin')})", EXIT_USAGE)
        log_key, authority_key = PrivateKey.generate(), PrivateKey.generate()
        data_dir.mkdir(parents=True, exist_ok=True)
        write_key_file(log_file, log_key, passphrase=log_pass, label=f"{origin} log signing key")
        write_key_file(authority_file, authority_key, passphrase=authority_pass, label=authority_id)
        signer = NoteSigner(origin, log_key.seed)
        found_registry(
            Ledger(engine, signer),
            authority_id=authority_id,
            authority_name=authority_name,
            authority_key=authority_key,
        )
    except StorageError as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except (KeyFileError, LedgerError) as exc:
        fail(str(exc), EXIT_USAGE)
    result = {
        "database": database,
        "origin": origin,
        "vkey": signer.verifier_key(),
        "log_key_file": str(log_file),
        "authority_id": authority_id,
        "authority_key_file": str(authority_file),
        "authority_key_id": authority_key.key_id,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"registry {origin} created in {database}")
    typer.echo(f"verifier key (publish it): {result['vkey']}")
    typer.echo(f"log signing key: {log_file}")
    typer.echo(f"authority {authority_id}: key {authority_key.key_id} in {authority_file}")


def serve(
    database: Annotated[str, typer.Option("--database", "-d", envvar="CDCER_DATABASE_URL")] = DEFAULT_DATABASE,
    log_key_file: Annotated[
        Path | None, typer.Option(envvar="CDCER_LOG_KEY_FILE", help="The log signing key (for writes).")
    ] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
) -> None:
    """Run the registry: its HTTP API and its public pages."""
    import uvicorn

    if log_key_file is None and Path("data/registry-log.key").exists():
        log_key_file = Path("data/registry-log.key")
    os.environ["CDCER_DATABASE_URL"] = database
    if log_key_file is not None:
        os.environ["CDCER_LOG_KEY_FILE"] = str(log_key_file)
    # Check what the server processes will load, so a mistake is one line here, not a worker traceback.
    try:
        engine = make_engine(database)
        require_current(engine)
        if ledger_from_settings(Settings(), engine) is None:
            err.print("note: no log signing key (--log-key-file): the registry is read-only")
        engine.dispose()
    except StorageError as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except LedgerError as exc:
        fail(str(exc), EXIT_USAGE)
    err.print(f"serving {database} on http://{host}:{port} (public pages: http://{host}:{port}/, API docs: /docs)")
    try:
        # registry.access_log writes one JSON line per request; uvicorn's own access log would repeat it.
        uvicorn.run("registry.main:app", host=host, port=port, workers=workers, log_level="info", access_log=False)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}", EXIT_OPERATIONAL)
