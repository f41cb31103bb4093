"""`cdcer init` and `cdcer serve`: create a registry, and run its HTTP API.

`cdcer serve` runs uvicorn with limits against abusive clients: each connection must deliver each whole
request (head and body) within ``--request-timeout`` seconds or is answered 408 and closed
(`GuardedHttpProtocol`: uvicorn itself waits forever for a request that never completes, so silent or
trickling sockets would pile up until they exhaust the connection limit or the file descriptors); an idle
keep-alive connection is closed after ``--keep-alive-timeout`` seconds; a request head is at most 16 KiB
(431 beyond); past ``--limit-concurrency`` connections or requests in flight, new requests are answered 503
at once (connections still sending their request count too, until their deadline). Request bodies are
limited by the app (``CDCER_MAX_BODY_BYTES``). HTTP is parsed by httptools (C) on uvloop.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import os
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from sqlalchemy.engine import make_url
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cli.console import EXIT_OPERATIONAL, EXIT_USAGE, err, fail, json_option, printable
from ledger.errors import KeyFileError, LedgerError, StorageError
from ledger.keys import PrivateKey, write_key_file
from ledger.ledger import Ledger, found_registry
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.schema import require_current, upgrade
from registry.errors import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE
from registry.settings import Settings, ledger_from_settings, public_base_url

DEFAULT_DATABASE = "sqlite:///data/registry.db"
LOG_KEY_PASSPHRASE = "CDCER_LOG_KEY_PASSPHRASE"
MAX_REQUEST_HEAD_BYTES = 16 * 1024
"""The request line and headers together (431 beyond it); RFC 9421 signatures need ~1 KiB."""
_DEFAULTS = Settings.model_fields


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
    founded_days_ago: Annotated[
        int,
        typer.Option(
            min=0,
            max=365,
            help="Date entry 0 this many days back (development registries only, with --plain-keys): points "
            "rules never apply retroactively, so only a log that began days ago lets `cdcer demo` attest past "
            "days. A real registry is founded now.",
        ),
    ] = 0,
    as_json: Annotated[bool, json_option()] = False,
) -> None:
    """Create a registry: its log signing key, the first authority and its key, entry 0."""
    if re.search(r"\s|\+", origin) or not origin:
        fail(f"--origin {origin!r}: a non-empty name without spaces or '+'", EXIT_USAGE)
    if founded_days_ago and not plain_keys:
        fail("--founded-days-ago is for development registries: use it with --plain-keys", EXIT_USAGE)
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
            now=datetime.now(UTC) - timedelta(days=founded_days_ago),
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


@functools.cache
def _request_timeout() -> float:
    """This server process's request deadline (`cdcer serve` hands it to its workers in the environment)."""
    return Settings().request_timeout


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop parsing a request head over the limit."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol (httptools, llhttp's C parser), with two guards uvicorn lacks there.

    A deadline for receiving each request, head and body: the clock starts when the connection starts
    waiting for a request (when it opens, and after each response) and stops once the whole request has
    arrived. When it runs out, a request begun is answered 408 (a problem document) and the connection
    closed; a connection that sent nothing is just closed. A request body cut off this way reads as a
    disconnected client in the app.

    A limit on the request head (request line and headers): past `MAX_REQUEST_HEAD_BYTES` before the
    head ends, the answer is 431 and the connection is closed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None
        self._receiving = False  # between the first byte of a request and its end
        self._in_head = True  # no request head has ended since the last request (or ever)
        self._head_bytes = 0  # of the current head, as parsed: its request line and headers
        self._unparsed_head = 0  # bytes received since the last head ended, before this one ends
        self._head_too_large = False
        self._heads_ended = 0
        self._cycle_received = False  # the request of `self.cycle` has arrived whole
        self._last_words: bytes | None = None  # a refusal to send once the response in flight is complete

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch()

    def data_received(self, data: bytes) -> None:
        if self._last_words is not None:
            return  # the stream is broken and its answer is waiting for the response in flight
        in_head, heads = self._in_head, self._heads_ended
        super().data_received(data)
        if self.transport.is_closing():
            return
        if in_head and self._heads_ended == heads:
            # No head ended in this data and none had ended before it: it was all head, still arriving (the
            # parser holds a header until it ends, so `on_header` alone would not see a head that never
            # does). Data that ends a body and starts a head is not counted: it is caught one read later.
            self._unparsed_head += len(data)
            if self._unparsed_head > MAX_REQUEST_HEAD_BYTES:
                self._head_too_large = True
                self.send_400_response("")
                return
        self._watch()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._receiving = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        super().on_header(name, value)
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
            self._head_too_large = True
            raise _HeadTooLarge  # stops the parser; uvicorn then calls `send_400_response`

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._cycle_received = False
        self._heads_ended += 1
        self._unparsed_head = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving = False
        self._in_head = True
        self._cycle_received = True

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._last_words is not None:
            # `self.cycle` is the last request parsed: once it is answered, so is every one before it.
            if self.cycle.response_complete and not self.pipeline and not self.transport.is_closing():
                self.transport.write(self._last_words)
                self.transport.close()
            return
        self._watch()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to bytes that are not HTTP/1.1 (and ours to a head too long), as a problem
        # document, after the answers in flight.
        if self._head_too_large:
            detail = f"the request line and headers are over the limit of {MAX_REQUEST_HEAD_BYTES} bytes"
            self._refuse(431, "Request Header Fields Too Large", "request-head-too-large", detail)
            return
        detail = f"what followed on this connection is not an HTTP/1.1 request ({msg.rstrip('.')})"
        self._refuse(400, "Bad Request", "malformed-http", detail)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _waiting(self) -> bool:
        """Whether the client owes us (part of) a request: one is arriving, or none is being answered."""
        if self.transport.is_closing():
            return False
        return self._receiving or self.cycle is None or self.cycle.response_complete

    def _watch(self) -> None:
        if not self._waiting():
            self._disarm()
        elif self._deadline is None:
            self._deadline = self.loop.call_later(_request_timeout(), self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if not self._waiting():
            return
        begun = self._receiving or self._unparsed_head > 0
        answered = self._receiving and self.cycle is not None and self.cycle.response_started
        if begun and not answered:
            detail = f"the request did not arrive whole within the request timeout of {_request_timeout():g} s"
            self._refuse(408, "Request Timeout", "request-timeout", detail)
            return
        self.transport.close()

    def _refuse(self, status: int, title: str, code: str, detail: str) -> None:
        """Answer a problem document and close the connection (the app never saw this request).

        If the app is still answering the connection's previous request (whole), that answer goes first.
        """
        problem = {"type": PROBLEM_TYPE_BASE + code, "title": title, "status": status, "detail": detail}
        body = json.dumps(problem).encode()
        head = (
            f"HTTP/1.1 {status} {title}\r\n"
            f"content-type: {PROBLEM_MEDIA_TYPE}\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        answer = head.encode() + body
        if self.cycle is not None and self._cycle_received and not self.cycle.response_complete:
            self._last_words = answer
            self._disarm()
            return
        self.transport.write(answer)
        self.transport.close()


_WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


def _public_url(given: str | None, host: str, port: int) -> str:
    """The registry's public base URL: `given`, else the served address; ends the command if neither is one.

    A wildcard host (every interface) names no address anyone can open, so it needs ``--public-url``.
    """
    if given is None:
        if host in _WILDCARD_HOSTS:
            fail(
                f"--host {host!r} serves every interface: say where the public reaches the registry with "
                "--public-url (or CDCER_PUBLIC_BASE_URL), e.g. --public-url https://registry.example.cn",
                EXIT_USAGE,
            )
        given = f"http://[{host}]:{port}" if ":" in host and not host.startswith("[") else f"http://{host}:{port}"
    try:
        return public_base_url(given)
    except ValueError as exc:
        fail(f"--public-url: {exc}", EXIT_USAGE)


def _check_port(host: str, port: int) -> None:
    """End the command (exit 3, one line) if `host`:`port` cannot be listened on, e.g. it is already taken.

    The socket is bound the way uvicorn binds it (its family by the host, SO_REUSEADDR) and closed at once,
    so a port another process listens on is one line here rather than a traceback once the server starts.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                taken = f"port {port} on {host} is already taken ({exc.strerror}; another registry, `make run`?)"
                fail(f"{taken}: stop it, or pass --port", EXIT_OPERATIONAL)
            fail(f"cannot serve on {host}:{port}: {exc.strerror or exc}", EXIT_OPERATIONAL)


def serve(
    database: Annotated[str, typer.Option("--database", "-d", envvar="CDCER_DATABASE_URL")] = DEFAULT_DATABASE,
    log_key_file: Annotated[
        Path | None, typer.Option(envvar="CDCER_LOG_KEY_FILE", help="The log signing key (for writes).")
    ] = None,
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0.1,
            envvar="CDCER_REQUEST_TIMEOUT",
            help="Seconds a connection has to send each whole request (head and body); then 408 and closed.",
        ),
    ] = _DEFAULTS["request_timeout"].default,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(min=1, envvar="CDCER_KEEP_ALIVE_TIMEOUT", help="Seconds an idle keep-alive connection stays."),
    ] = _DEFAULTS["keep_alive_timeout"].default,
    limit_concurrency: Annotated[
        int,
        typer.Option(
            min=1,
            envvar="CDCER_LIMIT_CONCURRENCY",
            help="Connections or requests in flight per server process beyond which new requests get 503.",
        ),
    ] = _DEFAULTS["limit_concurrency"].default,
    append_process: Annotated[
        bool,
        typer.Option(
            "--append-process/--append-thread",
            envvar="CDCER_APPEND_PROCESS",
            help="Append in a child process of each server process (on another core), or in a thread of it.",
        ),
    ] = True,
    public_url: Annotated[
        str | None,
        typer.Option(
            envvar="CDCER_PUBLIC_BASE_URL",
            help="Where the public reaches the registry (e.g. https://registry.example.cn): the start of every "
            "absolute URL it emits (QR codes, PDFs). Default: the served address, on a loopback host only.",
        ),
    ] = None,
) -> None:
    """Run the registry: its HTTP API and its public pages; prints its verifier key at each start."""
    import uvicorn

    public_url = _public_url(public_url, host, port)
    if log_key_file is None and Path("data/registry-log.key").exists():
        log_key_file = Path("data/registry-log.key")
    os.environ["CDCER_DATABASE_URL"] = database
    if log_key_file is not None:
        os.environ["CDCER_LOG_KEY_FILE"] = str(log_key_file)
    # Check what the server processes will load, so a mistake is one line here, not a worker traceback.
    try:
        engine = make_engine(database)
        require_current(engine)
        writable = ledger_from_settings(Settings(), engine) is not None
        with read_transaction(engine) as conn:
            vkey = store.get_meta(conn, "vkey")
        engine.dispose()
    except StorageError as exc:
        fail(str(exc), EXIT_OPERATIONAL)
    except LedgerError as exc:
        fail(str(exc), EXIT_USAGE)
    _check_port(host, port)
    if not writable:
        err.print("note: no log signing key (--log-key-file): the registry is read-only")
    if vkey is not None:
        # Each start says it again: what auditors and writers pin (--vkey, CDCER_VKEY), published out of band.
        err.print(printable(f"verifier key (publish it; pin it with --vkey or CDCER_VKEY): {vkey}"), markup=False)
    err.print(f"serving {database} on http://{host}:{port} (public pages: {public_url}/, API docs: /docs)")
    os.environ["CDCER_REQUEST_TIMEOUT"] = str(request_timeout)  # read by GuardedHttpProtocol in every worker
    os.environ["CDCER_PUBLIC_BASE_URL"] = public_url
    os.environ["CDCER_APPEND_PROCESS"] = "1" if append_process else "0"
    try:
        # registry.access_log writes one JSON line per request; uvicorn's own access log would repeat it.
        uvicorn.run(
            "registry.main:app",
            host=host,
            port=port,
            workers=workers,
            log_level="info",
            access_log=False,
            http=GuardedHttpProtocol,
            loop="uvloop",
            timeout_keep_alive=keep_alive_timeout,
            limit_concurrency=limit_concurrency,
        )
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}", EXIT_OPERATIONAL)
