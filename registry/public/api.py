"""The public registry over HTTP: read-only, no key; every list pages by an opaque cursor (SPEC section 2)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Query
from pydantic import BaseModel

from ledger.transactions import CancellationReason, EventKind, RetirementPurpose, Role
from registry.deps import ConnDep
from registry.errors import problem_responses
from registry.public import repository, service
from registry.public.schemas import (
    BatchDetail,
    BatchOut,
    BlockOut,
    CancellationOut,
    ClaimOut,
    EventOut,
    KeyOut,
    MethodologyOut,
    MethodologyStatus,
    Page,
    ParticipantDetail,
    ParticipantOut,
    ParticipantStatus,
    ProjectDetail,
    ProjectOut,
    ProjectState,
    ReportOut,
    RetirementOut,
    Stats,
)
from registry.query import QUERY_ERRORS, StrictQuery

# Every route refuses a query parameter it does not declare (422), rather than answer as if unfiltered.
router = APIRouter(prefix="/v1", tags=["public"], dependencies=[StrictQuery], responses=QUERY_ERRORS)

MAX_PAGE = 500
T = TypeVar("T", bound=BaseModel)

Limit = Annotated[int, Query(ge=1, le=MAX_PAGE, description="items per page")]
Cursor = Annotated[str | None, Query(description="the next_cursor of the previous page; omit for the first")]
Vintage = Annotated[int | None, Query(ge=0, le=9999, description="batches of this vintage (a year)")]
Since = Annotated[datetime | None, Query(description="from this time (inclusive; UTC unless a zone is given)")]
Until = Annotated[datetime | None, Query(description="before this time (exclusive; UTC unless a zone is given)")]

LIST_ERRORS = problem_responses(400, 422, 503)
DETAIL_ERRORS = problem_responses(404, 503)


def _page(model: type[T], page: service.Page) -> Page[T]:
    return Page[model](items=[model.model_validate(row) for row in page.rows], next_cursor=page.next_cursor)  # type: ignore[valid-type]


# --- participants ---------------------------------------------------------------------------------------


@router.get("/participants", summary="Participants, with their roles and status", responses=LIST_ERRORS)
def list_participants(
    conn: ConnDep,
    role: Annotated[Role | None, Query(description="participants holding this role")] = None,
    status: ParticipantStatus | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ParticipantOut]:
    where = repository.equal("participants", status=status)
    if role is not None:
        where.append(repository.in_json_list("participants", "roles", role.value))
    return _page(ParticipantOut, service.list_page(conn, "participants", where=where, cursor=cursor, limit=limit))


@router.get(
    "/participants/{participant_id}",
    summary="One participant, with its public keys (added and revoked at which log entries)",
    responses=DETAIL_ERRORS,
)
def get_participant(conn: ConnDep, participant_id: str) -> ParticipantDetail:
    row = service.one(conn, "participants", [participant_id], what="participant", listing="/v1/participants")
    keys = repository.children(conn, "participant_keys", "participant_id", participant_id)
    return ParticipantDetail.model_validate({**row, "keys": [KeyOut.model_validate(k) for k in keys]})


# --- methodologies --------------------------------------------------------------------------------------


@router.get("/methodologies", summary="Published methodologies (every version)", responses=LIST_ERRORS)
def list_methodologies(
    conn: ConnDep, status: MethodologyStatus | None = None, limit: Limit = 50, cursor: Cursor = None
) -> Page[MethodologyOut]:
    where = repository.equal("methodologies", status=status)
    return _page(MethodologyOut, service.list_page(conn, "methodologies", where=where, cursor=cursor, limit=limit))


@router.get("/methodologies/{code}/{version}", summary="One version of a methodology", responses=DETAIL_ERRORS)
def get_methodology(conn: ConnDep, code: str, version: str) -> MethodologyOut:
    row = service.one(conn, "methodologies", [code, version], what="methodology", listing="/v1/methodologies")
    return MethodologyOut.model_validate(row)


# --- projects, reports and batches ----------------------------------------------------------------------


@router.get("/projects", summary="Projects, in every state", responses=LIST_ERRORS)
def list_projects(
    conn: ConnDep,
    methodology: Annotated[str | None, Query(description="methodology code")] = None,
    district: str | None = None,
    state: ProjectState | None = None,
    owner: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ProjectOut]:
    where = repository.equal("projects", methodology_code=methodology, district=district, state=state, owner=owner)
    return _page(ProjectOut, service.list_page(conn, "projects", where=where, cursor=cursor, limit=limit))


@router.get(
    "/projects/{project_id}", summary="One project, with its monitoring reports and batches", responses=DETAIL_ERRORS
)
def get_project(conn: ConnDep, project_id: str) -> ProjectDetail:
    row = service.one(conn, "projects", [project_id], what="project", listing="/v1/projects")
    reports = repository.children(conn, "monitoring_reports", "project_id", project_id)
    batches = repository.children(conn, "batches", "project_id", project_id)
    return ProjectDetail.model_validate(
        {
            **row,
            "reports": [ReportOut.model_validate(r) for r in reports],
            "batches": [BatchOut.model_validate(b) for b in batches],
        }
    )


@router.get("/batches", summary="Issued batches", responses=LIST_ERRORS)
def list_batches(
    conn: ConnDep,
    project: str | None = None,
    vintage: Vintage = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[BatchOut]:
    where = repository.equal("batches", project_id=project, vintage=vintage)
    return _page(BatchOut, service.list_page(conn, "batches", where=where, cursor=cursor, limit=limit))


@router.get(
    "/batches/{batch_id}",
    summary="One batch, with its current serial blocks (held, retired or cancelled, and by whom)",
    responses=DETAIL_ERRORS,
)
def get_batch(conn: ConnDep, batch_id: str) -> BatchDetail:
    row = service.one(conn, "batches", [batch_id], what="batch", listing="/v1/batches")
    blocks = repository.children(conn, "unit_blocks", "batch_id", batch_id)
    return BatchDetail.model_validate({**row, "blocks": [BlockOut.of(b) for b in blocks]})


# --- retirements and cancellations (never mixed) --------------------------------------------------------


@router.get("/retirements", summary="Retirements (units retired by their holders)", responses=LIST_ERRORS)
def list_retirements(
    conn: ConnDep,
    project: Annotated[str | None, Query(description="retirements of this project's units")] = None,
    purpose: RetirementPurpose | None = None,
    holder: str | None = None,
    event: str | None = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[RetirementOut]:
    where = repository.equal(
        "retirements", purpose=None if purpose is None else purpose.value, holder=holder, event_id=event
    )
    where += service.time_window("retirements", "retired_time", since, until)
    if project is not None:
        where.append(repository.blocks_of_project("retirements", project))
    return _page(RetirementOut, service.list_page(conn, "retirements", where=where, cursor=cursor, limit=limit))


@router.get("/retirements/{retirement_id}", summary="One retirement", responses=DETAIL_ERRORS)
def get_retirement(conn: ConnDep, retirement_id: str) -> RetirementOut:
    row = service.one(conn, "retirements", [retirement_id], what="retirement", listing="/v1/retirements")
    return RetirementOut.model_validate(row)


@router.get("/cancellations", summary="Cancellations (units removed by the authority)", responses=LIST_ERRORS)
def list_cancellations(
    conn: ConnDep,
    project: Annotated[str | None, Query(description="cancellations of this project's units")] = None,
    reason_code: CancellationReason | None = None,
    holder: str | None = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[CancellationOut]:
    where = repository.equal(
        "cancellations", reason_code=None if reason_code is None else reason_code.value, holder=holder
    )
    where += service.time_window("cancellations", "cancelled_time", since, until)
    if project is not None:
        where.append(repository.blocks_of_project("cancellations", project))
    return _page(CancellationOut, service.list_page(conn, "cancellations", where=where, cursor=cursor, limit=limit))


@router.get("/cancellations/{cancellation_id}", summary="One cancellation", responses=DETAIL_ERRORS)
def get_cancellation(conn: ConnDep, cancellation_id: str) -> CancellationOut:
    row = service.one(conn, "cancellations", [cancellation_id], what="cancellation", listing="/v1/cancellations")
    return CancellationOut.model_validate(row)


# --- events and claims ----------------------------------------------------------------------------------


@router.get("/events", summary="Events and meetings, with their footprint", responses=LIST_ERRORS)
def list_events(
    conn: ConnDep,
    organiser: str | None = None,
    kind: EventKind | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[EventOut]:
    where = repository.equal("events", organiser=organiser, kind=None if kind is None else kind.value)
    return _page(EventOut, service.list_page(conn, "events", where=where, cursor=cursor, limit=limit))


@router.get(
    "/events/{event_id}",
    summary="One event: its footprint by source, the units retired for it and its claim",
    responses=DETAIL_ERRORS,
)
def get_event(conn: ConnDep, event_id: str) -> EventOut:
    return EventOut.model_validate(service.one(conn, "events", [event_id], what="event", listing="/v1/events"))


@router.get("/claims", summary="Carbon-neutral claims", responses=LIST_ERRORS)
def list_claims(
    conn: ConnDep,
    event: str | None = None,
    organiser: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[ClaimOut]:
    where = repository.equal("claims", event_id=event, organiser=organiser)
    return _page(ClaimOut, service.list_page(conn, "claims", where=where, cursor=cursor, limit=limit))


@router.get(
    "/claims/{claim_id}",
    summary="One claim: the footprint and the retired blocks that cover it",
    responses=DETAIL_ERRORS,
)
def get_claim(conn: ConnDep, claim_id: str) -> ClaimOut:
    return ClaimOut.model_validate(service.one(conn, "claims", [claim_id], what="claim", listing="/v1/claims"))


# --- totals ---------------------------------------------------------------------------------------------


@router.get("/stats", summary="Registry-wide totals", responses=problem_responses(503))
def get_stats(conn: ConnDep) -> Stats:
    return Stats.model_validate(repository.stats(conn))
