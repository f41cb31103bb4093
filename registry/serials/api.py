"""``GET /v1/serials/{serial}``: the public history of any serial or serial block."""

from __future__ import annotations

from fastapi import APIRouter

from registry.deps import ConnDep
from registry.errors import problem_responses
from registry.public.api import Cursor, Limit
from registry.query import QUERY_ERRORS, StrictQuery
from registry.serials import service
from registry.serials.schemas import SerialHistory

router = APIRouter(prefix="/v1", tags=["public"], dependencies=[StrictQuery], responses=QUERY_ERRORS)


@router.get(
    "/serials/{serial}",
    summary="The history of a serial or serial block: the lifecycle events of the units, oldest first, paged",
    description=(
        "`serial` is one unit (`CDCER-P0007-2023-001-000042`) or a block "
        "(`CDCER-P0007-2023-001-000001-000500`). The answer names the batch, the blocks that hold the "
        "serials now (held, retired or cancelled, and by whom) and every entry that issued, transferred, "
        "retired, cancelled or claimed any of them, each with its log entry index so it can be proven. The "
        "history pages by cursor: pass a page's `next_cursor` as `cursor` for the next."
    ),
    responses=problem_responses(400, 404, 422, 503),
)
def get_serial(conn: ConnDep, serial: str, limit: Limit = 50, cursor: Cursor = None) -> SerialHistory:
    return service.history(conn, serial, cursor=cursor, limit=limit)
