"""`cdcer witness`: an independent witness that cosigns a registry's checkpoints (C2SP tlog-cosignature).

`cosign` keeps, per registry origin, the last signed checkpoint it saw in its state directory. Each run:

1. fetch the registry's checkpoint and verify the registry's signature with the verifier key given
   out of band (`--vkey`);
2. with no saved checkpoint, trust it on first use; otherwise refuse a smaller tree (a rollback) or
   the same size with another root (a fork), and check the registry's consistency proof from the
   saved size (a failing proof is a fork too);
3. save it as the last checkpoint seen, cosign it and submit the cosignature to the registry.

A refusal writes both signed checkpoints to ``evidence-<UTC time>/{old,new}.checkpoint`` in the state
directory, says so in one line on stderr and exits 1; the saved checkpoint stays the old one. A registry
that signs a bigger tree but does not prove it extends the saved one (the consistency proof request fails,
or answers something that is not a proof) is refused the same way, as *unproven*, and its answer is kept
beside the checkpoints, in ``consistency-proof.http``: exit 3 if it answered an error status or not at
all (perhaps passing), exit 1 if it answered 200 with something that is not a proof.

`--witness` and `--min-witnesses` are shared with `cdcer audit verify` and `cdcer certificate verify`:
there they require cosignatures by the given witnesses on the checkpoint that was verified.
"""

from __future__ import annotations

import base64
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import httpx
import typer

from cli.console import EXIT_INTEGRITY, EXIT_OPERATIONAL, EXIT_USAGE, echo, fail, json_option, plural
from ledger.checkpoint import (
    CosignatureSigner,
    CosignatureVerifier,
    SignedCheckpoint,
    WitnessCheck,
    check_witnesses,
    open_checkpoint,
)
from ledger.errors import KeyFileError, NoteError, ProofError
from ledger.keys import read_key_file
from ledger.merkle import verify_consistency
from ledger.note import NoteVerifier

app = typer.Typer(help="Witness a registry: check its log only grows, and cosign its checkpoints.")

WITNESS_KEY_PASSPHRASE = "CDCER_WITNESS_KEY_PASSPHRASE"
TIMEOUT = 30.0
EVIDENCE_ANSWER = "consistency-proof.http"
MAX_EVIDENCE_BODY = 1 << 20
"""Bytes of the registry's answer kept as evidence (a registry could answer a huge body)."""

WitnessOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        help="A witness's verifier key (cosignature/v1), obtained out of band; repeat for several. "
        "The checkpoint verified must carry their cosignatures.",
    ),
]
MinWitnessesOpt = Annotated[
    int | None,
    typer.Option("--min-witnesses", min=0, help="How many of the --witness keys must have cosigned (default: all)."),
]


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """The witnesses whose cosignatures a checkpoint must carry, and how many of them at least."""

    witnesses: tuple[CosignatureVerifier, ...]
    required: int


def witness_policy(keys: list[str] | None, minimum: int | None) -> WitnessPolicy | None:
    """The policy of `--witness` and `--min-witnesses` (None without `--witness`); exit 2 if it is malformed."""
    witnesses: list[CosignatureVerifier] = []
    for key in keys or []:
        try:
            witnesses.append(CosignatureVerifier.from_vkey(key.strip()))
        except NoteError as exc:
            fail(f"--witness: {exc}", EXIT_USAGE)
    distinct = len({(w.name, bytes(w.key_id)) for w in witnesses})
    required = distinct if minimum is None else minimum
    if required > distinct:
        fail(f"--min-witnesses {required}: only {plural(distinct, 'distinct --witness key')} given", EXIT_USAGE)
    return WitnessPolicy(tuple(witnesses), required) if witnesses else None


def witness_report(check: WitnessCheck) -> dict[str, Any]:
    """The `--json` form of a witness check."""
    return {
        "required": check.required,
        "satisfied": check.satisfied,
        "cosigned": [{"witness": f"{c.name}+{c.key_id.hex()}", "timestamp": c.timestamp} for c in check.cosigned],
        "missing": list(check.missing),
        "invalid": list(check.invalid),
    }


def require_witnesses(signed: SignedCheckpoint, policy: WitnessPolicy, *, what: str) -> dict[str, Any]:
    """The witness check of `signed`, as JSON; exit 1 (with a JSON verdict under --json) if it falls short."""
    check = check_witnesses(signed, policy.witnesses, required=policy.required)
    report = witness_report(check)
    shortfall = check.shortfall()
    if shortfall is not None:
        size = signed.checkpoint.size
        reason = f"{what} (size {size:,}) lacks witness cosignatures: {shortfall}"
        fail(reason, EXIT_INTEGRITY, report={"verified": False, "reason": reason, "witnesses": report})
    return report


