"""Structured access logs: one JSON object per request on the ``cdcer.access`` logger.

A pure ASGI middleware, so a streamed export is logged once it has been sent, and is never buffered.
It records who asked for what and how it went, never what was said: no query string, no header other
than the request id, no body (a transaction's signature stays out of the logs).

Each request carries a request id: the client's ``X-Request-ID`` when it is a sane token (letters,
digits and ``._:+/=-``, at most 128 characters), otherwise a fresh one. It is echoed in the response's
``X-Request-ID`` and kept in the request's state (``request.state.request_id``) for the routes.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import re
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TextIO

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ledger.transactions import format_utc

ACCESS_LOGGER = "cdcer.access"
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:+/=-]{1,128}")


_PROCESS_PREFIX = uuid.uuid4().hex[:16]
_SEQUENCE = itertools.count(1)


def request_id(headers: Headers) -> str:
    """The client's ``X-Request-ID`` if it is a sane token, else a new id (32 hex digits): this process's
    random prefix and a counter, unique without asking the kernel for randomness on every request."""
    given = headers.get(REQUEST_ID_HEADER)
    if given is not None and _SANE_REQUEST_ID.fullmatch(given):
        return given
    return f"{_PROCESS_PREFIX}{next(_SEQUENCE):016x}"


def route_template(scope: Scope) -> str | None:
    """The path template of the route that answered (``/v1/projects/{project_id}``); None if none matched."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    return template if isinstance(template, str) else None


def client_address(scope: Scope) -> str | None:
    client = scope.get("client")
    return None if not client else str(client[0])


class AccessLogMiddleware:
    """Logs one JSON line per HTTP request (see the module docstring for what it holds)."""

    def __init__(self, app: ASGIApp, *, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(ACCESS_LOGGER)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = datetime.now(UTC)
        clock = time.perf_counter()
        rid = request_id(Headers(scope=scope))
        scope.setdefault("state", {})["request_id"] = rid
        # An exception that escapes the app becomes a 500 sent by Starlette's outermost middleware.
        status = 500
        sent = 0

        async def send_and_count(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = rid
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            if self.logger.isEnabledFor(logging.INFO):
                line = {
                    "time": format_utc(started),
                    "request_id": rid,
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": route_template(scope),
                    "status": status,
                    "duration_ms": round((time.perf_counter() - clock) * 1000, 3),
                    "bytes_out": sent,
                    "client": client_address(scope),
                }
                self.logger.info(json.dumps(line, ensure_ascii=False, separators=(",", ":")), extra={"access": line})


class _AccessLines(logging.Handler):
    """Writes each access record's message (already one JSON object) as one line, in batches.

    A busy server writes a line per request: written one by one, every line is a system call in the
    event loop's thread, which gives up the interpreter lock for it and waits to get it back from the
    sequencer's and the admission's threads. Lines are gathered instead and written together every
    `interval` seconds by a daemon thread (or at once past `limit` bytes, and on `flush` and `close`).
    """

    def __init__(self, stream: TextIO, *, interval: float = 0.2, limit: int = 64 * 1024) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.limit = limit
        self._pending: list[str] = []
        self._pending_size = 0
        self._writer = threading.Lock()
        self._stopped = threading.Event()
        threading.Thread(target=self._flush_every_interval, name="cdcer-access-log", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        with self.lock or contextlib.nullcontext():
            self._pending.append(line)
            self._pending_size += len(line)
            full = self._pending_size >= self.limit
        if full:
            self.flush()

    def flush(self) -> None:
        with self.lock or contextlib.nullcontext():
            lines, self._pending, self._pending_size = self._pending, [], 0
        if not lines:
            return
        with self._writer:  # lines taken in order are written in order
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except (OSError, ValueError):
                pass  # standard error closed or gone: the lines are lost, the server carries on

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _flush_every_interval(self) -> None:
        while not self._stopped.wait(self.interval):
            self.flush()


def log_to_stream(stream: TextIO | None = None) -> logging.Handler:
    """Print access lines to `stream` (standard error by default), once, whatever the root logger does.

    Idempotent: a second call returns the handler the first one installed. The handler is returned so a
    caller (a test) can remove it again.
    """
    logger = logging.getLogger(ACCESS_LOGGER)
    for handler in logger.handlers:
        if isinstance(handler, _AccessLines):
            return handler
    handler = _AccessLines(sys.stderr if stream is None else stream)
    atexit.register(handler.flush)  # what the last requests logged, when the server stops
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    # The line is already complete: the root logger's handlers (if any) would print it a second time.
    logger.propagate = False
    return handler
