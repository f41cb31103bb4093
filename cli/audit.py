"""`cdcer audit`: verify a ledger from its database, a registry's URL or an export; checkpoints and proofs.

An auditor needs only the registry's URL and its verifier key (``--vkey``, obtained out of band).
``verify --since FILE`` proves the saved checkpoint is a prefix of the current one (a consistency
proof) and then verifies only the entries added since (`ledger.audit.audit_extension`): their encoding,
chain, that they extend the saved tree to the new signed root, and their signatures. What needs the
state replayed from entry 0 (whose key signed, roles, business rules) is left to a full audit, and the
report says so in ``limits``. ``verify --url --witness VKEY`` (repeatable, with ``--min-witnesses N``)
also requires the registry's checkpoint to carry valid cosignatures by at least N of those witnesses,
checked before the audit starts. Exit codes: 0 verified,
1 integrity failure (a finding, a proof or signature that does not verify, a malformed export),
2 usage (options, a malformed --vkey), 3 operational (unreachable registry, unreadable file).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cli.client import AuditVkeyOpt, need_vkey
from cli.console import (
    EXIT_INTEGRITY,
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_USAGE,
    echo,
    err,
    fail,
    json_option,
    json_text,
    plural,
    printable,
)
from cli.sources import (
    ExportSource,
    MalformedExport,
    RegistryClient,
    RemoteSource,
    SourceUnavailable,
    write_export,
)
from cli.witness import MinWitnessesOpt, WitnessOpt, require_witnesses, witness_policy
from ledger.audit import EXTENSION_LIMITS, AuditReport, audit, audit_extension
from ledger.checkpoint import Checkpoint, SignedCheckpoint, open_checkpoint
from ledger.encoding import b64decode, b64encode
from ledger.errors import LedgerError, NoteError, ProofError, StorageError
from ledger.log import StoredEntry
from ledger.merkle import (
    Hash,
    leaf_hash,
    root_from_inclusion_proof,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from ledger.note import NoteVerifier
from ledger.storage import store
from ledger.storage.engine import make_engine
from ledger.storage.schema import require_current
from ledger.storage.source import DatabaseSource

app = typer.Typer(
    help="Verify a ledger: chain, tree, checkpoints, signatures, roles, replay; fetch checkpoints, proofs."
)
proof_app = typer.Typer(help="Fetch one Merkle proof from a registry and verify it against its signed checkpoint.")
app.add_typer(proof_app, name="proof")

UrlOption = Annotated[str, typer.Option("--url", help="Base URL of the registry, e.g. https://registry.example.")]
JsonOption = Annotated[bool, json_option("Print a machine-readable report on stdout.")]


def _verifier(vkey: str) -> NoteVerifier:
    try:
        return NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        fail(f"--vkey: {exc}", EXIT_USAGE)


def _open(note: bytes, verifier: NoteVerifier, *, what: str) -> Checkpoint:
    """A checkpoint whose registry signature verifies, or exit 1."""
    return _open_signed(note, verifier, what=what).checkpoint


def _open_signed(note: bytes, verifier: NoteVerifier, *, what: str) -> SignedCheckpoint:
    """A signed checkpoint whose registry signature verifies, with its note, or exit 1."""
    try:
        return open_checkpoint(note, verifier)
    except NoteError as exc:
        fail(f"{what} does not verify with --vkey: {exc}", EXIT_INTEGRITY)


def _read_saved(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_OPERATIONAL)


def _consistent(client: RegistryClient, old: Checkpoint, new: Checkpoint) -> int:
    """Fetch and verify the consistency proof from `old` to `new` (exit 1 if it fails); the proof's length."""
    if new.size < old.size:
        fail(
            f"the log shrank: the saved checkpoint has {plural(old.size, 'entry')}, the registry's {new.size:,}",
            EXIT_INTEGRITY,
        )
    proof = client.consistency(old.size, new.size) if 0 < old.size < new.size else []
    try:
        verify_consistency(
            old_size=old.size, new_size=new.size, old_root=old.root_hash, new_root=new.root_hash, proof=proof
        )
    except ProofError as exc:
        fail(f"checkpoint {old.size} -> {new.size} is not consistent: {exc}", EXIT_INTEGRITY)
    return len(proof)