class RegistryUnavailable(Exception):
    """The registry did not answer as expected (unreachable, or an error status)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the witness refuses the registry's new checkpoint."""

    verdict: str  # rollback | fork | unproven
    reason: str
    answer: bytes | None = None
    """Unproven: the registry's answer to the consistency proof request, kept as evidence."""
    code: int = EXIT_INTEGRITY


def _signer(key: Path, name: str) -> CosignatureSigner:
    try:
        seed = read_key_file(key, passphrase=os.environ.get(WITNESS_KEY_PASSPHRASE) or None).seed
        return CosignatureSigner(name, seed)
    except KeyFileError as exc:
        fail(str(exc), EXIT_USAGE)
    except NoteError as exc:
        fail(f"--name: {exc}", EXIT_USAGE)


@app.command("vkey")
def vkey(
    key: Annotated[Path, typer.Option("--key", help="The witness's key file.")],
    name: Annotated[str, typer.Option("--name", help="The witness's name, e.g. witness.example.org/w1.")],
) -> None:
    """Print the witness's verifier key, for the authority to register (witness.register)."""
    typer.echo(_signer(key, name).verifier_key())


@app.command("cosign")
def cosign(
    url: Annotated[str, typer.Option("--url", help="The registry's base URL.")],
    registry_vkey: Annotated[str, typer.Option("--vkey", help="The registry's verifier key, obtained out of band.")],
    key: Annotated[Path, typer.Option("--key", help="The witness's key file.")],
    name: Annotated[str, typer.Option("--name", help="The witness's name, as registered.")],
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where the last checkpoint seen is kept.")],
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Verify the registry's new checkpoint against the last one seen, cosign it and submit the cosignature.

    Exit 0 cosigned, 1 rollback, fork or a malformed consistency proof (evidence written), 2 usage error,
    3 registry unreachable or refusing (evidence written if it was the consistency proof it did not give).
    """
    try:
        verifier = NoteVerifier.from_vkey(registry_vkey)
    except NoteError as exc:
        fail(f"--vkey: {exc}", EXIT_USAGE)
    signer = _signer(key, name)
    state_file = state_dir / f"{quote(verifier.name, safe='')}.checkpoint"
    base = url.rstrip("/")
    try:
        with httpx.Client(base_url=base, timeout=TIMEOUT) as http:
            # (1) the registry's checkpoint, its signature checked
            served = _get(http, "/v1/log/checkpoint").content
            try:
                new = open_checkpoint(served, verifier, origin=verifier.name)
            except NoteError as exc:
                fail(f"{base} served a checkpoint that does not verify with --vkey: {exc}", EXIT_INTEGRITY)
            # (2) consistency with the last checkpoint seen
            old = _saved(state_file, verifier)
            refusal = None if old is None else _check_growth(http, old, new)
            if refusal is not None:
                evidence = _write_evidence(state_dir, old, new, refusal.answer)
                fail(
                    f"{refusal.verdict}: {refusal.reason}; evidence in {evidence}",
                    refusal.code,
                    report={"verdict": refusal.verdict, "evidence": str(evidence)},
                )
            # (3) remember it, cosign it, submit the cosignature
            _save(state_file, new)
            submitted = _submit(http, signer, new)
    except RegistryUnavailable as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except OSError as exc:
        fail(f"state directory {state_dir}: {exc.strerror or exc}", EXIT_OPERATIONAL)
    result = {
        "origin": new.checkpoint.origin,
        "size": new.checkpoint.size,
        "root_hash": base64.b64encode(new.checkpoint.root_hash).decode(),
        "previous_size": None if old is None else old.checkpoint.size,
        "witness": signer.name,
        "cosigned": submitted,
    }
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    seen = "trusted on first use" if old is None else f"consistent with size {old.checkpoint.size}"
    done = "cosigned" if submitted == "accepted" else "already cosigned by this witness"
    echo(f"{new.checkpoint.origin} at size {new.checkpoint.size}: {seen}; {done}")


def _get(http: httpx.Client, path: str, **params: int) -> httpx.Response:
    try:
        response = http.get(path, params=params)
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(f"cannot reach {http.base_url}: {exc}") from None
    if response.status_code != 200:
        raise RegistryUnavailable(f"GET {path}: {_problem(response)}")
    return response


def _problem(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return f"HTTP {response.status_code}" + (f": {detail}" if isinstance(detail, str) else "")


def _saved(state_file: Path, verifier: NoteVerifier) -> SignedCheckpoint | None:
    """The last checkpoint seen, re-verified (the state directory is only as safe as the disk it is on)."""
    try:
        data = state_file.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return open_checkpoint(data, verifier, origin=verifier.name)
    except NoteError as exc:
        fail(f"saved checkpoint {state_file} does not verify ({exc}); move it aside to start over", EXIT_OPERATIONAL)


def _check_growth(http: httpx.Client, old: SignedCheckpoint, new: SignedCheckpoint) -> Refusal | None:
    """None if `new` extends `old`, else why not."""
    old_size, new_size = old.checkpoint.size, new.checkpoint.size
    if new_size < old_size:
        return Refusal("rollback", f"the registry now shows {plural(new_size, 'entry')} after {old_size:,} were seen")
    if new_size == old_size:
        if new.checkpoint.root_hash != old.checkpoint.root_hash:
            return Refusal("fork", f"two different trees of size {new_size} were signed")
        return None
    if old_size == 0:
        return None  # every tree extends the empty tree
    unproven = f"the registry signed a tree of size {new_size} but did not prove it extends the tree of size {old_size}"
    request = http.build_request("GET", "/v1/log/proof/consistency", params={"old": old_size, "new": new_size})
    try:
        response = http.send(request)
    except httpx.HTTPError as exc:
        answer = f"{request.method} {request.url}\nno answer: {exc or exc.__class__.__name__}\n".encode()
        return Refusal("unproven", f"{unproven} (no answer: {exc})", answer, EXIT_OPERATIONAL)
    if response.status_code != 200:
        return Refusal("unproven", f"{unproven} ({_problem(response)})", _transcript(response), EXIT_OPERATIONAL)
    try:
        hashes = [base64.b64decode(h, validate=True) for h in response.json()["hashes"]]
    except (KeyError, TypeError, ValueError) as exc:
        reason = f"{unproven} (its answer is not a consistency proof: {exc.__class__.__name__}: {exc})"
        return Refusal("unproven", reason, _transcript(response))
    try:
        verify_consistency(
            old_size=old_size,
            new_size=new_size,
            old_root=old.checkpoint.root_hash,
            new_root=new.checkpoint.root_hash,
            proof=hashes,
        )
    except ProofError as exc:
        return Refusal("fork", f"the tree of size {new_size} does not extend the tree of size {old_size} ({exc})")
    return None


def _transcript(response: httpx.Response) -> bytes:
    """The request line, the status, the headers and the body (up to `MAX_EVIDENCE_BODY` bytes) of an answer."""
    request = response.request
    head = [f"{request.method} {request.url}", f"HTTP {response.status_code} {response.reason_phrase}"]
    head += [f"{name}: {value}" for name, value in response.headers.items()]
    body = response.content
    if len(body) > MAX_EVIDENCE_BODY:
        head.append(f"(body: the first {MAX_EVIDENCE_BODY} of {len(body)} bytes)")
        body = body[:MAX_EVIDENCE_BODY]
    return "\n".join(head).encode("utf-8", errors="replace") + b"\n\n" + body


def _write_evidence(state_dir: Path, old: SignedCheckpoint | None, new: SignedCheckpoint, answer: bytes | None) -> Path:
    assert old is not None
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = state_dir / f"evidence-{stamp}"
    number = 1
    while True:
        try:
            folder.mkdir(parents=True)
            break
        except FileExistsError:
            number += 1
            folder = state_dir / f"evidence-{stamp}-{number}"
    (folder / "old.checkpoint").write_bytes(old.to_bytes())
    (folder / "new.checkpoint").write_bytes(new.to_bytes())
    if answer is not None:
        (folder / EVIDENCE_ANSWER).write_bytes(answer)
    return folder


def _save(state_file: Path, checkpoint: SignedCheckpoint) -> None:
    state_file.parent.mkdir(parents=True, exist_ok=True)
    partial = state_file.with_name(state_file.name + ".partial")
    partial.write_bytes(checkpoint.to_bytes())
    os.replace(partial, state_file)


def _submit(http: httpx.Client, signer: CosignatureSigner, signed: SignedCheckpoint) -> str:
    """Cosign and submit; ``accepted``, or ``already`` when this witness had cosigned that size."""
    line = signer.cosign(signed.note.text, int(time.time())).line()
    body: dict[str, Any] = {"size": signed.checkpoint.size, "cosignature": line}
    try:
        response = http.post("/v1/log/cosignatures", json=body)
    except httpx.HTTPError as exc:
        raise RegistryUnavailable(f"cannot reach {http.base_url}: {exc}") from None
    if response.status_code == 201:
        return "accepted"
    if response.status_code == 409:
        return "already"
    raise RegistryUnavailable(f"the registry refused the cosignature: {_problem(response)}")
