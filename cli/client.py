"""The registry client of the `cdcer` write and read commands: who signs, where it goes, what comes back.

Every write is signed here, on the user's machine, with the user's key file; the registry only ever sees
the signed transaction. Every receipt is checked before it is shown: the checkpoint's signature against the
registry's verifier key (``--vkey`` pins it; otherwise the one ``/v1/log/vkey`` serves) and the entry's
inclusion proof in that checkpoint. Problems become one line and an exit code (see `cli.console`):
a refused transaction or a bad option is the user's to fix (2), an unreachable registry is operational (3),
a receipt that does not verify is an integrity failure (1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import httpx
import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms
from pydantic import BaseModel, ValidationError

from cli.console import (
    EXIT_INTEGRITY,
    EXIT_OPERATIONAL,
    EXIT_USAGE,
    add_row,
    err,
    fail,
    json_option,
    json_text,
    printable,
    stdout,
    table,
)
from ledger.checkpoint import open_checkpoint
from ledger.encoding import b64decode
from ledger.errors import KeyFileError, LedgerError
from ledger.keys import PrivateKey, read_key_file
from ledger.merkle import verify_inclusion
from ledger.note import NoteVerifier
from ledger.transactions import PAYLOAD_TYPES, ProjectDetails, Selection, TransactionSigner
from registry.accounts.signatures import COVERED, LABEL, TAG, sign_request

DEFAULT_REGISTRY = "http://127.0.0.1:8000"
KEY_PASSPHRASE = "CDCER_KEY_PASSPHRASE"
TIMEOUT = 30.0

M = TypeVar("M", bound=BaseModel)

RegistryOpt = Annotated[str, typer.Option("--registry", envvar="CDCER_REGISTRY_URL", help="The registry's base URL.")]
OriginOpt = Annotated[
    str | None,
    typer.Option("--origin", envvar="CDCER_ORIGIN", help="The registry's log origin (default: its checkpoint's)."),
]
ActorOpt = Annotated[str | None, typer.Option("--as", envvar="CDCER_ACTOR", help="Your participant id (who signs).")]
KeyOpt = Annotated[
    Path | None,
    typer.Option("--key", envvar="CDCER_KEY_FILE", help="Your key file (its passphrase: CDCER_KEY_PASSPHRASE)."),
]
VKEY_VARIABLE = "CDCER_VKEY"
VkeyOpt = Annotated[
    str | None,
    typer.Option(
        "--vkey",
        envvar=VKEY_VARIABLE,
        help="The registry's verifier key, published out of band, to check receipts against "
        "(default: the one it serves, with a warning).",
    ),
]
AuditVkeyOpt = Annotated[
    str | None,
    typer.Option(
        "--vkey",
        envvar=VKEY_VARIABLE,
        help="The registry's verifier key, published out of band (`cdcer init` and `cdcer serve` print it).",
    ),
]
"""The verifier key of the auditor's and certificate commands: required, never taken from the registry."""
JsonOpt = Annotated[bool, json_option("Print the result as JSON.")]


# Payload fields whose command option is named differently (the rest: field_name -> --field-name).
_OPTION_NAMES = {
    "event_id": "--event",
    "event_kind": "--kind",
    "sources": "--source",
    "public_keys": "--public-key",
    "roles": "--role",
    "blocks": "--block",
    "documents": "--document-sha256",
    "methodology_code": "--methodology",
}
_MODELS: tuple[type[BaseModel], ...] = (*PAYLOAD_TYPES, ProjectDetails, Selection)
_FIELDS = frozenset(name for t in _MODELS for name in t.model_fields if name != "kind")


def need_vkey(vkey: str | None, *, what: str = "this command") -> str:
    """The verifier key the user gave (--vkey or CDCER_VKEY); without one, a usage error saying what to pass."""
    if vkey is None or not vkey.strip():
        fail(
            f"{what} needs the registry's verifier key: pass --vkey VKEY or set {VKEY_VARIABLE}, with the key "
            "the registry publishes out of band (`cdcer init` and `cdcer serve` print it)",
            EXIT_USAGE,
        )
    return vkey


