"""The registry service's settings, read from ``CDCER_*`` environment variables, and the ledger they open."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import Engine

from ledger.errors import LedgerError
from ledger.keys import read_key_file
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import read_transaction

DEVELOPMENT_BASE_URL = "http://127.0.0.1:8000"


def public_base_url(text: str) -> str:
    """`text` as a public base URL: absolute http(s), a host, no query, fragment or credentials; no final '/'.

    Raises ValueError saying what is wrong (pydantic reports it against ``CDCER_PUBLIC_BASE_URL``).
    """
    try:
        parts = urlsplit(text)
        port = parts.port  # raises ValueError for a port that is not a number below 65536
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a URL: {exc}") from None
    if port == 0:
        raise ValueError(f"{text!r} names port 0, which nobody can reach")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an absolute http:// or https:// URL with a host")
    if parts.query or parts.fragment or "?" in text or "#" in text:
        raise ValueError(f"{text!r} has a query or a fragment; give the base URL alone")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{text!r} carries credentials; a public URL must not")
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError(f"{text!r} holds whitespace or control characters")
    return text.rstrip("/")


class Settings(BaseSettings):
    """How one registry process runs: its database, its origin and its limits."""

    model_config = SettingsConfigDict(env_prefix="CDCER_", extra="ignore")

    database_url: str = "sqlite:///data/registry.db"
    # None: the origin recorded in the database (by the genesis entry) is the registry's origin.
    origin: str | None = None
    # The log's signing key file (its passphrase in CDCER_LOG_KEY_PASSPHRASE); without it, and without a
    # ledger handed to the app, the registry is read-only.
    log_key_file: Path | None = None
    max_body_bytes: int = 65536
    # `cdcer serve`'s connection limits (uvicorn's, and the request deadline of `cli.registry.GuardedHttpProtocol`):
    # a connection must deliver each whole request (head and body) within request_timeout seconds; an idle
    # keep-alive connection is closed after keep_alive_timeout seconds; past limit_concurrency connections or
    # requests in flight per server process, new requests are answered 503 at once.
    request_timeout: float = 30.0
    keep_alive_timeout: int = 5
    limit_concurrency: int = 1000
    # Group commit: the sequencer waits this long for more transactions, or until max_batch are pending.
    batch_wait_ms: float = 2.0
    max_batch: int = 500
    # Appends in a child process of their own (`registry.transactions.sequencer.ProcessSequencer`), on
    # another core than HTTP and the admission; False: a thread of the server process. `cdcer serve` sets it.
    append_process: bool = False
    # Where the public reaches the registry, e.g. https://registry.example.cn: every absolute URL the registry
    # emits (the claim page's QR code, its PDF, the commands the pages show) starts with it, never with the
    # request's Host header, which any client sets. The default is `cdcer serve`'s own address.
    public_base_url: str = DEVELOPMENT_BASE_URL

    @field_validator("public_base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        return public_base_url(value)


LOG_KEY_PASSPHRASE_ENV = "CDCER_LOG_KEY_PASSPHRASE"


class ConfigurationError(LedgerError):
    """The settings cannot make a working registry (e.g. a key file but no known origin)."""


def ledger_from_settings(settings: Settings, engine: Engine) -> Ledger | None:
    """The registry's ledger over `engine`, signing with ``settings.log_key_file``; None without a key file.

    The key file's passphrase is read from ``CDCER_LOG_KEY_PASSPHRASE`` (unset: a clear key file). The
    checkpoint key's name is the origin: ``settings.origin``, else the one the database recorded at
    its genesis. Raises `KeyFileError` for a key file that cannot be read and `ConfigurationError`
    when no origin is known.
    """
    if settings.log_key_file is None:
        return None
    key = read_key_file(Path(settings.log_key_file), passphrase=os.environ.get(LOG_KEY_PASSPHRASE_ENV))
    origin = settings.origin
    if origin is None:
        with read_transaction(engine) as conn:
            origin = store.get_meta(conn, "origin")
    if origin is None:
        raise ConfigurationError(
            "the registry's origin is unknown: the database has no genesis entry yet; set CDCER_ORIGIN"
        )
    return Ledger(engine, NoteSigner(origin, key.seed))
