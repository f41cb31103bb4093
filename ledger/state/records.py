"""The registry's records: each a frozen dataclass and a row of a projection table.

`TABLE` names the table and `KEY` its primary key. Records are what replaying the log yields; the
write path stores the rows an entry changed and the audit compares every row with its replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.serials import SerialRange


@dataclass(frozen=True, slots=True)
class Participant:
    TABLE: ClassVar[str] = "participants"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    name: str
    roles: tuple[str, ...]
    status: str  # active | suspended
    frozen: bool
    registered_at: int


@dataclass(frozen=True, slots=True)
class Key:
    TABLE: ClassVar[str] = "participant_keys"
    KEY: ClassVar[tuple[str, ...]] = ("key_id",)
    key_id: str
    participant_id: str
    public_key: str
    added_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class Witness:
    TABLE: ClassVar[str] = "witnesses"
    KEY: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    vkey: str
    added_at: int
    removed_at: int | None


@dataclass(frozen=True, slots=True)
class Methodology:
    TABLE: ClassVar[str] = "methodologies"
    KEY: ClassVar[tuple[str, ...]] = ("code", "version")
    code: str
    version: str
    title: str
    sector: str
    document_sha256: str
    status: str  # active | withdrawn
    published_at: int


@dataclass(frozen=True, slots=True)
class Project:
    TABLE: ClassVar[str] = "projects"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
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
    documents: tuple[str, ...]
    state: str  # submitted validated registered rejected changes_requested suspended closed
    validator: str | None
    opinion: str | None
    frozen: bool
    submitted_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Report:
    TABLE: ClassVar[str] = "monitoring_reports"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    project_id: str
    period_start: str
    period_end: str
    claimed: int
    verified: int | None
    verifier: str | None
    state: str  # submitted verified issued rejected
    submitted_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Batch:
    TABLE: ClassVar[str] = "batches"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    project_id: str
    vintage: int
    number: int
    report_id: str
    quantity: int
    owner: str
    sequence: int  # global issuance order: oldest serials first means lowest (vintage, sequence)
    issued_at: int
    issued_time: str


@dataclass(frozen=True, slots=True)
class Block:
    TABLE: ClassVar[str] = "unit_blocks"
    KEY: ClassVar[tuple[str, ...]] = ("batch_id", "first")
    batch_id: str
    first: int
    last: int
    state: str  # held | retired | cancelled
    holder: str
    ref: str | None  # retirement or cancellation id
    updated_at: int

    @property
    def range(self) -> SerialRange:
        return SerialRange(self.batch_id, self.first, self.last)

    @property
    def quantity(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Retirement:
    TABLE: ClassVar[str] = "retirements"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    holder: str
    quantity: int
    blocks: tuple[str, ...]
    beneficiary: str
    purpose: str
    event_id: str | None
    year: int | None
    reason: str
    claim_id: str | None
    entry: int
    retired_time: str


@dataclass(frozen=True, slots=True)
class Cancellation:
    TABLE: ClassVar[str] = "cancellations"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    holder: str
    quantity: int
    blocks: tuple[str, ...]
    reason_code: str
    reason: str
    entry: int
    cancelled_time: str


@dataclass(frozen=True, slots=True)
class Event:
    TABLE: ClassVar[str] = "events"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    organiser: str
    name: str
    kind: str
    venue: str
    start_date: str
    end_date: str
    expected_attendees: int
    planned_footprint: tuple[tuple[str, int], ...]
    final_footprint: tuple[tuple[str, int], ...]
    final_footprint_kg: int | None
    retired_units: int
    claim_id: str | None
    registered_at: int


@dataclass(frozen=True, slots=True)
class Claim:
    TABLE: ClassVar[str] = "claims"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    event_id: str
    organiser: str
    footprint_kg: int
    footprint: tuple[tuple[str, int], ...]
    units: int
    retirements: tuple[str, ...]
    blocks: tuple[str, ...]
    entry: int
    issued_time: str


@dataclass(frozen=True, slots=True)
class ProjectScopes:
    """The activity data a project's reductions rest on, as ``<displaced source>/<subject>`` claim scopes."""

    TABLE: ClassVar[str] = "project_scopes"
    KEY: ClassVar[tuple[str, ...]] = ("project_id",)
    project_id: str
    scopes: tuple[str, ...]
    updated_at: int


@dataclass(frozen=True, slots=True)
class PointsRule:
    """One version of a points rule, as the authority published it."""

    TABLE: ClassVar[str] = "points_rules"
    KEY: ClassVar[tuple[str, ...]] = ("rule_id", "version")
    rule_id: str
    version: int
    title: str
    activity_unit: str
    emission_factor_g: int
    factor_source: str
    points_per_gram: int
    daily_cap: int
    monthly_cap: int
    annual_cap: int
    late_window_days: int
    claim_mode: str  # reward_only | claim
    subject: str  # account_day | vehicle_day | meter_month
    displaced_source: str
    effective_from: str
    effective_until: str | None
    published_at: int


@dataclass(frozen=True, slots=True)
class ProviderRules:
    """The points rules a data provider may attest."""

    TABLE: ClassVar[str] = "provider_rules"
    KEY: ClassVar[tuple[str, ...]] = ("provider",)
    provider: str
    rules: tuple[str, ...]
    updated_at: int


@dataclass(frozen=True, slots=True)
class PointAccount:
    """A pseudonymous point account, held in a platform operator's app (no personal data)."""

    TABLE: ClassVar[str] = "point_accounts"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    account_kind: str  # citizen | small_business
    operator: str
    opened_at: int


@dataclass(frozen=True, slots=True)
class Consent:
    """Whether a point account lets a provider attest its activity under a rule."""

    TABLE: ClassVar[str] = "points_consents"
    KEY: ClassVar[tuple[str, ...]] = ("account_id", "provider", "rule_id")
    account_id: str
    provider: str
    rule_id: str
    granted: bool
    updated_at: int


RECORD_TYPES: tuple[type[Any], ...] = (
    Participant,
    Key,
    Witness,
    Methodology,
    Project,
    Report,
    Batch,
    Block,
    Retirement,
    Cancellation,
    Event,
    Claim,
    PointsRule,
    ProviderRules,
    PointAccount,
    Consent,
    ProjectScopes,
)


def record_key(record: Any) -> tuple[Any, ...]:
    """The primary key of a record, as a tuple."""
    return tuple(getattr(record, name) for name in record.KEY)
