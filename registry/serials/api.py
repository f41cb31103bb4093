"""``GET /v1/serials/{serial}``: the public history of any serial or serial block."""

from __future__ import annotations

from fastapi import APIRouter

from registry.deps import ConnDep
from registry.errors import problem_responses
from registry.serials import service
from registry.serials.schemas import SerialHistory

router = APIRouter(prefix="/v1", tags=["public"])


@router.get(
    "/serials/{serial}",
    summary="The history of a serial or serial block: every lifecycle event of the units, oldest first",
    description=(
        "`serial` is one unit (`CDCER-P0007-2023-001-000042`) or a block "
        "(`CDCER-P0007-2023-001-000001-000500`). The answer names the batch, the blocks that hold the "
        "serials now (held, retired or cancelled, and by whom) and every entry that issued, transferred, "
        "retired, cancelled or claimed any of them, each with its log entry index so it can be proven."
    ),
    responses=problem_responses(400, 404, 503),
)
def get_serial(conn: ConnDep, serial: str) -> SerialHistory:
    return service.history(conn, serial)
