"""The write path over HTTP: ``POST /v1/transactions`` appends one signed transaction."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, Response
from fastapi import status as http

from registry.deps import SequencerDep, SettingsDep
from registry.errors import problem_responses
from registry.transactions import service
from registry.transactions.errors import REFUSAL_STATUSES
from registry.transactions.schemas import SCHEMA_REF, ReceiptOut

router = APIRouter(prefix="/v1", tags=["transactions"])

APPENDED_KIND = "cdcer_appended_kind"
"""Where the route leaves the kind of the transaction it appended, in the request's state (for the
metrics, which then need not parse the receipt)."""


async def get_admission(request: Request) -> service.Admission:
    """The app's gate before its sequencer (`service.Admission`)."""
    return cast(service.Admission, request.app.state.admission)


AdmissionDep = Annotated[service.Admission, Depends(get_admission)]

_REQUEST_BODY = {
    "required": True,
    "description": "One signed transaction, as the actor signed it",
    "content": {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model="SignedTransactionIn")}}},
}

_RESPONSES: dict[int | str, dict[str, Any]] = {
    http.HTTP_200_OK: {"model": ReceiptOut, "description": "Already in the log: the original receipt"},
    http.HTTP_201_CREATED: {"description": "Appended: the receipt"},
    **problem_responses(400, *REFUSAL_STATUSES, 413, 503),
}


@router.post(
    "/transactions",
    status_code=http.HTTP_201_CREATED,
    summary="Append one signed transaction to the log and return its receipt",
    description=(
        'The body is `{"body": <transaction body>, "signature": <base64>}`; the registry verifies the '
        "signature over the body's RFC 8785 canonical bytes, the actor's key and role and every rule, then "
        "appends it under a signed checkpoint. 201: appended. 200: this exact transaction was already in "
        "the log (nothing appended, the original entry's receipt). A refusal is a problem whose `type` ends "
        "with the rule's code (e.g. `insufficient_units`). The cheap checks come first (size, JSON, schema, "
        "origin, time, nonce, the actor's key and role); the signature is verified only after them, and only "
        "a transaction whose signature verifies waits for the log's write lock."
    ),
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses=_RESPONSES,
    response_model=ReceiptOut,
)
async def post_transaction(
    request: Request, settings: SettingsDep, sequencer: SequencerDep, admission: AdmissionDep
) -> Response:
    # Cheapest first (see `service`): size, JSON, schema; then one read and the signature; then the write lock.
    raw = await service.read_body(
        request.stream(), declared_length=request.headers.get("content-length"), limit=settings.max_body_bytes
    )
    tx = service.parse_signed_transaction(raw)
    verified_by = await service.admit(admission, tx)
    receipt = await service.append(sequencer, tx, verified_by=verified_by)
    if receipt.outcome is not None and not receipt.duplicate:
        setattr(request.state, APPENDED_KIND, receipt.outcome.kind)  # for the metrics
    # Serialised once, here: the model is built from our own receipt, so FastAPI need not validate it again.
    return Response(
        ReceiptOut.of(receipt).model_dump_json(),
        status_code=http.HTTP_200_OK if receipt.duplicate else http.HTTP_201_CREATED,
        media_type="application/json",
    )
