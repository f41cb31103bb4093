"""Abuse resistance of the real server (`cdcer serve` over loopback): it stays up, answers others, refuses cheaply.

One server per engine (SQLite and PostgreSQL) runs for the module, on a founded registry, with a request
deadline of `REQUEST_TIMEOUT` seconds and the default 64 KiB body limit. Against it:

- oversized bodies (just over the limit, 10 MB, a lying ``Content-Length``, a chunked body that keeps
  growing) are answered 413 without the server reading them to the end;
- a request head over 16 KiB (sent at once or trickled) is answered 431 and the connection closed, one just
  under it is answered, and the limit is per request (a keep-alive connection may carry many heads);
  pipelined requests are answered in order, and bytes that are not HTTP after a whole request are answered
  400 ``malformed-http`` after that request's answer, then the connection is closed;
- bodies that are deeply nested, hold huge numbers or strings, or many keys are 4xx problems;
- slow clients (silent sockets, headers or a body trickled a byte at a time) do not hold up a normal
  client, and the server cuts each of them off at its deadline (408, or closed if it sent nothing);
- a flood of well-formed transactions with bad signatures, from several threads, is refused 403
  ``bad_signature`` one by one while valid transactions interleaved with it are appended, and the flood
  never reaches the sequencer (the log's write lock): ``cdcer_sequencer_transactions_total`` grows by the
  valid ones only, ``cdcer_signature_verifications_total`` by one per transaction;
- a transaction that fails a cheap check (unknown or revoked key, wrong origin, stale, reused nonce,
  unknown actor, wrong role, ...) is refused for that reason without its signature being checked.

Every test ends by checking that the server answers ``/healthz`` and that it never answered 5xx. The
``slow`` variants (``make test-long``) flood with more transactions and hold more slow clients.
"""

from __future__ import annotations

import base64
import json
import os
import select
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from sqlalchemy import Engine
from sqlalchemy import select as sql_select

from ledger.keys import PrivateKey, write_key_file
from ledger.ledger import Ledger, found_registry
from ledger.storage import schema, store
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.tables import log_entries
from ledger.transactions import (
    KeyRotate,
    MethodologyPublish,
    Role,
    SignedTransaction,
    TransactionSigner,
    signing_message,
)
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, Story, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key
from tests.registry.live import serve

BODY_LIMIT = 65536
REQUEST_TIMEOUT = 3.0
"""The server's request deadline here (production: 30 s), short so the tests see slow clients cut off."""
ANSWER_TIMEOUT = 10.0
"""How long a client waits for an answer: generous; an answer proves the server was not held up."""
PROBLEM = "application/problem+json"
PROBLEM_BASE = "/problems/"
SERVER_ENV: dict[str, str | None] = {
    "CDCER_LOG_KEY_PASSPHRASE": None,  # the log key file is in the clear
    "CDCER_ORIGIN": None,  # the origin comes from the database
    "CDCER_MAX_BODY_BYTES": str(BODY_LIMIT),
    "CDCER_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT),
}
STRANGER = seeded_key("mallory")
FLOOD_SIZE = 1000
"""Bad signatures in each of the two floods of the default suite (a flood alone, then one with valid ones)."""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- the server ------------------------------------------------------------------------------------------


@dataclass
class Server:
    """The running server, the registry's database, and clients that sign for its participants."""

    base_url: str
    engine: Engine
    http: httpx.Client
    kind: str
    """The database: ``sqlite`` or ``postgres``."""

    def flood_size(self) -> int:
        """Bad signatures per flood of the default suite: 2,000 in all on SQLite, half that on PostgreSQL."""
        return FLOOD_SIZE // 2 if self.kind == "postgres" else FLOOD_SIZE

    @property
    def address(self) -> tuple[str, int]:
        parts = urlsplit(self.base_url)
        assert parts.hostname is not None
        assert parts.port is not None
        return parts.hostname, parts.port

    def sign(
        self,
        who: str = AUTHORITY,
        payload: BaseModel | None = None,
        *,
        key: PrivateKey | None = None,
        origin: str = ORIGIN,
        at: datetime | None = None,
        nonce: str | None = None,
    ) -> SignedTransaction:
        """A fresh transaction signed as `who` (by default: the authority publishing a new methodology)."""
        signer = TransactionSigner(origin, who, key or seeded_key(who))
        return signer.sign(payload or new_methodology(), at=at or datetime.now(UTC), nonce=nonce)

    def metrics(self) -> Samples:
        response = self.http.get("/metrics")
        assert response.status_code == 200, response.text
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }

    def checkpoint(self) -> bytes:
        response = self.http.get("/v1/log/checkpoint")
        assert response.status_code == 200, response.text
        return response.content

    def log_size(self) -> int:
        with read_transaction(self.engine) as conn:
            return store.log_size(conn)

    def nonces_from(self, start: int) -> set[str]:
        """The nonces of the entries from `start` on."""
        with read_transaction(self.engine) as conn:
            rows = conn.execute(sql_select(log_entries.c.nonce).where(log_entries.c.idx >= start))
            return {str(nonce) for (nonce,) in rows}

    def assert_healthy(self) -> None:
        """The server answers, and has never answered a request with a server error."""
        assert self.http.get("/healthz").status_code == 200
        errors = {
            labels: v
            for (name, labels), v in self.metrics().items()
            if name == "cdcer_http_requests_total" and dict(labels)["status"].startswith("5") and v
        }
        assert not errors, errors


