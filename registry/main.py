"""The ASGI entry point for `cdcer serve` and uvicorn: the app built from ``CDCER_*`` settings."""

from __future__ import annotations

from registry.access_log import log_to_stream
from registry.app import create_app
from registry.settings import Settings

log_to_stream()  # one JSON access line per request on stderr, in every server process
app = create_app(Settings())