def _echo_json(value: Any) -> None:
    typer.echo(json_text(value))


@app.command("verify")
def verify(
    database: Annotated[
        str | None, typer.Option("--database", "-d", help="Database URL of the ledger to verify.")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="Base URL of a registry to verify over HTTP.")] = None,
    export: Annotated[
        Path | None, typer.Option("--export", help="A JSON Lines file written by `cdcer audit export`.")
    ] = None,
    vkey: AuditVkeyOpt = None,
    since: Annotated[
        Path | None,
        typer.Option("--since", help="A checkpoint saved by `cdcer audit checkpoint`: prove the log extends it."),
    ] = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="With --url: once verified, save the registry's checkpoint here (may be the --since file), "
            "for the next --since; an existing file must be a prefix of it.",
        ),
    ] = None,
    witness: WitnessOpt = None,
    min_witnesses: MinWitnessesOpt = None,
    as_json: JsonOption = False,
    workers: Annotated[int | None, typer.Option(min=1, help="Signature-checking processes (default: cores).")] = None,
) -> None:
    """Verify a whole ledger; exit 0 verified, 1 integrity failure, 2 usage error, 3 operational error.

    With --url or --export the registry's verifier key is required (--vkey or CDCER_VKEY): it is what the
    checkpoints are checked against. With --database it is optional (the database's own key is used).
    """
    if sum(x is not None for x in (database, url, export)) != 1:
        fail("give exactly one of --database, --url, --export", EXIT_USAGE)
    if since is not None and url is None:
        fail("--since needs --url", EXIT_USAGE)
    if save is not None and url is None:
        fail("--save needs --url (it saves the registry's checkpoint)", EXIT_USAGE)
    policy = witness_policy(witness, min_witnesses)
    if policy is not None and url is None:
        fail("--witness needs --url (the registry's checkpoint is what the witnesses cosign)", EXIT_USAGE)
    if database is None:
        needs = (
            "--witness" if policy is not None else "--since" if since is not None else "an audit over --url or --export"
        )
        vkey = need_vkey(vkey, what=needs)
    verifier = None if vkey is None else _verifier(vkey)
    show_progress = not as_json and _stderr_is_terminal()
    since_report: dict[str, Any] | None = None
    witnesses: dict[str, Any] | None = None
    saved: Path | None = None
    try:
        if database is not None:
            engine = make_engine(database)
            require_current(engine)
            with DatabaseSource(engine) as db_source:
                total = store.log_size(db_source.conn)
                with audit_progress(total, enabled=show_progress) as progress:
                    report = audit(db_source, vkey=vkey, workers=workers, progress=progress)
        elif url is not None:
            assert verifier is not None
            with RegistryClient(url) as client:
                remote = RemoteSource(client)
                if policy is not None:
                    # (before the audit, which may take long) the checkpoint it will verify, cosigned
                    signed = _open_signed(remote.note, verifier, what="the registry's checkpoint")
                    witnesses = require_witnesses(signed, policy, what="the registry's checkpoint")
                if since is not None:
                    since_report, report = _since(client, remote, since, verifier, show_progress)
                else:
                    with audit_progress(remote.checkpoint.size, enabled=show_progress) as progress:
                        report = audit(remote, vkey=vkey, workers=workers, progress=progress)
                if save is not None and report.verified:
                    saved = _save_checkpoint(client, remote.note, verifier, save)
        else:
            assert export is not None
            source = _export_source(export)
            with audit_progress(source.checkpoint.size, enabled=show_progress) as progress:
                report = audit(source, vkey=vkey, workers=workers, progress=progress)
    except (StorageError, SourceUnavailable) as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except (LedgerError, MalformedExport) as exc:
        fail(str(exc), EXIT_INTEGRITY)
    _print_report(report, since_report, witnesses, saved, as_json)
    if vkey is None and not as_json:
        err.print(
            "note: no --vkey given; checkpoints were checked against the key named in entry 0 only",
            markup=False,
            highlight=False,
        )
    raise typer.Exit(EXIT_OK if report.verified else EXIT_INTEGRITY)


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


