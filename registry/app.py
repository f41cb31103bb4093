"""The registry's FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from sqlalchemy import Engine

from ledger.ledger import Ledger
from ledger.storage.engine import make_engine
from registry import health
from registry.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from registry.log import api as log_api
from registry.settings import Settings


class RegistryApp(FastAPI):
    """FastAPI, with error responses declared as ``application/problem+json`` in the OpenAPI document."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        # FastAPI files a declared model under the route's media type (text/plain for
                        # the note routes); errors are always problem details whatever the route returns.
                        if str(status)[0] in "45" and content:
                            problem = next(iter(content.values())).get("schema", {})
                            response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem}}
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(settings: Settings, *, engine: Engine | None = None, ledger: Ledger | None = None) -> FastAPI:
    """The registry service over `engine` (by default, one on ``settings.database_url``).

    An engine passed in (or the ledger's) belongs to the caller; one made here is disposed at shutdown.
    """
    owned = engine is None and ledger is None
    if engine is None:
        engine = ledger.engine if ledger is not None else make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if owned:
                engine.dispose()

    app = RegistryApp(
        title="CDCER registry",
        version="0.1.0",
        summary="A verifiable registry of Chengdu Certified Emission Reductions",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.ledger = ledger
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(log_api.router)
    return app
