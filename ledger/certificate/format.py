"""The certificate bundle's format: its pydantic models, the roles of its entries, and strict parsing.

A certificate is ``cdcer-certificate/1`` JSON (see `ledger.certificate` for the layout). This module
says what its fields may hold and parses bytes into a typed `Certificate`; `ledger.certificate.build`
writes one from the database and `ledger.certificate.verify` checks one offline.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, cast

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ledger.encoding import MAX_SAFE_INTEGER, canonical_json, loads_strict
from ledger.errors import (
    CertificateError,
    EncodingError,
)
from ledger.state import KIND_ROLES, SPECS
from ledger.transactions import (
    Role,
)

CERTIFICATE_FORMAT = "cdcer-certificate/1"
MAX_CERTIFICATE_BYTES = 16 * 1024 * 1024
MAX_ENTRIES = 10_000
"""A claim backed by hundreds of retirements needs a few thousand entries at most."""

CertificateKind = Literal["retirement", "claim"]
EntryRole = Literal[
    "genesis", "key", "role", "report", "verification", "issuance", "event", "footprint", "retirement", "claim"
]

ENTRY_ROLES: dict[str, EntryRole] = {
    kind: cast(EntryRole, spec.certificate_role) for kind, spec in SPECS.items() if spec.certificate_role is not None
}
"""The role of an entry in a certificate, by its transaction kind; no other kind belongs in one."""


AUTHORITY_KINDS = frozenset(kind for kind, roles in KIND_ROLES.items() if roles == frozenset({Role.AUTHORITY}))
"""Kinds only an authority may sign: a certificate proves its signer was made an authority."""


# --- the bundle --------------------------------------------------------------------------------------------

_Index = Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INTEGER)]
_Units = Annotated[int, Field(strict=True, gt=0, le=MAX_SAFE_INTEGER)]
_Kilograms = Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INTEGER)]
_Text = Annotated[str, StringConstraints(max_length=4000)]
_Id = Annotated[str, StringConstraints(min_length=1, max_length=80)]
# Record ids in the forms the state machine gives them: nothing else can name a record.
_RetirementId = Annotated[str, StringConstraints(pattern=r"^RT[0-9]{6,12}$")]
_ClaimId = Annotated[str, StringConstraints(pattern=r"^CN[0-9]{4,12}$")]
_EventId = Annotated[str, StringConstraints(pattern=r"^E[0-9]{4,12}$")]
_ReportId = Annotated[str, StringConstraints(pattern=r"^MR[0-9]{4,12}$")]
_ProjectId = Annotated[str, StringConstraints(pattern=r"^P[0-9]{4,12}$")]
_BatchId = Annotated[str, StringConstraints(pattern=r"^P[0-9]{4,12}-[0-9]{4}-[0-9]{3,6}$")]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class BatchStatement(_Model):
    """A batch the retired serials come from, and the entries that report, verify and issue it."""

    id: _BatchId
    project: _ProjectId
    vintage: Annotated[int, Field(strict=True, ge=0, le=9999)]
    quantity: _Units
    report: _ReportId
    report_entry: _Index
    verification_entry: _Index
    issuance_entry: _Index


class RetirementFacts(_Model):
    """One retirement as the registry records it; `entry` is the log entry that retired the units."""

    id: _RetirementId
    entry: _Index
    holder: _Id
    quantity: _Units
    blocks: tuple[_Id, ...] = Field(max_length=100_000)
    beneficiary: _Text
    purpose: _Id
    event_id: _EventId | None
    year: Annotated[int, Field(strict=True, ge=0, le=9999)] | None
    reason: _Text
    time: _Id


class RetirementStatement(RetirementFacts):
    """The statement of a retirement certificate: the retirement and the batches of its serials."""

    batches: tuple[BatchStatement, ...] = Field(max_length=MAX_ENTRIES)


class EventStatement(_Model):
    """The event a claim is for, as its organiser registered it at log entry `entry`."""

    id: _EventId
    entry: _Index
    organiser: _Id
    name: _Text
    kind: _Id
    venue: _Text
    start_date: _Id
    end_date: _Id
    expected_attendees: Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INTEGER)]


class ClaimStatement(_Model):
    """The statement of a claim certificate: the event, its final footprint and the retirements covering it."""

    id: _ClaimId
    entry: _Index
    time: _Id
    event: EventStatement
    footprint_kg: _Kilograms
    footprint: dict[_Id, _Kilograms] = Field(max_length=100)
    footprint_entry: _Index
    units: _Units
    retirements: tuple[RetirementFacts, ...] = Field(min_length=1, max_length=MAX_ENTRIES)
    blocks: tuple[_Id, ...] = Field(max_length=100_000)
    batches: tuple[BatchStatement, ...] = Field(max_length=MAX_ENTRIES)


class CertificateEntry(_Model):
    """One log entry: its index, its role in the certificate, its exact bytes and its inclusion proof."""

    index: _Index
    role: EntryRole
    leaf: str
    inclusion_proof: tuple[str, ...] = Field(max_length=64)


class _CertificateBase(_Model):
    format: Literal["cdcer-certificate/1"]
    id: _Id
    origin: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    vkey: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    checkpoint: Annotated[str, StringConstraints(min_length=1, max_length=1 << 20)]
    entries: tuple[CertificateEntry, ...] = Field(min_length=1, max_length=MAX_ENTRIES)

    def to_json(self) -> dict[str, Any]:
        """The bundle as a JSON value."""
        return self.model_dump(mode="json")

    def to_bytes(self) -> bytes:
        """The bundle as RFC 8785 canonical JSON: the same certificate always has the same bytes."""
        return canonical_json(self.to_json())


class RetirementCertificate(_CertificateBase):
    """A certificate for one retirement."""

    kind: Literal["retirement"]
    statement: RetirementStatement


class ClaimCertificate(_CertificateBase):
    """A certificate for one carbon-neutral claim."""

    kind: Literal["claim"]
    statement: ClaimStatement


Certificate = RetirementCertificate | ClaimCertificate

_CERTIFICATE_TYPES: dict[str, type[RetirementCertificate] | type[ClaimCertificate]] = {
    "retirement": RetirementCertificate,
    "claim": ClaimCertificate,
}


def parse_certificate(data: bytes) -> Certificate:
    """Parse certificate bytes strictly (step 1 of `verify_certificate`); raise `CertificateError`."""
    if not isinstance(data, bytes | bytearray):
        raise CertificateError(f"certificate: expected bytes, found {type(data).__name__}")
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise CertificateError(f"certificate: {len(data)} bytes, over the limit of {MAX_CERTIFICATE_BYTES}")
    try:
        value = loads_strict(bytes(data), what="certificate")
    except EncodingError as exc:
        raise CertificateError(str(exc)) from None
    if not isinstance(value, dict):
        raise CertificateError(f"certificate: expected a JSON object, found {json_type(value)}")
    if value.get("format") != CERTIFICATE_FORMAT:
        raise CertificateError(
            f"certificate: format is {clip(repr(value.get('format')))}, expected {CERTIFICATE_FORMAT!r}"
        )
    kind = value.get("kind")
    model = _CERTIFICATE_TYPES.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise CertificateError(f"certificate: kind is {clip(repr(kind))}, expected 'retirement' or 'claim'")
    try:
        certificate = model.model_validate_json(bytes(data))
    except ValidationError as exc:
        raise CertificateError(f"certificate: {describe(exc)}") from None
    if certificate.statement.id != certificate.id:
        raise CertificateError(
            f"certificate: is for {certificate.kind} {certificate.id!r}, but its statement is about "
            f"{certificate.statement.id!r}"
        )
    return certificate


# --- helpers -------------------------------------------------------------------------------------------


def describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "document"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def _utf8(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise CertificateError(f"{what}: not encodable as UTF-8 ({exc.reason} at {exc.start})") from None


def json_type(value: object) -> str:
    return {list: "an array", str: "a string", int: "a number", bool: "a boolean"}.get(type(value), "null")


def clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