class AuditProgress:
    """The audit's progress callback: entries verified so far, of `total`, on a rich progress bar."""

    def __init__(self, bar: Progress, total: int | None, *, what: str = "verifying") -> None:
        self.bar = bar
        self.total = total
        self.task = bar.add_task(what, total=total)

    def __call__(self, done: int) -> None:
        self.bar.update(self.task, completed=done, total=self.total)


@contextmanager
def audit_progress(
    total: int | None, *, enabled: bool, console: Console | None = None
) -> Iterator[AuditProgress | None]:
    """A progress bar of `total` entries with an ETA, on stderr (or `console`); None when not `enabled`.

    `verify` enables it only on a terminal and never under --json (the bar is transient: it leaves no line).
    """
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("entries"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console or err, transient=True) as bar:
        yield AuditProgress(bar, total)


def _save_checkpoint(client: RegistryClient, note: bytes, verifier: NoteVerifier, save: Path) -> Path:
    """Save the verified checkpoint `note` to `save` (atomically); an existing file must be a prefix of it."""
    new = _open(note, verifier, what="the registry's checkpoint")
    if save.exists():
        previous = _open(_read_saved(save), verifier, what=f"the saved checkpoint {save}")
        if previous.origin != new.origin:
            fail(f"the registry's origin is {new.origin!r}, {save}'s {previous.origin!r}", EXIT_INTEGRITY)
        _consistent(client, previous, new)
    _write_note(save, note)
    return save


def _write_note(path: Path, note: bytes) -> None:
    try:
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(note)
        partial.replace(path)
    except OSError as exc:
        fail(f"cannot write {path}: {exc.strerror or exc}", EXIT_OPERATIONAL)


def _export_source(path: Path) -> ExportSource:
    try:
        return ExportSource(path)
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_OPERATIONAL)


def _since(
    client: RegistryClient,
    remote: RemoteSource,
    saved_file: Path,
    verifier: NoteVerifier,
    show_progress: bool,
) -> tuple[dict[str, Any], AuditReport]:
    """Verify the saved checkpoint, the registry's current one and the consistency proof between them,
    then only the entries added since the saved one."""
    old = _open(_read_saved(saved_file), verifier, what=f"the saved checkpoint {saved_file}")
    new = _open(remote.note, verifier, what="the registry's checkpoint")
    if new.origin != old.origin:
        fail(f"the registry's origin is {new.origin!r}, the saved checkpoint's {old.origin!r}", EXIT_INTEGRITY)
    hashes = _consistent(client, old, new)
    err.print(
        f"consistent: {old.size:,} -> {plural(new.size, 'entry')} ({plural(hashes, 'proof hash')})",
        highlight=False,
        markup=False,
    )
    last_old: StoredEntry | None = None
    last_proof: list[Hash] = []
    if old.size:
        (last_old,) = client.entries(old.size - 1, old.size)
        _, last_proof = client.inclusion(old.size - 1, old.size)
    with audit_progress(new.size - old.size, enabled=show_progress) as progress:
        report = audit_extension(
            old_size=old.size,
            old_root=old.root_hash,
            last_old=last_old,
            last_old_proof=last_proof,
            new_size=new.size,
            new_root=new.root_hash,
            entries=client.entries(old.size, new.size),
            progress=progress,
        )
    since = {
        "old_size": old.size,
        "new_size": new.size,
        "new_entries": new.size - old.size,
        "consistent": True,
        "limits": list(EXTENSION_LIMITS),
    }
    return since, report


