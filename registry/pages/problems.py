"""The pages a problem's ``type`` opens: ``/problems`` lists every problem type, ``/problems/<code>`` describes one."""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from registry.errors import NotFound
from registry.pages.api import error_page, render
from registry.problems import PROBLEM_TYPES

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)


@router.get("/problems")
def problem_types(request: Request) -> Response:
    return render(request, "problems.html", problems=list(PROBLEM_TYPES.values()))


@router.get("/problems/{code}")
def problem_type(request: Request, code: str) -> Response:
    problem = PROBLEM_TYPES.get(code)
    if problem is None:
        return error_page(request, NotFound(f"no problem type {code!r}; every type is listed at /problems"))
    example = {"type": problem.uri, "title": problem.title, "status": problem.status, "detail": "…"}
    return render(request, "problem.html", problem=problem, example=json.dumps(example, ensure_ascii=False, indent=2))
