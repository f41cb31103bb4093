"""The registry's FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import Engine

from ledger import heap
from ledger.ledger import Ledger
from ledger.storage.engine import make_engine
from registry import access_log, health, metrics
from registry.accounts import api as accounts_api
from registry.certificates import api as certificates_api
from registry.certificates.cache import LruCache
from registry.errors import PROBLEM_MEDIA_TYPE, install_error_handlers
from registry.exports import api as exports_api
from registry.log import api as log_api
from registry.pages import api as pages_api
from registry.pages import problems as problems_pages
from registry.points import api as points_api
from registry.points.schemas import request_body_schemas as points_body_schemas
from registry.problems import PROBLEM_TYPES
from registry.public import api as public_api
from registry.serials import api as serials_api
from registry.settings import Settings, ledger_from_settings
from registry.transactions import api as transactions_api
from registry.transactions import service as transactions_service
from registry.transactions.schemas import request_body_schemas
from registry.transactions.sequencer import ProcessSequencer, Sequencer

API_DESCRIPTION = (
    "Every refusal is an RFC 9457 problem (`application/problem+json`). Its `type` is `/problems/<code>`, "
    "relative to the registry: the ledger's rule codes (`insufficient_units`, `bad_signature`, ...) for a "
    "refused transaction, the service's own (`invalid-cursor`, `project-not-found`, ...) otherwise. GET it "
    "for a page that describes the problem; [/problems](/problems) lists them all, and the `ProblemDetails` "
    "schema's `x-problem-types` gives each one's status and meaning."
)


class RegistryApp(FastAPI):
    """FastAPI, with error responses declared as ``application/problem+json`` in the OpenAPI document."""

    extra_schemas: dict[str, dict[str, Any]]
    """Component schemas that routes reference by hand (a request body read raw but documented)."""

    def openapi(self) -> dict[str, Any]:
        if self.openapi_schema is None:
            schema = super().openapi()
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, extra in getattr(self, "extra_schemas", {}).items():
                components.setdefault(name, extra)
            for operations in schema.get("paths", {}).values():
                for operation in operations.values():
                    for status, response in operation.get("responses", {}).items():
                        content = response.get("content", {})
                        # FastAPI files a declared model under the route's media type (text/plain for
                        # the note routes); errors are always problem details whatever the route returns.
                        if str(status)[0] in "45" and content:
                            problem = next(iter(content.values())).get("schema", {})
                            if problem.get("$ref", "").endswith("/HTTPValidationError"):
                                # FastAPI's own 422 for a route's parameters: our handler renders a problem.
                                problem = {"$ref": "#/components/schemas/ProblemDetails"}
                            response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": problem}}
            if "ProblemDetails" in components:
                # Every problem type, by its `type`, for a client that branches on it (pages: /problems).
                components["ProblemDetails"]["x-problem-types"] = {
                    problem.uri: {"status": problem.status, "description": problem.en}
                    for problem in PROBLEM_TYPES.values()
                }
            self.openapi_schema = schema
        return self.openapi_schema


def create_app(settings: Settings, *, engine: Engine | None = None, ledger: Ledger | None = None) -> FastAPI:
    """The registry service over `engine` (by default, one on ``settings.database_url``).

    An engine passed in (or the ledger's) belongs to the caller; one made here is disposed at shutdown.
    Without a `ledger`, one is built from the settings' log key file (`ledger_from_settings`); with
    neither, the registry is read-only and its write routes answer 503.
    """
    owned = engine is None and ledger is None
    # Appends move to a process of their own only for a ledger the app opens itself from the settings.
    own_process = ledger is None and settings.append_process
    if engine is None:
        engine = ledger.engine if ledger is not None else make_engine(settings.database_url)
    if ledger is None:
        try:
            ledger = ledger_from_settings(settings, engine)
        except BaseException:
            if owned:
                engine.dispose()
            raise

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        sequencer: Sequencer | None = None
        if ledger is not None:
            max_batch, max_wait = settings.max_batch, settings.batch_wait_ms / 1000
            if own_process:
                sequencer = ProcessSequencer(settings, max_batch=max_batch, max_wait=max_wait)
            else:
                sequencer = Sequencer(ledger, max_batch=max_batch, max_wait=max_wait)
            await asyncio.to_thread(sequencer.start)  # a child process is ready once its ledger is open
        app.state.sequencer = sequencer
        # Everything the process built to get here (modules, routes, schemas, the ledger's state) lives
        # as long as it does: out of the cyclic collector's reach, a full collection walks only what
        # requests leave behind, and no longer stalls every request in flight for tens of milliseconds.
        heap.settle()
        try:
            yield
        finally:
            app.state.sequencer = None
            await asyncio.to_thread(app.state.admission.close)
            if sequencer is not None:
                await asyncio.to_thread(sequencer.close)
            if owned:
                engine.dispose()

    app = RegistryApp(
        title="CDCER registry",
        version="0.1.0",
        summary="A verifiable registry of Chengdu Certified Emission Reductions",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served by `install_docs`, from local files
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.ledger = ledger
    app.state.sequencer = None  # started by the lifespan
    app.state.certificates = LruCache()  # built certificates, by checkpoint (`registry.certificates.cache`)
    app.state.verifications = LruCache()  # the claim page's verdicts on them
    app.extra_schemas = request_body_schemas() | points_body_schemas()
    install_error_handlers(app, page=pages_api.http_error_page)
    app.state.metrics = metrics.Metrics(engine)
    # The write path's gate before the sequencer: cheap checks, then the signature (read-only registries: unused).
    app.state.admission = transactions_service.Admission(engine if ledger is None else ledger.engine)
    app.state.metrics.registry.register(
        transactions_service.WritePathCollector(app.state.admission, lambda: app.state.sequencer)
    )
    app.add_middleware(metrics.MetricsMiddleware, metrics=app.state.metrics)
    app.add_middleware(access_log.AccessLogMiddleware)  # outermost: logs what the client got
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(log_api.router)
    app.include_router(transactions_api.router)
    app.include_router(public_api.router)
    app.include_router(exports_api.router)
    app.include_router(serials_api.router)
    app.include_router(accounts_api.router)
    app.include_router(points_api.router)
    app.include_router(certificates_api.router)
    app.include_router(pages_api.router)
    app.include_router(problems_pages.router)
    install_docs(app)
    return app


DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
"""Swagger UI's and ReDoc's bundles as the fastapi-offline wheel ships them (swagger-ui-dist 5, redoc 2)."""
DOCS_ASSETS_URL = "/docs-assets"
# The pages' inline start-up script and the bundles' inline styles are theirs; ReDoc searches in a blob: worker.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; base-uri 'self'; form-action 'self'"
)


def install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` (ReDoc), their scripts and styles served by the registry itself.

    FastAPI's own pages load them from a CDN, so on a closed network (or offline on a laptop) they were
    blank. Here nothing leaves the registry's origin: no fonts, and a content security policy keeps the
    bundles' own outside references (ReDoc's logo on its CDN) from being fetched at all.
    """
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} · API",
            swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} · API",
            redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )
        page.headers["Content-Security-Policy"] = DOCS_CSP
        return page
