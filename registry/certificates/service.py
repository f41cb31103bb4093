"""The certificate rules: which record a certificate is for, and what an unknown id says."""

from __future__ import annotations

from sqlalchemy import Connection

from ledger.certificate import Certificate, CertificateKind, build_certificate
from registry.errors import NotFound

LISTINGS: dict[CertificateKind, str] = {"retirement": "/v1/retirements", "claim": "/v1/claims"}


def certificate(conn: Connection, *, kind: CertificateKind, record_id: str) -> Certificate:
    """The certificate of one retirement or claim, built from the log as it is now; NotFound for an unknown id."""
    found = build_certificate(conn, kind, record_id)
    if found is None:
        raise NotFound(
            f"no {kind} {record_id!r} in the registry, so no certificate; list them at {LISTINGS[kind]}",
            f"{kind}-not-found",
        )
    return found


def filename(certificate: Certificate) -> str:
    """The name a browser saves the certificate under."""
    return f"{certificate.id}.cdcer-certificate.json"
