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


@dataclass(frozen=True, slots=True)
class Attestation:
    """One provider batch attested under a rule version for a day: what the entry commits to and awarded."""

    TABLE: ClassVar[str] = "point_attestations"
    KEY: ClassVar[tuple[str, ...]] = ("batch_id",)
    batch_id: str
    provider: str
    rule_id: str
    version: int
    day: str
    count: int
    total_quantity: int
    root: str
    points_awarded: int
    points_capped: int  # points the records earned above the caps, not awarded
    reduction_g: int  # gCO2e the records avoided, by the rule's emission factor
    claimable: bool  # a claim-mode rule's reductions (reward-only points never count toward a claim)
    clawed_back: int
    attested_at: int


@dataclass(frozen=True, slots=True)
class PointsPolicySet:
    """The registry's points policy: how many months a lot stays redeemable after its month ends."""

    TABLE: ClassVar[str] = "points_policy"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: int  # always 1: one policy per registry
    lifetime_months: int
    set_at: int


@dataclass(frozen=True, slots=True)
class PointLot:
    """The points an account still holds from activity in one month (redemption and expiry take the oldest)."""

    TABLE: ClassVar[str] = "point_lots"
    KEY: ClassVar[tuple[str, ...]] = ("account_id", "month")
    account_id: str
    month: str  # YYYY-MM
    points: int


@dataclass(frozen=True, slots=True)
class PointTotals:
    """Where an account's points went: awarded = balance + redeemed + expired + clawed back (conservation)."""

    TABLE: ClassVar[str] = "point_totals"
    KEY: ClassVar[tuple[str, ...]] = ("account_id",)
    account_id: str
    awarded: int
    balance: int
    redeemed: int  # held by pending orders and spent by fulfilled ones
    expired: int
    clawed_back: int


@dataclass(frozen=True, slots=True)
class Scene:
    """A place a merchant applied to have recognised as a low-carbon scene."""

    TABLE: ClassVar[str] = "scenes"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    merchant: str
    name: str
    category: str
    district: str
    address: str
    description: str
    state: str  # applied evaluated approved rejected suspended revoked
    evaluator: str | None
    score: int | None
    opinion: str | None
    evaluated_at: int | None
    decided_at: int | None
    valid_until: str | None
    applied_at: int


@dataclass(frozen=True, slots=True)
class Offer:
    """Goods or services a merchant offers at an approved scene, for points."""

    TABLE: ClassVar[str] = "offers"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    scene_id: str
    merchant: str
    title: str
    price_points: int
    stock: int  # items left
    per_account_limit: int
    valid_from: str
    valid_until: str
    state: str  # active withdrawn
    published_at: int


@dataclass(frozen=True, slots=True)
class Redemption:
    """An order of an offer for points: pending, then fulfilled or cancelled."""

    TABLE: ClassVar[str] = "redemptions"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    offer_id: str
    account_id: str
    quantity: int
    points: int
    lots: tuple[str, ...]  # "YYYY-MM:points" taken from each lot, oldest first (a cancellation puts them back)
    state: str  # pending fulfilled cancelled
    placed_at: int
    closed_at: int | None


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
    Attestation,
    PointsPolicySet,
    PointLot,
    PointTotals,
    Scene,
    Offer,
    Redemption,
)


def record_key(record: Any) -> tuple[Any, ...]:
    """The primary key of a record, as a tuple."""
    return tuple(getattr(record, name) for name in record.KEY)
