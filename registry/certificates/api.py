"""Certificates over HTTP: a retirement's or a claim's proof bundle, as a JSON download (SPEC section 4)."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from ledger.certificate import Certificate, ClaimCertificate, RetirementCertificate
from registry.certificates import service
from registry.deps import ConnDep
from registry.errors import problem_responses

router = APIRouter(prefix="/v1", tags=["certificates"])


async def get_certificate_cache(request: Request) -> service.CertificateCache:
    """The app's built certificates (`registry.certificates.cache`)."""
    return cast(service.CertificateCache, request.app.state.certificates)


CertificatesDep = Annotated[service.CertificateCache, Depends(get_certificate_cache)]

_ABOUT = (
    "A JSON proof bundle (format `cdcer-certificate/1`): the log entries it rests on with their inclusion "
    "proofs, the latest signed checkpoint and the registry's statement. It verifies offline with nothing but "
    "the registry's verifier key (`GET /v1/log/vkey`): `cdcer certificate verify FILE --vkey VKEY`."
)


def _responses(model: type[Certificate]) -> dict[int | str, dict[str, Any]]:
    return {200: {"model": model, "description": "The certificate, as a download"}} | problem_responses(404, 503)


def _download(certificate: Certificate) -> Response:
    return Response(
        certificate.to_bytes(),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{service.filename(certificate)}"'},
    )


@router.get(
    "/retirements/{retirement_id}/certificate",
    response_class=JSONResponse,
    summary="The certificate of one retirement, verifiable offline",
    description=_ABOUT,
    responses=_responses(RetirementCertificate),
)
def get_retirement_certificate(conn: ConnDep, cache: CertificatesDep, retirement_id: str) -> Response:
    return _download(service.certificate(conn, kind="retirement", record_id=retirement_id, cache=cache))


@router.get(
    "/claims/{claim_id}/certificate",
    response_class=JSONResponse,
    summary="The certificate of one carbon-neutral claim, verifiable offline",
    description=_ABOUT,
    responses=_responses(ClaimCertificate),
)
def get_claim_certificate(conn: ConnDep, cache: CertificatesDep, claim_id: str) -> Response:
    return _download(service.certificate(conn, kind="claim", record_id=claim_id, cache=cache))
