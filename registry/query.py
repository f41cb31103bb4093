"""Strict query strings: a parameter a route does not declare is a 422 problem, never silently ignored.

`StrictQuery` goes in a JSON API router's ``dependencies=``: it compares the request's query keys with
the query parameters the route (and its dependencies) declare, which FastAPI has already read from the
signatures, so a route's strictness follows its signature and nothing is listed twice. A misspelt
filter (``/v1/retirements?purpos=event``) would otherwise answer the whole, unfiltered list as if it
had been applied. A scalar parameter given twice (``?state=a&state=b``) is refused too: FastAPI would
keep one value and drop the other without a word.

Values are FastAPI's to check (an enumerated filter is typed ``Literal`` or an enum, so the OpenAPI
document lists its values and a value outside them is a 422 naming them). Router dependencies run
before the route's own parameters are read, so an unknown key is reported before any bad value.
"""

from __future__ import annotations

import difflib
import weakref
from dataclasses import dataclass
from typing import Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from registry.errors import RegistryError, problem_responses, status_title


@dataclass(frozen=True, slots=True)
class DeclaredQuery:
    """The query parameters a route takes, in declaration order, and which of them take several values."""

    names: tuple[str, ...]
    repeatable: frozenset[str]


_DECLARED: dict[int, DeclaredQuery] = {}
"""By ``id(route)``, forgotten when the route is (an APIRoute is not hashable, so no WeakKeyDictionary)."""


def declared_query(route: APIRoute) -> DeclaredQuery:
    """What `route` declares, read once from its dependant (the route's and its dependencies' parameters)."""
    found = _DECLARED.get(id(route))
    if found is None:
        names: dict[str, bool] = {}
        _collect(route.dependant, names)
        found = DeclaredQuery(tuple(names), frozenset(name for name, many in names.items() if many))
        _DECLARED[id(route)] = found
        weakref.finalize(route, _DECLARED.pop, id(route), None)
    return found


def _collect(dependant: Dependant, names: dict[str, bool]) -> None:
    for dependency in dependant.dependencies:
        _collect(dependency, names)
    for field in dependant.query_params:
        names.setdefault(field.alias, _is_sequence(field.field_info.annotation))


def _is_sequence(annotation: Any) -> bool:
    """A ``list[...]`` (or ``list[...] | None``) parameter, which a query string may give several times."""
    origin = getattr(annotation, "__origin__", None)
    if origin in (list, tuple, set, frozenset):
        return True
    return any(_is_sequence(arg) for arg in getattr(annotation, "__args__", ()) if arg is not type(None))


class InvalidQuery(RegistryError):
    """A query string the route does not take: 422, the problem FastAPI's own parameter checks answer."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, status_title(422), detail, "validation-error")


def _named(name: str, declared: tuple[str, ...]) -> str:
    """`name` quoted, with the declared parameter it most resembles (case aside), if one is close."""
    by_lower = {d.lower(): d for d in declared}
    close = difflib.get_close_matches(name.lower(), list(by_lower), 1)
    return f"{name!r} (did you mean {by_lower[close[0]]!r}?)" if close else repr(name)


def unknown_parameter_detail(unknown: list[str], declared: tuple[str, ...]) -> str:
    """``unknown query parameter 'purpos' (did you mean 'purpose'?); this route takes: purpose, ...``."""
    noun = "parameter" if len(unknown) == 1 else "parameters"
    takes = f"this route takes: {', '.join(declared)}" if declared else "this route takes no query parameters"
    return f"unknown query {noun} {', '.join(_named(name, declared) for name in unknown)}; {takes}"


async def strict_query(request: Request) -> None:
    """Refuse (422) a query key the route does not declare, and a second value of a one-value parameter."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    declared = declared_query(route)
    given = request.query_params
    keys = list(dict.fromkeys(given.keys()))
    unknown = [name for name in keys if name not in declared.names]
    if unknown:
        raise InvalidQuery(unknown_parameter_detail(unknown, declared.names))
    repeated = {name: n for name in keys if name not in declared.repeatable and (n := len(given.getlist(name))) > 1}
    if repeated:
        counts = ", ".join(f"{name!r} ({n} times)" for name, n in repeated.items())
        raise InvalidQuery(f"query parameter given more than once: {counts}; each takes one value")


StrictQuery = Depends(strict_query)
"""For a router's ``dependencies=[StrictQuery]``: every route on it refuses undeclared query parameters."""

QUERY_ERRORS = problem_responses(422)
"""For the same router's ``responses=``: so the OpenAPI document declares the 422 on every route, those
without parameters (where FastAPI declares none) included."""
