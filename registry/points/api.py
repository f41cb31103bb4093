"""The carbon points over HTTP: providers upload a batch's records; holders, the authority and auditors
read them with their proofs; anyone reads the rules, the scenes, the offers and each batch's attestation.

Private routes are signed requests (RFC 9421; see `registry.accounts.signatures`). An upload's signature
also covers the `Content-Digest` (RFC 9530, sha-256) of its body. Nothing here appends to the log: the
provider attests an uploaded batch with a signed `points.attest` through `POST /v1/transactions`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from ledger.storage.engine import read_transaction, write_transaction
from ledger.transactions import format_utc
from registry.accounts.api import Signer
from registry.accounts.signatures import RequestMessage, message_of
from registry.deps import ConnDep, EngineDep, SequencerDep
from registry.errors import NotFound, problem_responses
from registry.points import service
from registry.points.schemas import (
    AccountRecords,
    AttestationOut,
    BatchRecords,
    Discarded,
    OfferOut,
    PointAccountOut,
    PointsRuleOut,
    SceneOut,
    Uploaded,
)
from registry.public import repository as public_repository
from registry.public import service as public
from registry.public.api import Cursor, Limit
from registry.public.schemas import Page
from registry.query import QUERY_ERRORS, StrictQuery
from registry.transactions.service import read_body

router = APIRouter(prefix="/v1", tags=["points"], dependencies=[StrictQuery], responses=QUERY_ERRORS)

T = TypeVar("T", bound=BaseModel)

MAX_CHUNK_BYTES = 4 * 1024 * 1024
"""The largest upload body: 10,000 records of at most ~140 bytes each, with room for whitespace."""

BatchId = Annotated[
    str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$", description="the batch id its points.attest will carry")
]
Offset = Annotated[
    int, Query(ge=0, le=10**9, description="records already uploaded under the batch: where this chunk starts")
]
SceneState = Literal["applied", "evaluated", "approved", "rejected", "suspended", "revoked"]
OfferState = Literal["active", "withdrawn"]

WRITE_ERRORS = problem_responses(401, 403, 409, 413, 422, 503)
READ_ERRORS = problem_responses(401, 403, 404, 422, 503)
LIST_ERRORS = problem_responses(400, 422, 503)
DETAIL_ERRORS = problem_responses(404, 503)

_PROVIDER = (
    " Sign the request (RFC 9421) with a registered key of an active data provider: `keyid` = the key id, "
    '`alg="ed25519"`, `tag="cdcer"`, a `created` time at most 5 minutes old. Unsigned or badly signed: 401 '
    "with `Accept-Signature`; signed by a participant without the data_provider role: 403."
)
_DIGEST = (
    " Cover `@method`, `@authority`, `@target-uri` and `content-digest`, and send `Content-Digest: "
    "sha-256=:<base64 SHA-256 of the body>:` (RFC 9530); a digest that does not match the body is a 401."
)
_READ = (
    " Sign the request (RFC 9421) over `@method`, `@authority` and `@target-uri` with a registered key of {who}: "
    '`keyid` = the key id, `alg="ed25519"`, `tag="cdcer"`, a `created` time at most 5 minutes old. Unsigned or '
    "badly signed: 401 with `Accept-Signature`; signed by anyone else: 403."
)
_RECORDS_BODY: dict[str, Any] = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RecordsChunk"}}},
}


def _page(model: type[T], page: public.Page) -> Page[T]:
    return Page[model](items=[model.model_validate(row) for row in page.rows], next_cursor=page.next_cursor)  # type: ignore[valid-type]


# --- uploads (data providers) ----------------------------------------------------------------------------


@router.put(
    "/points/batches/{batch_id}/records",
    summary="Upload one chunk of a points batch's records, before its attestation",
    description=(
        'The body is `{"records": [{"account_id", "quantity", "subject"}, ...]}`: 1 to 10,000 records, '
        "appended at `offset` (the number uploaded so far; the answer's `uploaded` is the next chunk's offset). "
        "A wrong offset (a chunk lost or sent twice), an attested batch or another provider's batch id: 409, "
        "saying where to resume. Once uploaded, sign the batch's `points.attest` over their root."
    )
    + _PROVIDER
    + _DIGEST,
    openapi_extra={"requestBody": _RECORDS_BODY},
    responses=WRITE_ERRORS,
)
async def put_records(
    request: Request, engine: EngineDep, _writable: SequencerDep, batch_id: BatchId, offset: Offset
) -> Uploaded:
    raw = await read_body(
        request.stream(), declared_length=request.headers.get("content-length"), limit=MAX_CHUNK_BYTES
    )
    message = message_of(request.method, str(request.url), request.headers.items())
    return await run_in_threadpool(_upload, engine, message, raw, batch_id, offset)


def _upload(engine: Engine, message: RequestMessage, raw: bytes, batch_id: str, offset: int) -> Uploaded:
    # Signature and role first (401, 403), then the body (422), and only then the write lock (409).
    with read_transaction(engine) as conn:
        signer = service.authenticate_with_body(conn, message, raw)
        service.authorise_provider(conn, signer)
    chunk = service.parse_chunk(raw)
    with write_transaction(engine) as conn:
        return service.upload(
            conn,
            batch_id=batch_id,
            provider=signer.participant_id,
            offset=offset,
            chunk=chunk,
            now=format_utc(datetime.now(UTC)),
        )


@router.delete(
    "/points/batches/{batch_id}/records",
    summary="Discard an unattested upload, to start it again",
    description="Deletes every record the provider uploaded under the batch id. An attested batch, or no upload "
    "of this provider under that id: 409." + _PROVIDER,
    responses=WRITE_ERRORS,
)
def delete_records(engine: EngineDep, _writable: SequencerDep, signer: Signer, batch_id: BatchId) -> Discarded:
    with read_transaction(engine) as conn:
        service.authorise_provider(conn, signer)
    with write_transaction(engine) as conn:
        return service.discard(conn, batch_id=batch_id, provider=signer.participant_id)


# --- batches ---------------------------------------------------------------------------------------------


@router.get(
    "/points/batches/{batch_id}",
    summary="One attested points batch: its rule, day, count, total, root and what it awarded",
    description="Public, without its records. 404 until the provider attests the batch.",
    responses=DETAIL_ERRORS,
)
def get_batch(conn: ConnDep, batch_id: str) -> AttestationOut:
    return service.attestation(conn, batch_id)


@router.get(
    "/points/batches/{batch_id}/records",
    summary="Every record uploaded under a points batch, by position",
    description="Attested or still being uploaded (`attested`)."
    + _READ.format(who="the batch's provider, the authority or an auditor"),
    responses=READ_ERRORS,
)
def get_batch_records(conn: ConnDep, signer: Signer, batch_id: str) -> BatchRecords:
    return service.batch_records(conn, signer, batch_id)


# --- point accounts --------------------------------------------------------------------------------------


@router.get(
    "/points/accounts/{account_id}",
    summary="A point account's totals, its lots (oldest month first) and its redemptions",
    description=_READ.format(who="the account's operator, the authority or an auditor").lstrip(),
    responses=READ_ERRORS,
)
def get_account(conn: ConnDep, signer: Signer, account_id: str) -> PointAccountOut:
    row = service.authorise_account(conn, signer, account_id)
    return service.account(conn, row)


@router.get(
    "/points/accounts/{account_id}/records",
    summary="Every attested record of a point account, with its proof up to the batch's log entry",
    description=(
        "Each record with its batch, position, the batch's count and root, the record leaf's inclusion proof "
        "in the batch (`ledger.points_batch.verify_record`) and the attestation's log entry, whose inclusion "
        "in a checkpoint `GET /v1/log/proof` proves: record -> batch root -> entry -> checkpoint, offline."
    )
    + _READ.format(who="the account's operator, the authority or an auditor"),
    responses=READ_ERRORS,
)
def get_account_records(conn: ConnDep, signer: Signer, account_id: str) -> AccountRecords:
    service.authorise_account(conn, signer, account_id)
    return service.account_records(conn, account_id)


# --- public: rules, scenes, offers -----------------------------------------------------------------------


@router.get("/points/rules", summary="Points rules, every version", responses=LIST_ERRORS)
def list_rules(conn: ConnDep, limit: Limit = 50, cursor: Cursor = None) -> Page[PointsRuleOut]:
    return _page(PointsRuleOut, public.list_page(conn, "points_rules", where=[], cursor=cursor, limit=limit))


@router.get("/scenes", summary="Low-carbon scenes, in every state", responses=LIST_ERRORS)
def list_scenes(
    conn: ConnDep,
    state: SceneState | None = None,
    merchant: str | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[SceneOut]:
    where = public_repository.equal("scenes", state=state, merchant=merchant)
    return _page(SceneOut, public.list_page(conn, "scenes", where=where, cursor=cursor, limit=limit))


@router.get("/scenes/{scene_id}", summary="One scene", responses=DETAIL_ERRORS)
def get_scene(conn: ConnDep, scene_id: str) -> SceneOut:
    row = public_repository.get(conn, "scenes", [scene_id])
    if row is None:
        raise NotFound(f"no scene {scene_id!r} in the registry; list them at /v1/scenes")
    return SceneOut.model_validate(row)


@router.get("/offers", summary="Offers points can be redeemed for", responses=LIST_ERRORS)
def list_offers(
    conn: ConnDep,
    scene_id: str | None = None,
    state: OfferState | None = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[OfferOut]:
    where = public_repository.equal("offers", scene_id=scene_id, state=state)
    return _page(OfferOut, public.list_page(conn, "offers", where=where, cursor=cursor, limit=limit))


@router.get("/offers/{offer_id}", summary="One offer", responses=DETAIL_ERRORS)
def get_offer(conn: ConnDep, offer_id: str) -> OfferOut:
    row = public_repository.get(conn, "offers", [offer_id])
    if row is None:
        raise NotFound(f"no offer {offer_id!r} in the registry; list them at /v1/offers")
    return OfferOut.model_validate(row)
