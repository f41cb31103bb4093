"""The registry service's settings, read from ``CDCER_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


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
