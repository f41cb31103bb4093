"""Private account reads: holdings and history, for the holder, the authority and auditors.

Each request is signed with the reader's registered Ed25519 key (RFC 9421 HTTP Message Signatures;
see `registry.accounts.signatures`). Nothing here writes: a read appends nothing to the log.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from registry.accounts import service
from registry.accounts.schemas import History, Holdings
from registry.accounts.signatures import SignedBy, message_of
from registry.deps import ConnDep
from registry.errors import problem_responses
from registry.public.api import Cursor, Limit
from registry.query import QUERY_ERRORS, StrictQuery

router = APIRouter(prefix="/v1/accounts", tags=["accounts"], dependencies=[StrictQuery], responses=QUERY_ERRORS)

ERRORS = problem_responses(400, 401, 403, 404, 422, 503)
_SIGNED = (
    " Sign the request (RFC 9421) over `@method`, `@authority` and `@target-uri` with a registered key of the "
    'holder, the authority or an auditor: `keyid` = the key id, `alg="ed25519"`, `tag="cdcer"`, a `created` '
    "time at most 5 minutes old. Unsigned or badly signed: 401 with `Accept-Signature`; signed by someone "
    "else: 403."
)


def signed_by(request: Request, conn: ConnDep) -> SignedBy:
    message = message_of(request.method, str(request.url), request.headers.items())
    return service.authenticate(conn, message)


Signer = Annotated[SignedBy, Depends(signed_by)]


@router.get(
    "/{account}/holdings",
    summary="The blocks an account holds now, and its balance",
    description="Held blocks oldest batch first, paged by cursor." + _SIGNED,
    responses=ERRORS,
)
def get_holdings(conn: ConnDep, signer: Signer, account: str, limit: Limit = 100, cursor: Cursor = None) -> Holdings:
    service.authorise(conn, signer, account)
    return service.holdings(conn, account, cursor=cursor, limit=limit)


@router.get(
    "/{account}/history",
    summary="Every movement of units into or out of an account, oldest first",
    description="Issuances to it, transfers in and out, its retirements, cancellations and claims." + _SIGNED,
    responses=ERRORS,
)
def get_history(conn: ConnDep, signer: Signer, account: str, limit: Limit = 100, cursor: Cursor = None) -> History:
    service.authorise(conn, signer, account)
    return service.history(conn, account, cursor=cursor, limit=limit)
