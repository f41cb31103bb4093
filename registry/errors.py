"""RFC 9457 problem details: one error base, its handlers, and the model the OpenAPI document declares."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.errors import IntegrityError, StorageError

PROBLEM_TYPE_BASE = "/problems/"
"""A problem's ``type`` is ``/problems/<code>``: a reference relative to the registry that answered (RFC 9457
3.1.1 allows one with its full path), so it names the same rule on every registry, and resolved against the
request's URL it opens the page that describes the problem (`registry.problems`, `registry.pages.problems`)."""
PROBLEM_MEDIA_TYPE = "application/problem+json"


class ProblemDetails(BaseModel):
    """An RFC 9457 problem details object."""

    type: str = Field(
        description="The problem type: `/problems/<code>`, relative to the registry. Clients branch on it; "
        "GET it for a page that describes the problem (every type is listed at `/problems`).",
        examples=[f"{PROBLEM_TYPE_BASE}insufficient_units", f"{PROBLEM_TYPE_BASE}invalid-range"],
    )
    title: str = Field(examples=["Invalid range"])
    status: int = Field(examples=[400])
    detail: str = Field(examples=["leaf index 12 is not in a tree of 10 entries; use an index below 10"])


class RegistryError(Exception):
    """An error a route returns to the client as a problem details document."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        type_suffix: str,
        headers: dict[str, str] | None = None,
        *,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type_suffix = type_suffix
        self.headers = headers or {}
        # RFC 9457 extension members a client can act on without parsing `detail` (e.g. where to resume).
        self.extensions = extensions or {}

    def problem(self) -> ProblemDetails:
        return ProblemDetails(
            type=PROBLEM_TYPE_BASE + self.type_suffix, title=self.title, status=self.status, detail=self.detail
        )


class NotFound(RegistryError):
    def __init__(self, detail: str, type_suffix: str = "not-found") -> None:
        super().__init__(404, "Not found", detail, type_suffix)


class BadRequest(RegistryError):
    def __init__(self, detail: str, type_suffix: str = "bad-request") -> None:
        super().__init__(400, "Bad request", detail, type_suffix)


class Unauthorized(RegistryError):
    """The request must be signed (RFC 9421); `accept_signature` tells the client how."""

    def __init__(self, detail: str, accept_signature: str, type_suffix: str = "signature-required") -> None:
        super().__init__(401, "Unauthorized", detail, type_suffix, {"Accept-Signature": accept_signature})


class Forbidden(RegistryError):
    def __init__(self, detail: str, type_suffix: str = "forbidden") -> None:
        super().__init__(403, "Forbidden", detail, type_suffix)


class ServiceUnavailable(RegistryError):
    def __init__(self, detail: str, type_suffix: str = "service-unavailable") -> None:
        super().__init__(503, "Service unavailable", detail, type_suffix)


_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    422: "Invalid request",
    500: "Internal server error",
    503: "Service unavailable",
}


def status_title(status: int) -> str:
    """The problem title of an HTTP status."""
    return _TITLES.get(status, "Error")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer with these error statuses."""
    return {status: {"model": ProblemDetails, "description": _TITLES.get(status, "Error")} for status in statuses}


def problem_response(problem: ProblemDetails) -> JSONResponse:
    return JSONResponse(problem.model_dump(), status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE)


def _slug(title: str) -> str:
    return title.lower().replace(" ", "-")


async def _registry_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RegistryError)
    problem = exc.problem()
    response = JSONResponse(
        problem.model_dump() | exc.extensions, status_code=problem.status, media_type=PROBLEM_MEDIA_TYPE
    )
    response.headers.update(exc.headers)
    return response


ErrorPage = Callable[[Request, int, str, str], Response]
"""Renders an error for a browser: (request, status, problem code, detail) -> an HTML page."""