def model(factory: type[M], *, options: Mapping[str, str] | None = None, **fields: Any) -> M:
    """Build a pydantic model from option values; a refused value is one line naming the option (exit 2).

    `options` names the option of a field where this command's differs from `_OPTION_NAMES` (e.g.
    ``{"account_id": "--account"}``)."""
    try:
        return factory(**fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        # The innermost field of the location (a dict key or list index below it names no option).
        field = next((p for p in reversed(error["loc"]) if isinstance(p, str) and p in _FIELDS), None)
        names = {**_OPTION_NAMES, **(options or {})}
        where = "" if field is None else names.get(field, "--" + field.replace("_", "-")) + ": "
        fail(f"{where}{error['msg']}", EXIT_USAGE)


@dataclass(frozen=True, slots=True)
class Problem:
    """A registry's RFC 9457 answer, as far as it could be read."""

    status: int
    type: str
    detail: str


class Client:
    """One registry, reached over HTTP; `actor` and `key_file` are needed only for signed requests."""

    def __init__(
        self,
        registry: str,
        *,
        actor: str | None = None,
        key_file: Path | None = None,
        origin: str | None = None,
        vkey: str | None = None,
    ) -> None:
        self.base = registry.rstrip("/")
        self.actor = actor
        self.key_file = key_file
        self.origin = origin
        self.vkey = vkey
        self.http = httpx.Client(base_url=self.base, timeout=TIMEOUT)
        self._warned = False

    def close(self) -> None:
        self.http.close()

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return self.http.send(request)
        except httpx.TransportError as exc:
            fail(f"cannot reach the registry at {self.base}: {exc or exc.__class__.__name__}", EXIT_OPERATIONAL)

    def _refused(self, response: httpx.Response, *, context: str = "") -> NoReturn:
        problem = problem_of(response)
        code = EXIT_USAGE if 400 <= problem.status < 500 else EXIT_OPERATIONAL
        kind = problem.type.rsplit("/", 1)[-1]
        what = "refused" if code == EXIT_USAGE else "the registry failed"
        details = {"problem": {"type": problem.type, "status": problem.status, "detail": problem.detail}}
        fail(f"{context}{what}: {problem.detail} ({problem.status} {kind})", code, details=details)

    def get(self, path: str, *, signed: bool = False) -> Any:
        """GET a JSON document (signed with RFC 9421 when `signed`); a problem ends the command."""
        return self._json("GET", path, signed=signed)

    def delete_signed(self, path: str) -> Any:
        """DELETE signed with RFC 9421 (like a private read: no body); its JSON answer, or the command ends."""
        return self._json("DELETE", path, signed=True)

    def _json(self, method: str, path: str, *, signed: bool) -> Any:
        request = self.http.build_request(method, path)
        if signed:
            sign_request(request, self.key())
        response = self._send(request)
        if response.status_code != 200:
            self._refused(response)
        try:
            return response.json()
        except ValueError:
            fail(f"{self.base}{path}: the registry answered something that is not JSON", EXIT_OPERATIONAL)

    def put_signed(self, path: str, document: Any) -> httpx.Response:
        """PUT a JSON document signed with RFC 9421 over the request and its RFC 9530 ``content-digest``.

        The response is returned as it came, whatever its status: the caller says what a refusal means."""
        body = json.dumps(document, separators=(",", ":")).encode()
        request = self.http.build_request(
            "PUT",
            path,
            content=body,
            headers={"content-type": "application/json"},
        )
        sign_body_request(request, self.key())
        return self._send(request)

    def refused(self, response: httpx.Response, *, context: str = "") -> NoReturn:
        """End the command with the registry's problem on one line (prefixed by `context`)."""
        self._refused(response, context=context)

    def get_text(self, path: str) -> str:
        response = self._send(self.http.build_request("GET", path))
        if response.status_code != 200:
            self._refused(response)
        return response.text

    # --- identity ------------------------------------------------------------------------------

    def need_actor(self) -> str:
        if not self.actor:
            fail("who are you? pass --as PARTICIPANT_ID or set CDCER_ACTOR", EXIT_USAGE)
        return self.actor

    def key(self) -> PrivateKey:
        """The user's private key, from the key file (passphrase from CDCER_KEY_PASSPHRASE or a prompt)."""
        if self.key_file is None:
            fail("no key file: pass --key FILE or set CDCER_KEY_FILE", EXIT_USAGE)
        path = self.key_file
        try:
            header = json.loads(path.read_bytes()[: 64 * 1024])
        except FileNotFoundError:
            fail(f"key file {path} not found", EXIT_USAGE)
        except OSError as exc:
            fail(f"cannot read key file {path}: {exc.strerror or exc}", EXIT_USAGE)
        except ValueError:
            fail(f"{path} is not a cdcer key file (not JSON)", EXIT_USAGE)
        encrypted = not (isinstance(header, dict) and header.get("encryption") == "none")
        passphrase = None
        if encrypted:
            passphrase = os.environ.get(KEY_PASSPHRASE)
            if not passphrase:
                if not os.isatty(0):
                    fail(f"key file {path} is encrypted: set {KEY_PASSPHRASE}", EXIT_USAGE)
                passphrase = str(typer.prompt(f"passphrase for {path}", hide_input=True))
        try:
            return read_key_file(path, passphrase=passphrase)
        except KeyFileError as exc:
            fail(str(exc), EXIT_USAGE)

    def registry_origin(self) -> str:
        if self.origin is None:
            self.origin = self.get_text("/v1/log/checkpoint").split("\n", 1)[0]
        return self.origin

    def verifier(self) -> NoteVerifier:
        """The registry's verifier: the pinned key (--vkey, CDCER_VKEY), else the one it serves, with a warning."""
        vkey = self.vkey
        if vkey is None:
            vkey = self.get_text("/v1/log/vkey").strip()
            if not self._warned:
                self._warned = True
                err.print(
                    f"warning: no --vkey or {VKEY_VARIABLE}: trusting the verifier key the registry itself serves "
                    f"(/v1/log/vkey), {printable(vkey)}; pin the key it publishes out of band with --vkey or "
                    f"{VKEY_VARIABLE}",
                    markup=False,
                    highlight=False,
                    emoji=False,
                )
        try:
            return NoteVerifier.from_vkey(vkey)
        except LedgerError as exc:
            fail(f"verifier key: {exc}", EXIT_USAGE)

    # --- writes --------------------------------------------------------------------------------

    def submit(self, payload: BaseModel) -> dict[str, Any]:
        """Sign `payload` now as the actor, POST it, verify the receipt and return it."""
        actor = self.need_actor()
        key = self.key()
        verifier = self.verifier()
        origin = self.registry_origin()
        try:
            tx = TransactionSigner(origin, actor, key).sign(payload, at=datetime.now(UTC))
        except LedgerError as exc:
            fail(str(exc), EXIT_USAGE)
        response = self._send(self.http.build_request("POST", "/v1/transactions", json=tx.to_json()))
        if response.status_code not in (200, 201):
            self._refused(response)
        receipt: dict[str, Any] = response.json()
        verify_receipt(receipt, verifier, origin)
        return receipt


BODY_COVERED = (*COVERED, "content-digest")
"""What a signed request with a body covers: the private reads' components and the body's digest."""


def sign_body_request(request: httpx.Request, key: PrivateKey, *, created: datetime | None = None) -> None:
    """Sign `request` in place like a private read (`registry.accounts.signatures`), adding its RFC 9530
    ``Content-Digest`` (SHA-256 of the body) and covering it too, so the signature binds the body."""
    signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_KeyOf(key))
    signer.sign(
        request,
        key_id=key.key_id,
        created=created or datetime.now(UTC),
        label=LABEL,
        tag=TAG,
        covered_component_ids=BODY_COVERED,
        body=request.content,
    )