def _print_report(
    report: AuditReport,
    since: dict[str, Any] | None,
    witnesses: dict[str, Any] | None,
    saved: Path | None,
    as_json: bool,
) -> None:
    failure = f"NOT verified: {plural(report.finding_count, 'finding')}; first: {report.first_finding()}"
    if as_json:
        body = report.to_json()
        if since is not None:
            body["since"] = since
        if witnesses is not None:
            body["witnesses"] = witnesses
        body["saved"] = None if saved is None else str(saved)
        if not report.verified:
            fail(failure, EXIT_INTEGRITY, report=body)
        _echo_json(body)
        return
    if report.verified:
        if since is None:
            typer.echo(f"verified: {plural(report.entries, 'entry')}, {plural(report.checkpoints, 'checkpoint')}")
            if report.points_not_replayed:
                entries = plural(report.points_not_replayed, "points entry", "points entries")
                err.print(
                    f"note: {entries} (attestations, redemptions, expiries, clawbacks) checked up to their "
                    "signatures but not replayed: the batches' records are private; an audit of the database "
                    "(--database) replays them",
                    highlight=False,
                    markup=False,
                )
        else:
            typer.echo(
                f"verified: {plural(since['new_entries'], 'new entry', 'new entries')} "
                f"({since['old_size']:,} -> {since['new_size']:,}), consistent with the saved checkpoint"
            )
            for limit in since["limits"]:
                err.print(f"note: {limit}", highlight=False, markup=False)
    else:
        echo(failure)
    if witnesses is not None:
        cosigned = ", ".join(c["witness"] for c in witnesses["cosigned"]) or "none"
        echo(f"witnesses: the checkpoint is cosigned by {cosigned} ({witnesses['required']} required)")
    if saved is not None:
        size = since["new_size"] if since is not None else report.entries
        shown = printable(f"saved the checkpoint of {plural(size, 'entry')} to {saved}")
        err.print(shown, markup=False, highlight=False)


@app.command("export")
def export(
    out: Annotated[Path, typer.Argument(help="The JSON Lines file to write.")],
    url: Annotated[str | None, typer.Option("--url", help="Base URL of a registry.")] = None,
    database: Annotated[str | None, typer.Option("--database", "-d", help="Database URL of a ledger.")] = None,
) -> None:
    """Write the raw log as JSON Lines: the signed checkpoint, then every entry it covers."""
    if (url is None) == (database is None):
        fail("give exactly one of --url, --database", EXIT_USAGE)
    try:
        with out.open("w", encoding="utf-8") as handle:
            if url is not None:
                with RegistryClient(url) as client:
                    remote = RemoteSource(client)
                    count = write_export(handle, remote.note, remote.entries())
            else:
                assert database is not None
                engine = make_engine(database)
                require_current(engine)
                with DatabaseSource(engine, with_projections=False) as db_source:
                    checkpoints = db_source.checkpoints()
                    if not checkpoints:
                        fail("the ledger has no checkpoint yet", EXIT_OPERATIONAL)
                    latest = checkpoints[-1]
                    count = write_export(handle, latest.note, _upto(db_source.entries(), latest.size))
    except OSError as exc:
        fail(f"cannot write {out}: {exc.strerror or exc}", EXIT_OPERATIONAL)
    except (StorageError, SourceUnavailable) as exc:
        out.unlink(missing_ok=True)
        fail(str(exc), EXIT_OPERATIONAL)
    err.print(printable(f"exported {plural(count, 'entry')} to {out}"), highlight=False, markup=False)


def _upto(entries: Iterator[StoredEntry], size: int) -> Iterator[StoredEntry]:
    for entry in entries:
        if entry.index >= size:
            return
        yield entry