def wants_html(request: Request) -> bool:
    """Whether a GET asks for HTML before JSON, as a browser does (``text/html,...,*/*;q=0.8``).

    An API client (``*/*``, ``application/json``, ``application/problem+json``) gets problem details.
    """
    if request.method not in ("GET", "HEAD"):
        return False
    quality: dict[str, float] = {}
    for part in request.headers.get("accept", "").split(","):
        media, *params = (piece.strip() for piece in part.split(";"))
        q = 1.0
        for param in params:
            if param.startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        quality[media.lower()] = max(q, quality.get(media.lower(), 0.0))
    html = quality.get("text/html", 0.0)
    json = max(quality.get("application/json", 0.0), quality.get(PROBLEM_MEDIA_TYPE, 0.0))
    return html > 0 and html >= json


def _page_or_problem(
    request: Request, page: ErrorPage | None, problem: ProblemDetails, headers: Mapping[str, str] | None = None
) -> Response:
    if page is not None and wants_html(request):
        response = page(request, problem.status, problem.type.removeprefix(PROBLEM_TYPE_BASE), problem.detail)
    else:
        response = problem_response(problem)
    if headers:
        response.headers.update(headers)
    return response


async def _validation_error(request: Request, exc: Exception, *, page: ErrorPage | None = None) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ())]
        where = f"{location[0]} parameter {'.'.join(location[1:])!r}" if len(location) > 1 else ".".join(location)
        message, given, expected = error.get("msg", "invalid"), error.get("input"), error.get("ctx", {}).get("expected")
        if error.get("type") in ("enum", "literal_error") and isinstance(given, str) and expected:
            # An enumerated value: what was given and every value accepted ("'registred' is not one of ...").
            message = f"{given if len(given) <= 60 else given[:60] + '…'!r} is not one of {expected}"
        parts.append(f"{where}: {message}")
    detail = "; ".join(parts) or "the request is not valid"
    problem = ProblemDetails(type=PROBLEM_TYPE_BASE + "validation-error", title=_TITLES[422], status=422, detail=detail)
    return _page_or_problem(request, page, problem)


async def _http_error(request: Request, exc: Exception, *, page: ErrorPage | None = None) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    title = _TITLES.get(exc.status_code, "Error")
    problem = ProblemDetails(
        type=PROBLEM_TYPE_BASE + _slug(title), title=title, status=exc.status_code, detail=str(exc.detail)
    )
    return _page_or_problem(request, page, problem, exc.headers)


async def _storage_error(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc.__cause__, DataError):
        # The database refused a value the request carries (PostgreSQL text cannot hold NUL, an integer
        # beyond its range): that is for the client to correct, not a reason to retry later.
        reason = str(exc.__cause__.orig).strip().splitlines()[0] if str(exc.__cause__.orig).strip() else "invalid"
        detail = f"a parameter holds a value the registry cannot look up ({reason}); correct it"
        return problem_response(
            ProblemDetails(type=PROBLEM_TYPE_BASE + "invalid-value", title=_TITLES[422], status=422, detail=detail)
        )
    # The database is unreachable or refused the query: the client may retry later.
    return problem_response(
        ProblemDetails(type=PROBLEM_TYPE_BASE + "storage-unavailable", title=_TITLES[503], status=503, detail=str(exc))
    )


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    # The registry's own stored log is damaged: the server's fault, said plainly, never a bare traceback.
    return problem_response(
        ProblemDetails(
            type=PROBLEM_TYPE_BASE + "integrity-failure",
            title=_TITLES[500],
            status=500,
            detail=f"the registry's stored log failed an integrity check ({exc}); its operator must run "
            "`cdcer audit verify` and repair it before this can be answered",
        )
    )


def install_error_handlers(app: FastAPI, *, page: ErrorPage | None = None) -> None:
    """Render every error as ``application/problem+json``.

    With `page`, a browser's GET of an address no route answers (404, 405) or with parameters a route
    refuses (422) gets `page`'s HTML instead; a route's own errors stay what the route declares.
    """
    app.add_exception_handler(RegistryError, _registry_error)
    app.add_exception_handler(RequestValidationError, partial(_validation_error, page=page))
    app.add_exception_handler(StarletteHTTPException, partial(_http_error, page=page))
    app.add_exception_handler(StorageError, _storage_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
