"""Liveness: the service answers and its database can be read."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from registry.deps import ConnDep
from registry.errors import problem_responses
from registry.log import service

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    log_size: int


@router.get("/healthz", summary="The service is up and its log readable", responses=problem_responses(503))
def healthz(conn: ConnDep) -> Health:
    return Health(status="ok", log_size=service.log_size(conn))
