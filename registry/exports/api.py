"""Exports over HTTP: ``GET /v1/exports/{issuances,retirements,cancellations}.{csv,jsonl}``, streamed.

The filters are the public lists' (`registry.public.api`); they are checked before the first byte is
sent, so a bad value is a 400/422 problem, never a truncated file. Retirements and cancellations are
separate exports with separate columns: a file never mixes them.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine
from starlette.background import BackgroundTask

from ledger.transactions import CancellationReason, RetirementPurpose
from registry.deps import EngineDep
from registry.errors import BadRequest, problem_responses
from registry.exports import repository as exports_repository
from registry.exports import service
from registry.exports.service import CANCELLATIONS, ISSUANCES, RETIREMENTS, Export, ExportFormat
from registry.public import repository
from registry.public import service as public_service
from registry.public.api import Since, Until, Vintage
from registry.public.repository import Condition
from registry.query import QUERY_ERRORS, StrictQuery

router = APIRouter(prefix="/v1/exports", tags=["exports"], dependencies=[StrictQuery], responses=QUERY_ERRORS)

Format = Annotated[ExportFormat, Path(description="csv (RFC 4180, UTF-8, header row) or jsonl (JSON Lines)")]

LOG_SIZE_HEADER = "X-CDCER-Log-Size"

Bom = Annotated[
    bool,
    Query(
        description="CSV only: start the file with a UTF-8 byte order mark (U+FEFF, bytes EF BB BF) so that "
        "Excel reads it as UTF-8 and shows Chinese text; off by default (a jsonl export refuses it, 400)"
    ),
]

_FORMATS_DOC = (
    " CSV is `text/csv; charset=utf-8` (RFC 4180, a header row, CRLF, null as an empty field, serial blocks "
    "joined by `;`, text that a spreadsheet would run as a formula (it starts with `=`, `+`, `-`, `@`, their "
    "fullwidth forms or whitespace) prefixed with `'`; with `bom=true`, a UTF-8 byte order mark first, "
    "for Excel); JSON Lines is "
    "`application/x-ndjson` (one object per line, exact values). The whole file is read from one snapshot "
    f"of the registry; the `{LOG_SIZE_HEADER}` header and the file name give its log size."
)

EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The export, streamed as an attachment",
        "content": {"text/csv": {"schema": {"type": "string"}}, "application/x-ndjson": {"schema": {"type": "string"}}},
        "headers": {
            LOG_SIZE_HEADER: {"description": "the log size of the snapshot exported", "schema": {"type": "integer"}}
        },
    },
    **problem_responses(400, 422, 503),
}


def _stream(
    engine: Engine, export: Export, fmt: ExportFormat, where: list[Condition], *, bom: bool
) -> StreamingResponse:
    if bom and fmt is not ExportFormat.CSV:
        raise BadRequest(
            f"bom=true is for CSV exports only (JSON Lines never starts with a byte order mark); ask for "
            f"/v1/exports/{export.name}.csv?bom=true, or leave bom out",
            "bad-request",
        )
    stream = service.ExportStream(engine, export, fmt, where=where, bom=bom)
    return StreamingResponse(
        stream,
        media_type=fmt.media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{stream.filename}"',
            LOG_SIZE_HEADER: str(stream.log_size),
        },
        # Ends the snapshot's transaction even if the client left before the stream began.
        background=BackgroundTask(stream.close),
    )


@router.get(
    "/issuances.{format}",
    summary="Every issued batch, with its project, methodology and serial block",
    description="One row per batch: the units an issuance created, as issued (not as held today)." + _FORMATS_DOC,
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
)
def export_issuances(
    engine: EngineDep,
    format: Format,
    project: Annotated[str | None, Query(description="batches of this project")] = None,
    methodology: Annotated[str | None, Query(description="batches of projects under this methodology code")] = None,
    vintage: Vintage = None,
    since: Since = None,
    until: Until = None,
    bom: Bom = False,
) -> StreamingResponse:
    where = repository.equal("batches", project_id=project, vintage=vintage)
    where += public_service.time_window("batches", "issued_time", since, until)
    if methodology is not None:
        where.append(exports_repository.batches_under_methodology(methodology))
    return _stream(engine, ISSUANCES, format, where, bom=bom)


@router.get(
    "/retirements.{format}",
    summary="Every retirement (units retired by their holders; never a cancellation)",
    description="One row per retirement, with its purpose, beneficiary, reason, event and serial blocks."
    + _FORMATS_DOC,
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
)
def export_retirements(
    engine: EngineDep,
    format: Format,
    project: Annotated[str | None, Query(description="retirements of this project's units")] = None,
    purpose: RetirementPurpose | None = None,
    holder: str | None = None,
    event: str | None = None,
    since: Since = None,
    until: Until = None,
    bom: Bom = False,
) -> StreamingResponse:
    where = repository.equal(
        "retirements", purpose=None if purpose is None else purpose.value, holder=holder, event_id=event
    )
    where += public_service.time_window("retirements", "retired_time", since, until)
    if project is not None:
        where.append(repository.blocks_of_project("retirements", project))
    return _stream(engine, RETIREMENTS, format, where, bom=bom)


@router.get(
    "/cancellations.{format}",
    summary="Every cancellation (units removed by the authority; never a retirement)",
    description="One row per cancellation, with its reason code, reason and serial blocks." + _FORMATS_DOC,
    response_class=StreamingResponse,
    responses=EXPORT_RESPONSES,
)
def export_cancellations(
    engine: EngineDep,
    format: Format,
    project: Annotated[str | None, Query(description="cancellations of this project's units")] = None,
    reason_code: CancellationReason | None = None,
    holder: str | None = None,
    since: Since = None,
    until: Until = None,
    bom: Bom = False,
) -> StreamingResponse:
    where = repository.equal(
        "cancellations", reason_code=None if reason_code is None else reason_code.value, holder=holder
    )
    where += public_service.time_window("cancellations", "cancelled_time", since, until)
    if project is not None:
        where.append(repository.blocks_of_project("cancellations", project))
    return _stream(engine, CANCELLATIONS, format, where, bom=bom)