class _KeyOf(HTTPSignatureKeyResolver):
    def __init__(self, key: PrivateKey) -> None:
        self._key = key

    def resolve_private_key(self, key_id: str) -> Ed25519PrivateKey:
        if key_id != self._key.key_id:
            raise KeyError(key_id)
        return Ed25519PrivateKey.from_private_bytes(self._key.seed)


def problem_of(response: httpx.Response) -> Problem:
    """The problem details of an error response (or what can be said of a response that has none)."""
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("detail"), str):
        return Problem(response.status_code, str(document.get("type", "about:blank")), document["detail"])
    return Problem(response.status_code, "about:blank", f"{response.reason_phrase or 'error'}")


def verify_receipt(receipt: dict[str, Any], verifier: NoteVerifier, origin: str) -> None:
    """Check the receipt's checkpoint signature and the entry's inclusion proof in it (exit 1 otherwise)."""
    try:
        checkpoint = open_checkpoint(str(receipt["checkpoint"]).encode(), verifier, origin=origin).checkpoint
        if checkpoint.size != receipt["tree_size"]:
            raise LedgerError(f"receipt says tree size {receipt['tree_size']}, its checkpoint {checkpoint.size}")
        verify_inclusion(
            leaf=b64decode(receipt["leaf_hash"], what="leaf hash", size=32),
            index=receipt["index"],
            size=checkpoint.size,
            proof=[b64decode(h, what="proof hash", size=32) for h in receipt["inclusion_proof"]],
            root=checkpoint.root_hash,
        )
    except (LedgerError, KeyError, TypeError) as exc:
        fail(f"the registry's receipt does not verify: {exc}", EXIT_INTEGRITY)


# --- output ------------------------------------------------------------------------------------


# Everything shown comes from the registry: every cell goes through `cli.console.add_row` (inert text).


def show_json(value: Any) -> None:
    typer.echo(json_text(value))


def show_receipt(receipt: dict[str, Any], *, as_json: bool) -> None:
    """The receipt: JSON, or a table of its entry, tree size and outcome."""
    if as_json:
        show_json(receipt)
        return
    shown = table(show_header=False)
    add_row(shown, "entry", receipt["index"])
    add_row(shown, "tree size", receipt["tree_size"])
    if receipt.get("duplicate"):
        add_row(shown, "note", "already in the log: nothing appended")
    for name, value in (receipt.get("outcome") or {}).items():
        add_row(shown, name, value if isinstance(value, str) else json.dumps(value))
    stdout().print(shown)


def show_record(record: dict[str, Any], *, title: str) -> None:
    """A flat table of a record's scalar fields."""
    shown = table(title=title, show_header=False)
    for name, value in record.items():
        if not isinstance(value, list | dict):
            add_row(shown, name, value)
    stdout().print(shown)


def show_rows(rows: list[dict[str, Any]], columns: list[str], *, title: str) -> None:
    """A table of `columns` of each row (a missing or null field is an empty cell)."""
    shown = table(title=title, columns=columns)
    for row in rows:
        add_row(shown, *(row.get(column) for column in columns))
    stdout().print(shown)
