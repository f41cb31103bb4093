"""The public registry's response bodies: quantities as integers, times as ISO strings, entries as indices."""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ledger.serials import SerialRange

# The values the ledger stores for these (plain text in its records); the lists' filters take only these.
ParticipantStatus = Literal["active", "suspended"]
MethodologyStatus = Literal["active", "withdrawn"]
ProjectState = Literal["submitted", "validated", "registered", "rejected", "changes_requested", "suspended", "closed"]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


def _by_source(value: Any) -> Any:
    """A stored footprint (``[[source, kg], ...]``) as ``{source: kg}``."""
    return dict(value) if isinstance(value, list) else value


class KeyOut(_Out):
    key_id: str
    public_key: str = Field(description="the Ed25519 public key, base64")
    added_at: int = Field(description="the log entry that added the key")
    revoked_at: int | None = Field(description="the log entry that revoked the key, or null")


class ParticipantOut(_Out):
    id: str
    name: str
    roles: list[str]
    status: str
    frozen: bool
    registered_at: int = Field(description="the log entry that registered the participant")


class ParticipantDetail(ParticipantOut):
    keys: list[KeyOut]


class MethodologyOut(_Out):
    code: str
    version: str
    title: str
    sector: str
    document_sha256: str
    status: str
    published_at: int = Field(description="the log entry that published the methodology")


class ReportOut(_Out):
    id: str
    project_id: str
    period_start: str
    period_end: str
    claimed: int
    verified: int | None
    verifier: str | None
    state: str
    submitted_at: int
    updated_at: int


class BatchOut(_Out):
    id: str
    project_id: str
    vintage: int
    number: int
    report_id: str
    quantity: int
    owner: str
    sequence: int
    issued_at: int = Field(description="the log entry of the issuance")
    issued_time: str


class BlockOut(_Out):
    block: str = Field(description="the serial block, CDCER-<project>-<vintage>-<batch>-<first>-<last>")
    first: int
    last: int
    quantity: int
    state: str = Field(description="held, retired or cancelled")
    holder: str
    ref: str | None = Field(description="the retirement or cancellation id of a retired or cancelled block")

    @classmethod
    def of(cls, row: dict[str, Any]) -> BlockOut:
        serials = SerialRange(row["batch_id"], row["first"], row["last"])
        return cls(block=str(serials), quantity=serials.quantity, **row)


class BatchDetail(BatchOut):
    blocks: list[BlockOut]


class ProjectOut(_Out):
    id: str
    owner: str
    methodology_code: str
    methodology_version: str
    title: str
    district: str
    description: str
    crediting_start: str
    crediting_end: str
    estimated_annual_reductions: int
    documents: list[str]
    state: str
    validator: str | None
    opinion: str | None
    frozen: bool
    submitted_at: int
    updated_at: int


class ProjectDetail(ProjectOut):
    reports: list[ReportOut]
    batches: list[BatchOut]


class RetirementOut(_Out):
    id: str
    holder: str
    quantity: int
    blocks: list[str]
    beneficiary: str
    purpose: str
    event_id: str | None
    year: int | None
    reason: str
    claim_id: str | None
    entry: int
    retired_time: str


class CancellationOut(_Out):
    id: str
    holder: str
    quantity: int
    blocks: list[str]
    reason_code: str
    reason: str
    entry: int
    cancelled_time: str


class EventOut(_Out):
    id: str
    organiser: str
    name: str
    kind: str
    venue: str
    start_date: str
    end_date: str
    expected_attendees: int
    planned_footprint: dict[str, int] = Field(description="kgCO2e by source, as planned")
    final_footprint: dict[str, int] = Field(description="kgCO2e by source, as accounted at close")
    final_footprint_kg: int | None
    retired_units: int
    claim_id: str | None
    registered_at: int

    _footprints = field_validator("planned_footprint", "final_footprint", mode="before")(_by_source)


class ClaimOut(_Out):
    id: str
    event_id: str
    organiser: str
    footprint_kg: int
    footprint: dict[str, int] = Field(description="kgCO2e by source")
    units: int
    retirements: list[str]
    blocks: list[str]
    entry: int
    issued_time: str

    _footprint = field_validator("footprint", mode="before")(_by_source)


class Stats(_Out):
    projects_registered: int
    units_issued: int
    units_held: int
    units_retired: int
    units_cancelled: int
    claims: int


T = TypeVar("T", bound=BaseModel)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null after the last page")
