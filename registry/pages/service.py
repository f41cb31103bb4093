"""What the public pages show, gathered from the projections and the log; no HTML here.

A claim's or a retirement's page verification is the offline check any holder of the certificate can run
(`ledger.certificate.verify_certificate`), run by the registry on a certificate built from its database
as it is now, against its latest signed checkpoint and the verifier key its genesis recorded. A damaged
entry, a missing proof node or a checkpoint that does not verify makes it say "not verified", with the
reason, instead of failing the page. Like the certificate it checks, the verdict is kept until the next
checkpoint or cosignature (`registry.certificates.cache`); the page says when it was reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from sqlalchemy import Connection, Integer, cast, func, select

from ledger.certificate import Certificate, CertificateKind, VerifiedCertificate, verify_certificate
from ledger.checkpoint import open_checkpoint
from ledger.errors import LedgerError
from ledger.note import NoteSignature, NoteVerifier
from ledger.storage import store
from registry.certificates import service as certificates
from registry.certificates.cache import LruCache
from registry.errors import NotFound
from registry.log import service as log_service
from registry.pages import chart
from registry.public import repository


def activity(conn: Connection) -> chart.Series:
    """Units issued per vintage and retired per the year they were for, summed per year in SQL.

    Log times would put a whole history into the days it was recorded in (a registry migrated or a demo
    built in one afternoon shows one bar), so the chart uses the years the transactions name. Issuance is
    by vintage. A retirement is for its organisation's reporting `year`, or for the year its event ended;
    an individual's or a voluntary retirement names no year, and counts in the year it was made.
    """
    batches, retirements, events = (repository.table(name) for name in ("batches", "retirements", "events"))
    issued = conn.execute(select(batches.c.vintage, func.sum(batches.c.quantity)).group_by(batches.c.vintage))
    year = func.coalesce(
        retirements.c.year,
        cast(func.substr(events.c.end_date, 1, 4), Integer),
        cast(func.substr(retirements.c.retired_time, 1, 4), Integer),
    )
    retired = conn.execute(
        select(year, func.sum(retirements.c.quantity))
        .select_from(retirements.outerjoin(events, events.c.id == retirements.c.event_id))
        .group_by(year)
    )
    return chart.series(
        [(int(vintage), int(total)) for vintage, total in issued],
        [(int(label), int(total)) for label, total in retired],
    )


@dataclass(frozen=True, slots=True)
class Verification:
    """The outcome of checking a certificate now: `verified` with the checkpoint, or the reason it is not."""

    checked_at: datetime
    certificate: Certificate | None
    verified: VerifiedCertificate | None
    reason: str | None


VerificationCache = LruCache[tuple[CertificateKind, str, int, int, str], "Verification"]
"""Verdicts by (kind, record id, checkpoint size, cosignatures, verifier key)."""


def verify_record(
    conn: Connection,
    *,
    kind: CertificateKind,
    record_id: str,
    certificates_cache: certificates.CertificateCache,
    verifications: VerificationCache,
) -> Verification:
    """The certificate of retirement or claim `record_id` as of the latest checkpoint, verified with the
    registry's key."""
    now = datetime.now(UTC)
    try:
        vkey = store.get_meta(conn, "vkey")
        if vkey is None:
            return Verification(now, None, None, "the registry has no verifier key (it has not been founded)")

        def check() -> Verification | None:
            found = certificates.find(conn, kind=kind, record_id=record_id, cache=certificates_cache)
            if found is None:
                return None
            try:
                return Verification(datetime.now(UTC), found, verify_certificate(found.to_bytes(), vkey), None)
            except LedgerError as exc:
                return Verification(datetime.now(UTC), found, None, str(exc))

        key = certificates.checkpoint_key(conn)
        verification = check() if key is None else verifications.get_or_build((kind, record_id, *key, vkey), check)
    except LedgerError as exc:  # the certificate could not be built (a damaged log)
        return Verification(now, None, None, str(exc))
    if verification is None:
        return Verification(now, None, None, f"no {kind} {record_id!r}")
    return verification


PUBLIC_RECORD_ROWS = 100
"""Rows of each kind a participant's page lists; beyond them it links to the API's filtered list."""


@dataclass(frozen=True, slots=True)
class Rows:
    rows: list[repository.Row]
    more: str | None
    """The API's list of all of them, when there are more than the page shows."""


@dataclass(frozen=True, slots=True)
class PublicRecord:
    """What a participant did in public: projects owned and validated, events organised, retirements made."""

    projects: Rows
    validated: Rows
    events: Rows
    retirements: Rows


def public_record(conn: Connection, participant_id: str) -> PublicRecord:
    """`participant_id`'s public record, each kind in primary-key order, at most `PUBLIC_RECORD_ROWS` of each."""

    def rows(table: str, column: str, api: str | None) -> Rows:
        where = repository.equal(table, **{column: participant_id})
        found = repository.page(conn, table, where=where, after=None, limit=PUBLIC_RECORD_ROWS + 1)
        more = None if len(found) <= PUBLIC_RECORD_ROWS else api
        return Rows(found[:PUBLIC_RECORD_ROWS], more)

    quoted = quote(participant_id, safe="")
    return PublicRecord(
        projects=rows("projects", "owner", f"/v1/projects?owner={quoted}"),
        validated=rows("projects", "validator", None),
        events=rows("events", "organiser", f"/v1/events?organiser={quoted}"),
        retirements=rows("retirements", "holder", f"/v1/retirements?holder={quoted}"),
    )


@dataclass(frozen=True, slots=True)
class SignatureView:
    name: str
    key_id: str
    is_registry: bool


@dataclass(frozen=True, slots=True)
class CheckpointView:
    """The latest signed checkpoint as a page shows it; `problem` says why it did not verify."""

    note: str
    origin: str
    size: int
    root_hash: str
    vkey: str
    signatures: tuple[SignatureView, ...]
    problem: str | None


def latest_checkpoint(conn: Connection) -> CheckpointView | None:
    """The latest checkpoint with its cosignatures, verified with the registry's key; None before any."""
    try:
        note = log_service.signed_checkpoint(conn)
    except NotFound:  # an empty log has no checkpoint yet
        return None
    vkey = store.get_meta(conn, "vkey") or ""
    text = note.decode("utf-8", errors="replace")
    try:
        verifier = NoteVerifier.from_vkey(vkey)
        signed = open_checkpoint(note, verifier)
    except LedgerError as exc:
        return CheckpointView(text, "", 0, "", vkey, (), str(exc))
    return CheckpointView(
        note=text,
        origin=signed.checkpoint.origin,
        size=signed.checkpoint.size,
        root_hash=signed.checkpoint.root_hash.hex(),
        vkey=vkey,
        signatures=tuple(_signature(s, verifier) for s in signed.note.signatures),
        problem=None,
    )


def _signature(signature: NoteSignature, registry: NoteVerifier) -> SignatureView:
    is_registry = signature.name == registry.name and signature.key_id == registry.key_id
    return SignatureView(signature.name, signature.key_id.hex(), is_registry)