def new_methodology() -> MethodologyPublish:
    return MethodologyPublish(
        code=f"ABUSE-{uuid.uuid4().hex[:12].upper()}",
        version="1.0",
        title="A methodology published between abusive requests",
        sector="energy",
        document_sha256=SHA,
    )


def build_registry(engine: Engine) -> None:
    """A founded registry with the scenario's participants, and ``veteran`` whose first key was revoked."""
    schema.upgrade(engine)
    ledger = Ledger(engine, log_signer())
    found_registry(ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY))
    story = Story(ledger)
    story.world.register("veteran", [Role.ACCOUNT_HOLDER])
    story.world.submit(
        "authority",
        KeyRotate(
            participant_id="veteran",
            old_key_id=seeded_key("veteran").key_id,
            new_public_key=seeded_key("veteran-2").public_key.b64(),
            reason="scheduled rotation",
        ),
    )
    story.sync(together=True)


@pytest.fixture(scope="module")
def server(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`cdcer serve` (one process) on a private registry of each engine, for the whole module."""
    directory = tmp_path_factory.mktemp("abuse")
    key_file = directory / "registry-log.key"
    write_key_file(key_file, seeded_key("log"), passphrase=None)
    url = databases.from_template("abuse", build_registry, directory=directory)
    engine = make_engine(url)
    try:
        with (
            serve(url, key_file, env=SERVER_ENV) as base_url,
            httpx.Client(base_url=base_url, timeout=ANSWER_TIMEOUT) as http,
        ):
            yield Server(base_url, engine, http, databases.kind)
    finally:
        engine.dispose()
        databases.drop(url)


def report(line: str) -> None:
    """A figure for whoever runs the tests (``pytest -s``)."""
    print(f"\n[abuse] {line}", end="")  # noqa: T201


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


# --- raw HTTP over a socket -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert self.headers.get("content-type") == PROBLEM, (self.status, self.headers, self.body[:200])
        problem: dict[str, Any] = json.loads(self.body)
        assert problem["status"] == self.status
        return problem


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(server.address, timeout=ANSWER_TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def parse_response(data: bytes, *, closed: bool) -> tuple[RawResponse, bytes] | None:
    """The first response in `data` and what follows it; None if it is not all there (yet)."""
    if b"\r\n\r\n" not in data:
        assert not (closed and data), f"the server closed the connection mid-response: {data[:200]!r}"
        return None
    raw_head, rest = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = raw_head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, text = line.partition(":")
        headers[name.strip().lower()] = text.strip()
    status = int(status_line.split()[1])
    if "content-length" in headers:
        length = int(headers["content-length"])
        if len(rest) < length:
            assert not closed, "the server closed the connection mid-body"
            return None
        return RawResponse(status, headers, rest[:length]), rest[length:]
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while b"\r\n" in rest:
            size_line, after = rest.split(b"\r\n", 1)
            size = int(size_line, 16)
            if len(after) < size + 2:
                break
            body, rest = body + after[:size], after[size + 2 :]
            if size == 0:
                return RawResponse(status, headers, body), rest
        assert not closed, "the server closed the connection mid-body"
        return None
    if not closed:  # delimited by the end of the connection
        return None
    return RawResponse(status, headers, rest), b""


def read_response(sock: socket.socket) -> RawResponse | None:
    """The next response on `sock` (None if the server closed it without one); times out if none comes."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        data += chunk
        parsed = parse_response(data, closed=not chunk)
        if parsed is not None:
            return parsed[0]
        if not chunk:
            return None


def read_until_closed(sock: socket.socket) -> list[RawResponse]:
    """Every response the server sends on `sock` until it closes it; times out if it does not."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    responses = []
    while (parsed := parse_response(data, closed=True)) is not None:
        response, data = parsed
        responses.append(response)
    return responses


def assert_closed(sock: socket.socket) -> None:
    """The server closed `sock` (it does not hang): what is left to read ends."""
    while True:
        try:
            if not sock.recv(65536):
                return
        except ConnectionResetError:
            return


# --- oversized bodies -------------------------------------------------------------------------------------


def test_oversized_bodies_are_refused_413_without_reading_them(server: Server) -> None:
    size = server.log_size()
    # Just over the limit: a valid signed transaction padded with JSON whitespace.
    wire = json.dumps(server.sign().to_json()).encode()
    just_over = server.http.post(
        "/v1/transactions", content=wire + b" " * (BODY_LIMIT + 1 - len(wire)), headers=json_type()
    )
    assert_problem(just_over, 413, "content-too-large")
    # 10 MB declared and sent: refused on its declared length, the rest drained unread.
    ten_mb = server.http.post("/v1/transactions", content=b"[" * 10_000_000, headers=json_type())
    assert_problem(ten_mb, 413, "content-too-large")
    server.assert_healthy()

    # A Content-Length that lies upwards: 10 MB announced, 100 bytes sent; the answer does not wait for more.
    with connect(server) as sock:
        sock.sendall(head("POST", "/v1/transactions", {"Content-Length": "10000000", **json_type()}) + b"{" * 100)
        response = read_response(sock)
        assert response is not None
        assert response.status == 413
        assert response.problem()["type"] == PROBLEM_BASE + "content-too-large"

    # A Content-Length that lies downwards: the body is cut at 40 bytes (malformed JSON, 400); what follows is
    # read as the next request's head, 20 KB without a line end, past the 16 KiB limit of a head: uvicorn
    # answers 400 and closes. Nothing beyond the declared length is read as the body.
    with connect(server) as sock:
        sock.sendall(head("POST", "/v1/transactions", {"Content-Length": "40", **json_type()}) + wire + b"x" * 20_000)
        first, after = read_until_closed(sock)
        assert first.status == 400
        assert first.problem()["type"] == PROBLEM_BASE + "malformed-json"
        assert after.status == 400

    # Chunked, no Content-Length, growing: 8 KiB over the limit then nothing more; the 413 comes anyway.
    with connect(server) as sock:
        sock.sendall(head("POST", "/v1/transactions", {"Transfer-Encoding": "chunked", **json_type()}))
        chunk = b"[" * 4096
        for _ in range((BODY_LIMIT + 8192) // len(chunk)):
            sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        response = read_response(sock)  # the body never ends: only an early refusal answers
        assert response is not None
        assert response.status == 413
        assert response.problem()["type"] == PROBLEM_BASE + "content-too-large"

    assert server.log_size() == size
    server.assert_healthy()


def json_type() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def assert_problem(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == PROBLEM
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    if code is not None:
        assert problem["type"] == PROBLEM_BASE + code, problem
    return problem


# --- request heads, pipelining, garbage -------------------------------------------------------------------

HEAD_LIMIT = 16 * 1024
"""The server's limit on a request's line and headers together (`cli.registry.MAX_REQUEST_HEAD_BYTES`)."""


def send_in_pieces(sock: socket.socket, data: bytes, size: int = 1024, pause: float = 0.01) -> None:
    """Send `data` in writes of `size` bytes `pause` seconds apart, until the server answers or closes."""
    for start in range(0, len(data), size):
        sock.sendall(data[start : start + size])
        readable, _, _ = select.select([sock], [], [], pause)
        if readable:
            return  # answered (or closed): more would only reset the connection


SENDERS: dict[str, Callable[[socket.socket, bytes], None]] = {
    "in_one_write": socket.socket.sendall,
    "in_1_kib_writes": send_in_pieces,
}
"""Ways to send a request: so the server reads its head at once, or a piece at a time."""


def padded_get(path: str, padding: int, *, pieces: int = 1, close: bool = False) -> bytes:
    """A GET whose head carries `padding` bytes of header values, spread over `pieces` headers."""
    headers = {f"X-Padding-{i}": "p" * (padding // pieces) for i in range(pieces)}
    return head("GET", path, {**headers, **({"Connection": "close"} if close else {})})


def assert_healthz(response: RawResponse | None) -> None:
    assert response is not None
    assert response.status == 200, response
    assert json.loads(response.body)["status"] == "ok"


@pytest.mark.parametrize("sending", SENDERS)
def test_a_request_head_over_16_kib_is_431_and_closed(server: Server, sending: str) -> None:
    request = padded_get("/healthz", 17 * 1024)  # one long header
    assert len(request) > HEAD_LIMIT
    with connect(server) as sock:
        SENDERS[sending](sock, request)
        responses = read_until_closed(sock)
    assert [r.status for r in responses] == [431], responses
    problem = responses[0].problem()
    assert problem["type"] == PROBLEM_BASE + "request-head-too-large"
    assert str(HEAD_LIMIT) in problem["detail"]
    assert responses[0].headers["connection"] == "close"
    server.assert_healthy()


@pytest.mark.parametrize("sending", SENDERS)
def test_a_request_head_just_under_16_kib_is_answered(server: Server, sending: str) -> None:
    request = padded_get("/healthz", 15 * 1024, pieces=15)
    assert HEAD_LIMIT - 1024 < len(request) <= HEAD_LIMIT
    with connect(server) as sock:
        SENDERS[sending](sock, request)
        assert_healthz(read_response(sock))
        # The connection stays open for the next request.
        sock.sendall(head("GET", "/healthz", {"Connection": "close"}))
        assert_healthz(read_response(sock))
        assert_closed(sock)
    server.assert_healthy()


def read_responses(sock: socket.socket, count: int) -> list[RawResponse]:
    """The next `count` responses on `sock` (fewer if the server closes it first); times out if they do not come."""
    data = b""
    responses: list[RawResponse] = []
    while len(responses) < count:
        chunk = sock.recv(65536)
        data += chunk
        while len(responses) < count and (parsed := parse_response(data, closed=not chunk)) is not None:
            response, data = parsed
            responses.append(response)
        if not chunk:
            break
    assert not data, f"more than {count} responses: {data[:200]!r}"
    return responses


def test_pipelined_requests_are_answered_in_order(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(head("GET", "/healthz", {}) * 2)  # two requests in one write
        for response in read_responses(sock, 2):
            assert_healthz(response)
        # Three more on the same connection, told apart by their answers.
        sock.sendall(
            head("GET", "/v1/log/checkpoint", {}) + head("GET", "/healthz", {}) + head("GET", "/v1/log/checkpoint", {})
        )
        checkpoint, health, checkpoint_again = read_responses(sock, 3)
        sock.sendall(head("GET", "/healthz", {"Connection": "close"}))
        (last,) = read_until_closed(sock)
    for response in (checkpoint, checkpoint_again):
        assert response.status == 200, response
        assert response.headers["content-type"].startswith("text/plain")
        assert response.body == server.checkpoint()
    assert_healthz(health)
    assert_healthz(last)
    server.assert_healthy()


GARBAGE = b"\x16\x03\x01\x02\x00 this is not HTTP\r\n\r\n"
"""Bytes no HTTP/1.1 request starts with (the first of them a TLS handshake's)."""


def assert_malformed_http(response: RawResponse) -> None:
    assert response.status == 400, response
    problem = response.problem()
    assert problem["type"] == PROBLEM_BASE + "malformed-http"
    assert "is not an HTTP/1.1 request" in problem["detail"]
    assert response.headers["connection"] == "close"


def test_garbage_after_a_whole_request_is_answered_after_it_then_400_and_closed(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(head("GET", "/healthz", {}) + GARBAGE)
        first, refusal = read_until_closed(sock)
    assert_healthz(first)
    assert_malformed_http(refusal)
    # A request with a body, then garbage: the transaction is appended and answered, then the 400.
    size = server.log_size()
    body = json.dumps(server.sign().to_json()).encode()
    with connect(server) as sock:
        sock.sendall(
            head("POST", "/v1/transactions", {"Content-Length": str(len(body)), **json_type()}) + body + GARBAGE
        )
        receipt, refusal = read_until_closed(sock)
    assert receipt.status == 201, receipt
    assert json.loads(receipt.body)["index"] == size
    assert_malformed_http(refusal)
    # Garbage alone: the 400 at once.
    with connect(server) as sock:
        sock.sendall(GARBAGE)
        (refusal,) = read_until_closed(sock)
    assert_malformed_http(refusal)
    assert server.log_size() == size + 1
    server.assert_healthy()


def test_garbage_after_pipelined_requests_is_answered_after_all_of_them(server: Server) -> None:
    with connect(server) as sock:
        sock.sendall(head("GET", "/healthz", {}) + head("GET", "/v1/log/checkpoint", {}) + GARBAGE)
        responses = read_until_closed(sock)
    assert [r.status for r in responses] == [200, 200, 400], responses
    assert_healthz(responses[0])
    assert responses[1].body == server.checkpoint()
    assert_malformed_http(responses[2])
    server.assert_healthy()


def test_a_keep_alive_connection_may_carry_more_than_16_kib_of_heads(server: Server) -> None:
    """The head limit is per request: 50 requests of ~600 bytes each (~30 KiB in all) on one connection."""
    sent = 0
    with connect(server) as sock:
        for i in range(50):
            request = padded_get("/healthz", 500, close=i == 49)
            # In two writes, so the server reads most of each head before the head ends (and counts it).
            sock.sendall(request[:-2])
            time.sleep(0.005)
            sock.sendall(request[-2:])
            sent += len(request)
            try:
                assert_healthz(read_response(sock))
            except AssertionError as exc:
                exc.add_note(f"request {i + 1} of 50, {sent} bytes sent on the connection")
                raise
        assert_closed(sock)
    assert sent > 25_000
    server.assert_healthy()


# --- hostile JSON -----------------------------------------------------------------------------------------


def _signature() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def _with_body(server: Server, change: Callable[[dict[str, Any]], None]) -> bytes:
    wire = server.sign().to_json()
    change(wire["body"])
    return json.dumps(wire).encode()


def _set_payload(name: str, data: Any) -> Callable[[dict[str, Any]], None]:
    def change(body: dict[str, Any]) -> None:
        body["payload"][name] = data

    return change


def hostile_bodies(server: Server) -> dict[str, tuple[bytes, int, str]]:
    """name: (request body, status, problem code), every one within (or just around) the size limit."""
    sig = _signature()
    deep_inside = ("[" * 30_000 + "]" * 30_000).encode()
    many_keys = {f"k{i}": i for i in range(3000)}
    return {
        "100,000 levels of [": (b"[" * 100_000, 413, "content-too-large"),
        "60,000 levels of [": (b"[" * 60_000, 400, "malformed-json"),
        "30,000 levels inside the body": (
            b'{"body":' + deep_inside + b',"signature":"' + sig.encode() + b'"}',
            400,
            "malformed-json",
        ),
        "900 levels inside the body": (
            json.dumps({"body": json.loads("[" * 900 + "]" * 900), "signature": sig}).encode(),
            400,
            "malformed-json",
        ),
        "33 levels inside the payload": (
            _with_body(server, _set_payload("title", json.loads("[" * 33 + "]" * 33))),
            400,
            "malformed-json",
        ),
        "20,000 empty objects side by side": (
            ("[" + ",".join(["{}"] * 20_000) + "]").encode(),
            422,
            "invalid-transaction",
        ),
        "a 4,000-digit integer": (_with_body(server, _set_payload("version", 10**3999)), 422, "invalid-transaction"),
        "a 50,000-digit integer": (b'{"body": 1' + b"0" * 50_000 + b', "signature": "x"}', 400, "malformed-json"),
        "an infinite float": (
            _with_body(server, _set_payload("version", "x")).replace(b'"x"', b"1e999999"),
            422,
            "invalid-transaction",
        ),
        "NaN": (_with_body(server, _set_payload("version", "x")).replace(b'"x"', b"NaN"), 400, "malformed-json"),
        "a 60,000-character string": (
            _with_body(server, _set_payload("title", "t" * 60_000)),
            422,
            "invalid-transaction",
        ),
        "a 60,000-character signature": (
            json.dumps({"body": {}, "signature": "A" * 60_000}).encode(),
            422,
            "invalid-transaction",
        ),
        "10,000 escaped NULs": (_with_body(server, _set_payload("title", "\x00" * 10_000)), 422, "invalid-transaction"),
        "3,000 keys beside body and signature": (
            json.dumps({"body": {}, "signature": sig, **many_keys}).encode(),
            422,
            "invalid-transaction",
        ),
        "3,000 keys in the body": (_with_body(server, lambda body: body.update(many_keys)), 422, "invalid-transaction"),
        "5,000 duplicate keys": (b"{" + b",".join([b'"a": 1'] * 5000) + b"}", 400, "malformed-json"),
        "lone surrogates": (
            _with_body(server, _set_payload("title", "x")).replace(b'"x"', b'"\\ud800\\udbff"'),
            422,
            "invalid-transaction",
        ),
    }


def test_hostile_json_is_a_4xx_problem_and_the_server_stays_up(server: Server) -> None:
    size = server.log_size()
    for name, (content, status, code) in hostile_bodies(server).items():
        assert len(content) <= BODY_LIMIT or status == 413, name
        response = server.http.post("/v1/transactions", content=content, headers=json_type())
        try:
            assert_problem(response, status, code)
        except AssertionError as exc:
            exc.add_note(f"case: {name}")
            raise
        assert server.http.get("/healthz").status_code == 200, name
    assert server.log_size() == size
    server.assert_healthy()


# --- slow clients -----------------------------------------------------------------------------------------


@dataclass
class SlowClient:
    """A socket that sends its request a byte at a time (or, with nothing to send, stays silent)."""

    sock: socket.socket
    kind: str
    pending: bytes
    sent: int = 0


def slow_clients(server: Server, count: int) -> list[SlowClient]:
    """`count` connections, a third of each kind: silent, trickling headers, trickling a body."""
    body = json.dumps(server.sign().to_json()).encode()
    requests = {
        "silent": b"",
        "headers": head("POST", "/v1/transactions", {"Content-Length": str(len(body)), **json_type()}) + body,
        "body": head("POST", "/v1/transactions", {"Content-Length": str(len(body)), **json_type()}) + body,
    }
    clients = []
    for i in range(count):
        kind = ("silent", "headers", "body")[i % 3]
        sock = connect(server)
        request = requests[kind]
        if kind == "body":  # the head at once, then the body byte by byte
            cut = request.index(b"\r\n\r\n") + 4
            sock.sendall(request[:cut])
            request = request[cut:]
        clients.append(SlowClient(sock, kind, request))
    return clients


def trickle(clients: list[SlowClient], stop: threading.Event, interval: float) -> None:
    """Send one more byte on every slow client each `interval`, until told to stop or the server answers."""
    while not stop.wait(interval):
        for client in clients:
            if client.pending and not still_open(client.sock):
                client.pending = b""  # answered (or closed): sending more would only reset the connection
            if client.pending and client.sent < len(client.pending) - 1:  # never the last byte
                try:
                    client.sock.send(client.pending[client.sent : client.sent + 1])
                    client.sent += 1
                except OSError:
                    client.pending = b""  # the server closed it


def still_open(sock: socket.socket) -> bool:
    """Whether the server has neither answered nor closed `sock` yet."""
    readable, _, _ = select.select([sock], [], [], 0)
    return not readable


def hold_slow_clients_and_serve_others(server: Server, count: int, interval: float) -> None:
    clients = slow_clients(server, count)
    stop = threading.Event()
    trickler = threading.Thread(target=trickle, args=(clients, stop, interval), daemon=True)
    trickler.start()
    size = server.log_size()
    try:
        # A normal client, while the slow ones hold their connections.
        answered = 0
        for _ in range(3):
            assert server.http.get("/healthz").status_code == 200
            tx = server.sign()
            response = server.http.post("/v1/transactions", json=tx.to_json())
            assert response.status_code == 201, response.text
            assert server.http.get("/v1/log/checkpoint").status_code == 200
            answered += 3
        held = sum(still_open(client.sock) for client in clients)
        report(f"slow clients: {count} connected, {held} still held after {answered} normal requests were answered")
        # Each slow client is cut off by the server at its deadline: a request begun gets a 408.
        outcomes: Counter[str] = Counter()
        for client in clients:
            client.sock.settimeout(REQUEST_TIMEOUT + ANSWER_TIMEOUT)
            cut_off = read_response(client.sock)
            if client.kind == "silent":
                assert cut_off is None, cut_off
            else:
                assert cut_off is not None, client.kind
                assert cut_off.status == 408, cut_off
                problem = cut_off.problem()
                assert problem["type"] == PROBLEM_BASE + "request-timeout"
                assert problem["detail"].endswith(f"within the request timeout of {REQUEST_TIMEOUT:g} s")
            assert_closed(client.sock)
            outcomes[f"{client.kind}: {'closed' if cut_off is None else cut_off.status}"] += 1
        report(f"slow clients cut off by the server: {dict(outcomes)}")
    finally:
        stop.set()
        trickler.join()
        for client in clients:
            client.sock.close()
    assert server.log_size() == size + 3  # the normal client's transactions, and nothing of the slow ones
    server.assert_healthy()


def test_slow_clients_do_not_hold_up_others_and_are_cut_off(server: Server) -> None:
    hold_slow_clients_and_serve_others(server, 30, interval=0.1)


@pytest.mark.slow
def test_many_slow_clients(server: Server) -> None:
    hold_slow_clients_and_serve_others(server, 600, interval=0.5)


# --- a flood of bad signatures ------------------------------------------------------------------------------


def bad_signature(server: Server, i: int) -> SignedTransaction:
    """A well-formed transaction that passes every cheap check, with a signature that does not verify."""
    tx = server.sign()
    match i % 3:
        case 0:
            signature = os.urandom(64)  # noise
        case 1:
            signature = STRANGER.sign(signing_message(tx.body_bytes))  # someone else's key
        case _:
            signature = seeded_key(AUTHORITY).sign(signing_message(tx.body_bytes + b" "))  # another message
    return SignedTransaction(body_bytes=tx.body_bytes, signature=signature, body=tx.body)


def post_all(server: Server, bodies: list[bytes], threads: int) -> list[tuple[int, dict[str, Any]]]:
    """Post every body from `threads` keep-alive clients at once; (status, JSON) in the bodies' order."""
    answers: list[tuple[int, dict[str, Any]] | None] = [None] * len(bodies)
    start = threading.Barrier(threads)

    def client(part: range) -> None:
        with httpx.Client(base_url=server.base_url, timeout=ANSWER_TIMEOUT) as http:
            start.wait()
            for i in part:
                response = http.post("/v1/transactions", content=bodies[i], headers=json_type())
                answers[i] = (response.status_code, response.json())

    workers = [threading.Thread(target=client, args=(range(t, len(bodies), threads),)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert all(answer is not None for answer in answers)
    return [answer for answer in answers if answer is not None]


def flood(server: Server, size: int, *, valid_every: int, threads: int) -> None:
    """`size` bad signatures from `threads` clients, and a valid transaction after every `valid_every`."""
    bad = [json.dumps(bad_signature(server, i).to_json()).encode() for i in range(size)]
    valid_txs = [server.sign() for _ in range(size // valid_every)]
    bodies = list(bad)
    for n, tx in enumerate(valid_txs):
        bodies.insert((n + 1) * (valid_every + 1) - 1, json.dumps(tx.to_json()).encode())
    bad_bodies = set(bad)
    is_valid = {body for body in bodies if body not in bad_bodies}
    log_size = server.log_size()
    before = server.metrics()

    clock = time.perf_counter()
    answers = post_all(server, bodies, threads)
    elapsed = time.perf_counter() - clock

    after = server.metrics()
    refused = [problem for body, (status, problem) in zip(bodies, answers, strict=True) if body not in is_valid]
    accepted = [(status, receipt) for body, (status, receipt) in zip(bodies, answers, strict=True) if body in is_valid]
    assert len(refused) == size
    for problem in refused:
        assert problem["status"] == 403, problem
        assert problem["type"] == PROBLEM_BASE + "bad_signature", problem
        assert problem["detail"].startswith(f"signature does not verify for key {seeded_key(AUTHORITY).key_id}")
    assert [status for status, _ in accepted] == [201] * len(valid_txs), accepted
    # Only the valid transactions were appended, each once.
    assert server.log_size() == log_size + len(valid_txs)
    assert server.nonces_from(log_size) == {tx.body.nonce for tx in valid_txs}
    # The flood was refused before the sequencer: one signature check each, and none took the write lock.
    assert delta(before, after, "cdcer_transactions_refused_total", code="bad_signature") == size
    assert delta(before, after, "cdcer_signature_verifications_total") == size + len(valid_txs)
    assert delta(before, after, "cdcer_sequencer_transactions_total") == len(valid_txs)
    assert delta(before, after, "cdcer_sequencer_batches_total") <= len(valid_txs)
    assert delta(before, after, "cdcer_transactions_appended_total", kind="methodology.publish") == len(valid_txs)
    report(
        f"flood: {len(bodies)} requests from {threads} threads in {elapsed:.1f} s ({len(bodies) / elapsed:.0f}/s): "
        f"{len(refused)} bad signatures refused ({len(refused) / elapsed:.0f}/s), {len(valid_txs)} valid appended; "
        f"sequencer took {delta(before, after, 'cdcer_sequencer_transactions_total'):.0f} transactions in "
        f"{delta(before, after, 'cdcer_sequencer_batches_total'):.0f} batches"
    )


def test_a_flood_of_bad_signatures_changes_nothing(server: Server) -> None:
    size, checkpoint = server.log_size(), server.checkpoint()
    before = server.metrics()
    bodies = [json.dumps(bad_signature(server, i).to_json()).encode() for i in range(server.flood_size())]
    clock = time.perf_counter()
    answers = post_all(server, bodies, threads=6)
    elapsed = time.perf_counter() - clock
    assert Counter((status, problem["type"]) for status, problem in answers) == {
        (403, PROBLEM_BASE + "bad_signature"): len(bodies)
    }
    after = server.metrics()
    assert server.log_size() == size
    assert server.checkpoint() == checkpoint  # byte for byte: no batch was signed
    assert delta(before, after, "cdcer_sequencer_transactions_total") == 0
    assert delta(before, after, "cdcer_sequencer_batches_total") == 0
    assert delta(before, after, "cdcer_signature_verifications_total") == len(bodies)
    report(
        f"flood: {len(bodies)} bad signatures from 6 threads refused in {elapsed:.1f} s "
        f"({len(bodies) / elapsed:.0f}/s); log and checkpoint unchanged, sequencer took none"
    )
    server.assert_healthy()


def test_valid_transactions_pass_through_a_flood_of_bad_signatures(server: Server) -> None:
    flood(server, server.flood_size(), valid_every=50, threads=6)
    server.assert_healthy()


@pytest.mark.slow
def test_a_long_flood_of_bad_signatures(server: Server) -> None:
    flood(server, 10_000, valid_every=100, threads=12)
    server.assert_healthy()


# --- cheap checks before the signature ---------------------------------------------------------------------


def cheap_refusals(server: Server) -> dict[str, tuple[SignedTransaction, int, str]]:
    """Transactions that break a cheap rule, each also carrying a signature that does not verify."""
    now = datetime.now(UTC)
    with read_transaction(server.engine) as conn:
        used = conn.execute(sql_select(log_entries.c.nonce).where(log_entries.c.actor == AUTHORITY).limit(1)).scalar()
    assert isinstance(used, str)
    return {
        "unknown key": (server.sign(key=STRANGER), 403, "unknown_key"),
        "revoked key": (server.sign("veteran", new_methodology()), 403, "revoked_key"),
        "unknown actor": (server.sign("nobody", key=STRANGER), 403, "unknown_actor"),
        "wrong role": (server.sign("buyer"), 403, "forbidden"),
        "wrong origin": (server.sign(origin="registry.elsewhere/cdcer"), 422, "wrong_origin"),
        "stale": (server.sign(at=now - timedelta(hours=1)), 422, "stale_transaction"),
        "from the future": (server.sign(at=now + timedelta(hours=1)), 422, "stale_transaction"),
        "reused nonce": (server.sign(nonce=used), 409, "nonce_reused"),
    }


def test_cheap_checks_come_before_the_signature(server: Server) -> None:
    size, checkpoint = server.log_size(), server.checkpoint()
    before = server.metrics()
    for name, (tx, status, code) in cheap_refusals(server).items():
        forged = SignedTransaction(body_bytes=tx.body_bytes, signature=os.urandom(64), body=tx.body)
        for sent in (forged, tx):  # with a bad signature, and with its own: the same cheap refusal
            response = server.http.post("/v1/transactions", json=sent.to_json())
            try:
                assert_problem(response, status, code)
            except AssertionError as exc:
                exc.add_note(f"case: {name}")
                raise
    # Refusals before the transaction was even parsed cost no signature check either.
    wire = server.sign().to_json()
    for content, status in (
        (json.dumps({**wire, "signature": "not base64!"}).encode(), 422),
        (json.dumps({**wire, "body": {**wire["body"], "v": 2}}).encode(), 422),
        (json.dumps(wire).encode()[:-1], 400),
    ):
        assert_problem(server.http.post("/v1/transactions", content=content, headers=json_type()), status)
    after = server.metrics()
    assert delta(before, after, "cdcer_signature_verifications_total") == 0
    assert delta(before, after, "cdcer_sequencer_transactions_total") == 0
    assert server.log_size() == size
    assert server.checkpoint() == checkpoint

    # The counter does count: the same kind of transaction with only its signature wrong is checked once.
    good = server.sign()
    forged = SignedTransaction(body_bytes=good.body_bytes, signature=os.urandom(64), body=good.body)
    assert_problem(server.http.post("/v1/transactions", json=forged.to_json()), 403, "bad_signature")
    assert delta(after, server.metrics(), "cdcer_signature_verifications_total") == 1
    server.assert_healthy()


def test_a_resent_transaction_skips_the_signature_check_and_gets_its_receipt(server: Server) -> None:
    tx = server.sign()
    first = server.http.post("/v1/transactions", json=tx.to_json())
    assert first.status_code == 201, first.text
    before = server.metrics()
    again = server.http.post("/v1/transactions", json=tx.to_json())
    assert again.status_code == 200, again.text
    assert again.json()["index"] == first.json()["index"]
    after = server.metrics()
    assert delta(before, after, "cdcer_signature_verifications_total") == 0  # verified when it was appended
    assert delta(before, after, "cdcer_transactions_duplicate_total") == 1
    server.assert_healthy()
