"""The certificate rules: which record a certificate is for, what an unknown id says, and when one is rebuilt."""

from __future__ import annotations

from sqlalchemy import Connection

from ledger.certificate import Certificate, CertificateKind, build_certificate
from ledger.storage import store
from registry.certificates.cache import LruCache
from registry.errors import NotFound

LISTINGS: dict[CertificateKind, str] = {"retirement": "/v1/retirements", "claim": "/v1/claims"}

CheckpointKey = tuple[int, int]
"""The latest checkpoint's size and how many cosignatures it has: what a certificate built now rests on."""

CertificateCache = LruCache[tuple[CertificateKind, str, int, int], Certificate]
"""Built certificates by (kind, record id, checkpoint size, cosignatures)."""


def checkpoint_key(conn: Connection) -> CheckpointKey | None:
    """What a certificate built in this snapshot rests on; None before the first checkpoint."""
    latest = store.latest_checkpoint(conn)
    if latest is None:
        return None
    return latest.size, len(store.cosignature_lines(conn, latest.size))


def find(conn: Connection, *, kind: CertificateKind, record_id: str, cache: CertificateCache) -> Certificate | None:
    """The certificate of one retirement or claim as of the latest checkpoint (built once per checkpoint and
    cosignature); None for an unknown id, which is not cached (unknown ids cost little and are endless)."""
    key = checkpoint_key(conn)
    if key is None:
        return build_certificate(conn, kind, record_id)  # an empty log, or a damaged one: says which
    return cache.get_or_build((kind, record_id, *key), lambda: build_certificate(conn, kind, record_id))


def certificate(conn: Connection, *, kind: CertificateKind, record_id: str, cache: CertificateCache) -> Certificate:
    """The certificate of one retirement or claim, as of the latest checkpoint; NotFound for an unknown id."""
    found = find(conn, kind=kind, record_id=record_id, cache=cache)
    if found is None:
        raise NotFound(
            f"no {kind} {record_id!r} in the registry, so no certificate; list them at {LISTINGS[kind]}",
            f"{kind}-not-found",
        )
    return found


def filename(certificate: Certificate) -> str:
    """The name a browser saves the certificate under."""
    return f"{certificate.id}.cdcer-certificate.json"
