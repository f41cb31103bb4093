"""Building certificates from the database: the entries a retirement or claim rests on, with proofs.

The only part of `ledger.certificate` that reads storage (SQLAlchemy); the bundle it writes is checked
offline by `ledger.certificate.verify`, which never touches a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import Connection

from ledger.certificate.format import (
    AUTHORITY_KINDS,
    CERTIFICATE_FORMAT,
    ENTRY_ROLES,
    BatchStatement,
    Certificate,
    CertificateEntry,
    CertificateKind,
    ClaimCertificate,
    ClaimStatement,
    EventStatement,
    RetirementCertificate,
    RetirementFacts,
    RetirementStatement,
)
from ledger.encoding import b64encode
from ledger.errors import (
    EncodingError,
    IntegrityError,
)
from ledger.log import Entry, StoredEntry, decode_entry
from ledger.merkle import inclusion_proofs
from ledger.note import add_signatures, parse_signature_line
from ledger.serials import parse_block
from ledger.state import Batch, Claim, Event, Key, Participant, Report, Retirement
from ledger.storage import store
from ledger.transactions import (
    FootprintStage,
    RegistryGenesis,
    TransactionBody,
)

_R = TypeVar("_R")


# --- building ------------------------------------------------------------------------------------------


def build_certificate(conn: Connection, kind: CertificateKind, record_id: str) -> Certificate | None:
    """The certificate of retirement or claim `record_id`, from the database; None if there is no such record.

    Reads the record's projection row, the entries it rests on (see the module docstring), the
    latest signed checkpoint with its cosignatures, and the inclusion proofs into it. Raises
    `IntegrityError` if the stored log lacks an entry the projections name.
    """
    builder = _Builder(conn)
    statement: RetirementStatement | ClaimStatement
    if kind == "retirement":
        retirement = store.get_record(conn, Retirement, (record_id,))
        if retirement is None:
            return None
        facts = builder.retirement(retirement)
        statement = RetirementStatement(**facts.model_dump(), batches=builder.batches(retirement.blocks))
    elif kind == "claim":
        claim = store.get_record(conn, Claim, (record_id,))
        if claim is None:
            return None
        statement = builder.claim(claim)
    else:
        raise ValueError(f"certificate kind must be 'retirement' or 'claim', not {kind!r}")
    builder.add_provenance()
    return builder.bundle(kind, record_id, statement)


class _Builder:
    """Collects the entries a certificate needs, reading the database as it goes."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.entries: dict[int, Entry] = {}
        self.data: dict[int, bytes] = {}
        self.bodies: dict[int, TransactionBody] = {}

    def need(self, *indexes: int) -> None:
        missing = [i for i in indexes if i not in self.entries]
        found = store.read_entries_at(self.conn, missing)
        for index in missing:
            stored = found.get(index)
            if stored is None:
                raise IntegrityError("a certificate needs this entry, but the log does not have it", index=index)
            try:
                entry = decode_entry(stored.data, index=index)
                self.bodies[index] = entry.body()
            except EncodingError as exc:
                raise IntegrityError(str(exc), index=index) from None
            self.entries[index] = entry
            self.data[index] = stored.data

    def _record(self, record_type: type[_R], key: str) -> _R:
        record = store.get_record(self.conn, record_type, (key,))
        if record is None:
            raise IntegrityError(f"the registry names {record_type.__name__.lower()} {key!r}, which has no record")
        return record

    def retirement(self, retirement: Retirement) -> RetirementFacts:
        self.need(retirement.entry)
        return RetirementFacts(
            id=retirement.id,
            entry=retirement.entry,
            holder=retirement.holder,
            quantity=retirement.quantity,
            blocks=retirement.blocks,
            beneficiary=retirement.beneficiary,
            purpose=retirement.purpose,
            event_id=retirement.event_id,
            year=retirement.year,
            reason=retirement.reason,
            time=retirement.retired_time,
        )

    def batches(self, blocks: Iterable[str]) -> tuple[BatchStatement, ...]:
        batch_ids = list(dict.fromkeys(parse_block(text).batch_id for text in blocks))
        statements = []
        for batch_id in batch_ids:
            batch = self._record(Batch, batch_id)
            report = self._record(Report, batch.report_id)
            found = store.find_entries(self.conn, "report.verify", start=report.submitted_at + 1, stop=batch.issued_at)
            verifications = [index for index, p in _payloads(found) if p["report_id"] == report.id]
            if not verifications:
                raise IntegrityError(f"batch {batch_id}: no report.verify entry for report {report.id}")
            self.need(report.submitted_at, verifications[-1], batch.issued_at)
            statements.append(
                BatchStatement(
                    id=batch.id,
                    project=batch.project_id,
                    vintage=batch.vintage,
                    quantity=batch.quantity,
                    report=report.id,
                    report_entry=report.submitted_at,
                    verification_entry=verifications[-1],
                    issuance_entry=batch.issued_at,
                )
            )
        return tuple(statements)

    def claim(self, claim: Claim) -> ClaimStatement:
        event = self._record(Event, claim.event_id)
        found = store.find_entries(
            self.conn, "event.footprint", start=event.registered_at + 1, stop=claim.entry, actor=event.organiser
        )
        footprints = [
            index
            for index, p in _payloads(found)
            if p["event_id"] == event.id and p["stage"] == FootprintStage.FINAL.value
        ]
        if not footprints:
            raise IntegrityError(f"claim {claim.id}: no final footprint entry for event {event.id}")
        retirements = [self.retirement(self._record(Retirement, rid)) for rid in claim.retirements]
        self.need(claim.entry, event.registered_at, footprints[-1])
        return ClaimStatement(
            id=claim.id,
            entry=claim.entry,
            time=claim.issued_time,
            event=EventStatement(
                id=event.id,
                entry=event.registered_at,
                organiser=event.organiser,
                name=event.name,
                kind=event.kind,
                venue=event.venue,
                start_date=event.start_date,
                end_date=event.end_date,
                expected_attendees=event.expected_attendees,
            ),
            footprint_kg=claim.footprint_kg,
            footprint=dict(claim.footprint),
            footprint_entry=footprints[-1],
            units=claim.units,
            retirements=tuple(retirements),
            blocks=claim.blocks,
            batches=self.batches(claim.blocks),
        )

    def add_provenance(self) -> None:
        """Add, for every entry collected, the entries that prove its signer's key and authority, recursively."""
        self.need(0)
        genesis_actor = self.bodies[0].actor
        pending = sorted(self.entries, reverse=True)
        while pending:
            index = pending.pop()
            if index == 0:
                continue
            body = self.bodies[index]
            key = self._record(Key, body.key_id)
            wanted = [key.added_at]
            if body.kind in AUTHORITY_KINDS and body.actor != genesis_actor:
                wanted.append(self._authority_grant(body.actor, before=index))
            new = [i for i in wanted if i not in self.entries]
            self.need(*new)
            pending.extend(new)

    def _authority_grant(self, actor: str, *, before: int) -> int:
        """The last entry before `before` that set `actor`'s roles: its registration or a set_roles."""
        participant = self._record(Participant, actor)
        found = store.find_entries(self.conn, "participant.set_roles", start=participant.registered_at + 1, stop=before)
        changes = [index for index, p in _payloads(found) if p["participant_id"] == actor]
        return changes[-1] if changes else participant.registered_at

    def bundle(
        self, kind: CertificateKind, record_id: str, statement: RetirementStatement | ClaimStatement
    ) -> Certificate:
        checkpoint = store.latest_checkpoint(self.conn)
        if checkpoint is None:
            raise IntegrityError("the registry has entries but no signed checkpoint")
        note = checkpoint.note
        lines = store.cosignature_lines(self.conn, checkpoint.size)
        if lines:
            note = add_signatures(note, *(parse_signature_line(line, what="stored cosignature") for line in lines))
        indexes = sorted(self.entries)
        if indexes[-1] >= checkpoint.size:
            raise IntegrityError(f"the latest checkpoint covers {checkpoint.size} entries", index=indexes[-1])
        proofs = inclusion_proofs(store.DbNodeReader(self.conn), indexes, checkpoint.size)
        entries = tuple(
            CertificateEntry(
                index=index,
                role=ENTRY_ROLES[self.bodies[index].kind],
                leaf=b64encode(self.data[index]),
                inclusion_proof=tuple(b64encode(h) for h in proof),
            )
            for index, proof in zip(indexes, proofs, strict=True)
        )
        genesis = self.bodies[0].payload
        assert isinstance(genesis, RegistryGenesis)
        common: dict[str, Any] = {
            "format": CERTIFICATE_FORMAT,
            "id": record_id,
            "origin": self.bodies[0].origin,
            "vkey": genesis.registry_vkey,
            "checkpoint": note.decode("utf-8"),
            "entries": entries,
        }
        if kind == "retirement":
            assert isinstance(statement, RetirementStatement)
            return RetirementCertificate(kind="retirement", statement=statement, **common)
        assert isinstance(statement, ClaimStatement)
        return ClaimCertificate(kind="claim", statement=statement, **common)


def _payloads(stored: Iterable[StoredEntry]) -> list[tuple[int, dict[str, Any]]]:
    """Each stored entry's index and payload as JSON (to pick entries by what they are about)."""
    found = []
    for item in stored:
        try:
            payload = decode_entry(item.data, index=item.index).body().payload
        except EncodingError as exc:
            raise IntegrityError(str(exc), index=item.index) from None
        found.append((item.index, payload.model_dump(mode="json")))
    return found