@app.command("checkpoint")
def checkpoint(
    url: UrlOption,
    vkey: AuditVkeyOpt = None,
    save: Annotated[
        Path | None, typer.Option("--save", help="Save it here; an existing file must be a prefix of the new one.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch the registry's signed checkpoint, verify it, and save it (consistent with the saved one, if any)."""
    verifier = _verifier(need_vkey(vkey))
    try:
        with RegistryClient(url) as client:
            note = client.checkpoint()
            new = _open(note, verifier, what="the registry's checkpoint")
            previous = None
            if save is not None and save.exists():
                previous = _open(_read_saved(save), verifier, what=f"the saved checkpoint {save}")
                if previous.origin != new.origin:
                    fail(f"the registry's origin is {new.origin!r}, {save}'s {previous.origin!r}", EXIT_INTEGRITY)
                _consistent(client, previous, new)
    except SourceUnavailable as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    if save is not None:
        _write_note(save, note)
    result = {
        "origin": new.origin,
        "size": new.size,
        "root_hash": b64encode(new.root_hash),
        "previous_size": None if previous is None else previous.size,
        "saved": None if save is None else str(save),
    }
    if as_json:
        _echo_json(result)
    else:
        grown = "" if previous is None else f", consistent with the saved {previous.size:,}"
        echo(f"checkpoint verified: {new.origin} size {new.size:,} root {result['root_hash']}{grown}")


@proof_app.command("inclusion")
def proof_inclusion(
    url: UrlOption,
    index: Annotated[int, typer.Option("--index", min=0, help="The entry's index.")],
    vkey: AuditVkeyOpt = None,
    size: Annotated[
        int | None, typer.Option("--size", min=1, help="The tree size (default: the signed checkpoint's).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify that entry INDEX is in the log: its inclusion proof leads to the signed checkpoint's root.

    With a --size smaller than the checkpoint's, the proof's root at that size is tied to the signed
    root by a consistency proof.
    """
    verifier = _verifier(need_vkey(vkey))
    try:
        with RegistryClient(url) as client:
            signed = _open(client.checkpoint(), verifier, what="the registry's checkpoint")
            tree = signed.size if size is None else size
            if tree > signed.size or index >= tree:
                fail(f"need index < size <= {signed.size} (the signed checkpoint's size)", EXIT_USAGE)
            leaf, hashes = client.inclusion(index, tree)
            try:
                if tree == signed.size:
                    verify_inclusion(leaf=leaf, index=index, size=tree, proof=hashes, root=signed.root_hash)
                else:
                    root = root_from_inclusion_proof(leaf=leaf, index=index, size=tree, proof=hashes)
                    verify_consistency(
                        old_size=tree,
                        new_size=signed.size,
                        old_root=root,
                        new_root=signed.root_hash,
                        proof=client.consistency(tree, signed.size),
                    )
            except ProofError as exc:
                fail(f"the inclusion proof of entry {index} in {tree} does not verify: {exc}", EXIT_INTEGRITY)
    except SourceUnavailable as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    result = {"index": index, "size": tree, "leaf_hash": b64encode(leaf), "checkpoint_size": signed.size}
    if as_json:
        _echo_json(result | {"verified": True})
    else:
        typer.echo(
            f"verified: entry {index} is in the tree of {plural(tree, 'entry')} (signed checkpoint {signed.size:,})"
        )


@proof_app.command("consistency")
def proof_consistency(
    url: UrlOption,
    old: Annotated[int, typer.Option("--old", min=0, help="The older tree size.")],
    vkey: AuditVkeyOpt = None,
    new: Annotated[int | None, typer.Option("--new", help="The newer size: the signed checkpoint's (default).")] = None,
    old_root: Annotated[
        str | None,
        typer.Option("--old-root", help="The root you hold for --old (default: recomputed from its entries)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify that the tree of OLD entries is a prefix of the registry's signed checkpoint."""
    verifier = _verifier(need_vkey(vkey))
    try:
        with RegistryClient(url) as client:
            signed = _open(client.checkpoint(), verifier, what="the registry's checkpoint")
            if new is not None and new != signed.size:
                fail(f"--new must be the signed checkpoint's size, {signed.size} (or be left out)", EXIT_USAGE)
            if old > signed.size:
                fail(f"--old {old} is larger than the signed checkpoint's size {signed.size}", EXIT_USAGE)
            root = _old_root(client, old, old_root)
            hashes = _consistent(client, Checkpoint(signed.origin, old, root), signed)
    except SourceUnavailable as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    result = {"old": old, "new": signed.size, "old_root": b64encode(root), "hashes": hashes, "verified": True}
    if as_json:
        _echo_json(result)
    else:
        typer.echo(
            f"verified: the tree of {plural(old, 'entry')} is a prefix of the signed checkpoint of {signed.size:,}"
        )


def _old_root(client: RegistryClient, old: int, given: str | None) -> Hash:
    """The root of the tree of `old` entries: the one the auditor gives, or recomputed from the entries' bytes."""
    if given is not None:
        try:
            return Hash(b64decode(given, what="--old-root", size=32))
        except LedgerError as exc:
            fail(str(exc), EXIT_USAGE)
    return root_from_leaves([leaf_hash(entry.data) for entry in client.entries(0, old)])
