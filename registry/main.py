"""The ASGI entry point for `cdcer serve` and uvicorn: the app built from ``CDCER_*`` settings."""

from __future__ import annotations

from registry.app import create_app
from registry.settings import Settings

app = create_app(Settings())
