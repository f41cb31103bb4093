"""The transparency log over HTTP: checkpoint, verifier key, entries, proofs and witness cosignatures (SPEC 5)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field

from ledger.encoding import b64encode
from ledger.storage.engine import write_transaction
from registry.deps import ConnDep, EngineDep
from registry.errors import problem_responses
from registry.log import cosignatures, service
from registry.query import QUERY_ERRORS, StrictQuery

router = APIRouter(prefix="/v1/log", tags=["log"], dependencies=[StrictQuery], responses=QUERY_ERRORS)

MAX_INDEX = 2**63 - 1  # the largest index the databases store
MAX_PAGE = 1000

Index = Annotated[int, Query(ge=0, le=MAX_INDEX)]


class LogEntry(BaseModel):
    index: int
    leaf: str = Field(description="the entry's exact bytes, base64")
    leaf_hash: str = Field(description="SHA-256(0x00 || leaf), base64")
    chain_hash: str = Field(description="SHA-256(previous chain hash || leaf hash), base64")


class EntriesPage(BaseModel):
    entries: list[LogEntry]
    next: int | None = Field(description="the start of the next page, or null after the last entry")


class InclusionProof(BaseModel):
    index: int
    size: int
    leaf_hash: str
    hashes: list[str]


class CosignatureSubmission(BaseModel):
    size: int = Field(ge=1, le=MAX_INDEX, description="the size of the signed checkpoint the witness cosigned")
    cosignature: str = Field(
        min_length=1,
        max_length=1000,
        description="the witness's cosignature/v1 note signature line, '— <witness name> <base64>'",
    )


class AcceptedCosignature(BaseModel):
    size: int
    witness: str
    timestamp: int = Field(description="the cosignature's timestamp, POSIX seconds")


class ConsistencyProof(BaseModel):
    old: int
    new: int
    hashes: list[str]


def _text(description: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}}


@router.get(
    "/checkpoint",
    response_class=PlainTextResponse,
    summary="The latest signed checkpoint (C2SP signed note), with its witness cosignatures",
    responses=_text("The signed checkpoint note, byte-exact") | problem_responses(404, 503),
)
def get_checkpoint(conn: ConnDep) -> Response:
    return PlainTextResponse(service.signed_checkpoint(conn))


@router.get(
    "/vkey",
    response_class=PlainTextResponse,
    summary="The verifier key of the registry's checkpoint signer",
    responses=_text("The verifier key, <name>+<key id>+<base64 key>") | problem_responses(404, 503),
)
def get_vkey(conn: ConnDep) -> Response:
    return PlainTextResponse(service.verifier_key(conn))


@router.get(
    "/entries",
    summary="Log entries in order, from index start",
    responses=problem_responses(422, 503),
)
def get_entries(
    conn: ConnDep,
    start: Index = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> EntriesPage:
    page = service.entries(conn, start=start, limit=limit)
    return EntriesPage(
        entries=[
            LogEntry(
                index=e.index,
                leaf=b64encode(e.data),
                leaf_hash=b64encode(e.leaf_hash),
                chain_hash=b64encode(e.chain_hash),
            )
            for e in page.entries
        ],
        next=page.next,
    )


@router.get(
    "/proof/inclusion",
    summary="The inclusion proof of entry index in the tree of size entries",
    responses=problem_responses(400, 404, 422, 503),
)
def get_inclusion_proof(conn: ConnDep, index: Index, size: Index) -> InclusionProof:
    leaf, hashes = service.inclusion(conn, index=index, size=size)
    return InclusionProof(index=index, size=size, leaf_hash=b64encode(leaf), hashes=[b64encode(h) for h in hashes])


@router.get(
    "/proof/consistency",
    summary="The consistency proof that the tree of old entries is a prefix of the tree of new entries",
    responses=problem_responses(400, 422, 503),
)
def get_consistency_proof(conn: ConnDep, old: Index, new: Index) -> ConsistencyProof:
    hashes = service.consistency(conn, old=old, new=new)
    return ConsistencyProof(old=old, new=new, hashes=[b64encode(h) for h in hashes])


@router.post(
    "/cosignatures",
    status_code=201,
    summary="Submit a registered witness's cosignature of a signed checkpoint (C2SP tlog-cosignature)",
    responses=problem_responses(400, 403, 404, 409, 422, 503),
)
def post_cosignature(engine: EngineDep, body: CosignatureSubmission) -> AcceptedCosignature:
    with write_transaction(engine) as conn:
        accepted = cosignatures.accept_cosignature(conn, size=body.size, line=body.cosignature)
    return AcceptedCosignature(size=accepted.size, witness=accepted.witness, timestamp=accepted.timestamp)
