"""Transactions: the typed bodies of every state change, their canonical bytes and signatures.

A transaction body names the registry's origin, the actor, the actor's key id, a nonce, the
client's time and a typed payload (one per kind of SPEC section 3). Its bytes are the RFC 8785
canonical JSON of the body; the actor signs ``TRANSACTION_SIGNING_PREFIX || bytes`` with Ed25519.
Decoding is strict: the bytes must be canonical JSON, every field typed, no unknown field. The
signature covers the exact bytes the actor sent; the parsed body is what the bytes mean.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    ValidationError,
    model_validator,
)

from ledger.encoding import MAX_SAFE_INTEGER, b64decode, b64encode, canonical_json, parse_canonical_json
from ledger.errors import EncodingError
from ledger.keys import KeyId, PrivateKey, PublicKey

TRANSACTION_SIGNING_PREFIX = b"cdcer/transaction/v1\n"
"""Domain separation: a transaction signature can never be mistaken for any other signed message."""

MAX_TRANSACTION_BYTES = 32 * 1024

UNITS_PER_CDCER_KG = 1000
"""1 CDCER = 1 tCO2e = 1,000 kgCO2e."""


# --- scalar types -----------------------------------------------------------------------------


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() != UTC.utcoffset(None):
        raise ValueError("time must be timezone-aware UTC")
    return value.astimezone(UTC)


def format_utc(value: datetime) -> str:
    """The one textual form of a time in this ledger: ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    utc = value if value.tzinfo is UTC else value.astimezone(UTC)
    # By fields, not strftime: its %Y does not zero-pad years before 1000 (which the parsers then refuse),
    # and it costs five times as much, on every entry appended or audited.
    return (
        f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
        f".{utc.microsecond:06d}Z"
    )


UtcDateTime = Annotated[datetime, AfterValidator(_require_utc), PlainSerializer(format_utc, return_type=str)]
Quantity = Annotated[int, Field(strict=True, gt=0, le=MAX_SAFE_INTEGER)]
"""A positive whole number of units (CDCER, tCO2e)."""
Kilograms = Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INTEGER)]
"""A non-negative whole number of kgCO2e."""
Identifier = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
"""A participant id chosen by the authority: lowercase letters, digits, '.', '_' and '-'."""
RecordId = Annotated[str, StringConstraints(pattern=r"^[A-Z]{1,3}[0-9]{4,12}$")]
"""An id the ledger assigns in order: P0007 (project), MR0003 (report), E0002 (event)..."""
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
KeyIdText = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Nonce = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,64}$")]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=4000)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=1000)]
PublicKeyB64 = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]
SerialBlockText = Annotated[str, StringConstraints(max_length=80)]


class Role(StrEnum):
    AUTHORITY = "authority"
    VERIFIER = "verifier"
    PROJECT_OWNER = "project_owner"
    EVENT_ORGANISER = "event_organiser"
    ACCOUNT_HOLDER = "account_holder"
    AUDITOR = "auditor"
    # The public path (carbon points): who attests citizens' low-carbon activity, who runs the app that
    # holds their pseudonymous point accounts, who sells against points, who evaluates low-carbon scenes.
    DATA_PROVIDER = "data_provider"
    PLATFORM_OPERATOR = "platform_operator"
    MERCHANT = "merchant"
    SCENE_EVALUATOR = "scene_evaluator"


class RetirementPurpose(StrEnum):
    EVENT = "event"
    ORGANISATION = "organisation"
    INDIVIDUAL = "individual"
    VOLUNTARY = "voluntary"


class EventKind(StrEnum):
    CONFERENCE = "conference"
    EXHIBITION = "exhibition"
    SPORTS = "sports"
    PERFORMANCE = "performance"
    FORUM = "forum"
    OTHER = "other"


class FootprintSource(StrEnum):
    VENUE_ENERGY = "venue_energy"
    ATTENDEE_TRANSPORT = "attendee_transport"
    STAFF_TRANSPORT = "staff_transport"
    ACCOMMODATION = "accommodation"
    CATERING = "catering"
    MATERIALS = "materials"
    WASTE = "waste"
    OTHER = "other"


class FootprintStage(StrEnum):
    PLANNED = "planned"
    FINAL = "final"


class CancellationReason(StrEnum):
    CORRECTION = "correction"
    INVALIDATION = "invalidation"
    REVERSAL = "reversal"


class ProjectDecision(StrEnum):
    REGISTER = "register"
    REJECT = "reject"
    REQUEST_CHANGES = "request_changes"


class Opinion(StrEnum):
    POSITIVE = "positive"
    NEGATIVE = "negative"


class FreezeTarget(StrEnum):
    ACCOUNT = "account"
    PROJECT = "project"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


# --- selections of units --------------------------------------------------------------------------


class Selection(_Model):
    """Which units to move: a quantity (the oldest serials first) or explicit serial blocks."""

    quantity: Quantity | None = None
    blocks: tuple[SerialBlockText, ...] | None = Field(default=None, min_length=1, max_length=200)

    @model_validator(mode="after")
    def _exactly_one(self) -> Selection:
        if (self.quantity is None) == (self.blocks is None):
            raise ValueError("give exactly one of 'quantity' or 'blocks'")
        return self


# --- payloads, one per kind ------------------------------------------------------------------------


class RegistryGenesis(_Model):
    """Entry 0: the authority founds the registry, naming its checkpoint key and its own key."""

    kind: Literal["registry.genesis"] = "registry.genesis"
    registry_vkey: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    authority_name: Text
    authority_public_key: PublicKeyB64


class ParticipantRegister(_Model):
    kind: Literal["participant.register"] = "participant.register"
    participant_id: Identifier
    name: Text
    roles: tuple[Role, ...] = Field(min_length=1)
    public_keys: tuple[PublicKeyB64, ...] = Field(min_length=1, max_length=10)


class ParticipantSetRoles(_Model):
    kind: Literal["participant.set_roles"] = "participant.set_roles"
    participant_id: Identifier
    roles: tuple[Role, ...] = Field(min_length=1)


class ParticipantSuspend(_Model):
    kind: Literal["participant.suspend"] = "participant.suspend"
    participant_id: Identifier
    reason: Reason


class ParticipantReinstate(_Model):
    kind: Literal["participant.reinstate"] = "participant.reinstate"
    participant_id: Identifier
    reason: Reason


class KeyAdd(_Model):
    kind: Literal["key.add"] = "key.add"
    participant_id: Identifier
    public_key: PublicKeyB64


class KeyRevoke(_Model):
    kind: Literal["key.revoke"] = "key.revoke"
    participant_id: Identifier
    key_id: KeyIdText
    reason: Reason


class KeyRotate(_Model):
    """Adds a new key and revokes an old one in one entry."""

    kind: Literal["key.rotate"] = "key.rotate"
    participant_id: Identifier
    old_key_id: KeyIdText
    new_public_key: PublicKeyB64
    reason: Reason


class WitnessRegister(_Model):
    kind: Literal["witness.register"] = "witness.register"
    vkey: Annotated[str, StringConstraints(min_length=1, max_length=300)]


class WitnessRemove(_Model):
    kind: Literal["witness.remove"] = "witness.remove"
    name: Text
    reason: Reason


class MethodologyPublish(_Model):
    kind: Literal["methodology.publish"] = "methodology.publish"
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$")]
    title: Text
    sector: Text
    document_sha256: Sha256Hex


class MethodologyWithdraw(_Model):
    kind: Literal["methodology.withdraw"] = "methodology.withdraw"
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
    version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$")]
    reason: Reason


class ProjectDetails(_Model):
    methodology_code: Annotated[str, StringConstraints(pattern=r"^[A-Z0-9][A-Z0-9-]{1,31}$")]
    methodology_version: Annotated[str, StringConstraints(pattern=r"^[0-9]{1,3}(\.[0-9]{1,3}){0,2}$")]
    title: Text
    district: Text
    description: LongText
    crediting_start: date
    crediting_end: date
    estimated_annual_reductions: Quantity
    documents: tuple[Sha256Hex, ...] = Field(default=(), max_length=50)

    @model_validator(mode="after")
    def _period(self) -> ProjectDetails:
        if self.crediting_end < self.crediting_start:
            raise ValueError("crediting_end is before crediting_start")
        return self


class ProjectSubmit(_Model):
    kind: Literal["project.submit"] = "project.submit"
    details: ProjectDetails


class ProjectResubmit(_Model):
    kind: Literal["project.resubmit"] = "project.resubmit"
    project_id: RecordId
    details: ProjectDetails


class ProjectValidate(_Model):
    kind: Literal["project.validate"] = "project.validate"
    project_id: RecordId
    opinion: Opinion
    opinion_sha256: Sha256Hex
    statement: LongText


class ProjectDecide(_Model):
    kind: Literal["project.decide"] = "project.decide"
    project_id: RecordId
    decision: ProjectDecision
    reason: Reason


class ProjectSuspend(_Model):
    kind: Literal["project.suspend"] = "project.suspend"
    project_id: RecordId
    reason: Reason


class ProjectReinstate(_Model):
    kind: Literal["project.reinstate"] = "project.reinstate"
    project_id: RecordId
    reason: Reason


class ProjectClose(_Model):
    kind: Literal["project.close"] = "project.close"
    project_id: RecordId
    reason: Reason


class ReportSubmit(_Model):
    kind: Literal["report.submit"] = "report.submit"
    project_id: RecordId
    period_start: date
    period_end: date
    claimed: Quantity
    verifier: Identifier
    """The verification body the owner engaged for this report: only it may verify or reject it."""
    documents: tuple[Sha256Hex, ...] = Field(default=(), max_length=50)

    @model_validator(mode="after")
    def _period(self) -> ReportSubmit:
        if self.period_end < self.period_start:
            raise ValueError("period_end is before period_start")
        return self


class ReportVerify(_Model):
    kind: Literal["report.verify"] = "report.verify"
    report_id: RecordId
    verified: Quantity
    opinion_sha256: Sha256Hex
    statement: LongText


class ReportReject(_Model):
    kind: Literal["report.reject"] = "report.reject"
    report_id: RecordId
    reason: Reason


class Issue(_Model):
    """Issue the verified quantity of a report as one batch to the project owner's account."""

    kind: Literal["issuance.issue"] = "issuance.issue"
    report_id: RecordId


class Transfer(_Model):
    kind: Literal["units.transfer"] = "units.transfer"
    to: Identifier
    selection: Selection
    memo: Annotated[str, StringConstraints(max_length=500)] = ""


class Retire(_Model):
    kind: Literal["units.retire"] = "units.retire"
    selection: Selection
    beneficiary: Text
    purpose: RetirementPurpose
    event_id: RecordId | None = None
    year: Annotated[int, Field(strict=True, ge=2000, le=2200)] | None = None
    reason: Reason

    @model_validator(mode="after")
    def _purpose_fields(self) -> Retire:
        if (self.purpose is RetirementPurpose.EVENT) != (self.event_id is not None):
            raise ValueError("event_id is required for purpose 'event' and only for it")
        if (self.purpose is RetirementPurpose.ORGANISATION) != (self.year is not None):
            raise ValueError("year is required for purpose 'organisation' and only for it")
        return self


class Cancel(_Model):
    kind: Literal["units.cancel"] = "units.cancel"
    holder: Identifier
    selection: Selection
    reason_code: CancellationReason
    reason: Reason


class Freeze(_Model):
    kind: Literal["freeze.set"] = "freeze.set"
    target: FreezeTarget
    target_id: Annotated[str, StringConstraints(min_length=2, max_length=64)]
    reason: Reason


class Unfreeze(_Model):
    kind: Literal["freeze.lift"] = "freeze.lift"
    target: FreezeTarget
    target_id: Annotated[str, StringConstraints(min_length=2, max_length=64)]
    reason: Reason


class EventRegister(_Model):
    kind: Literal["event.register"] = "event.register"
    name: Text
    event_kind: EventKind
    venue: Text
    start_date: date
    end_date: date
    expected_attendees: Annotated[int, Field(strict=True, ge=0, le=10_000_000)]

    @model_validator(mode="after")
    def _dates(self) -> EventRegister:
        if self.end_date < self.start_date:
            raise ValueError("end_date is before start_date")
        return self


class EventFootprint(_Model):
    """Declares an event's footprint in kgCO2e by source, at the planning stage or the final one."""

    kind: Literal["event.footprint"] = "event.footprint"
    event_id: RecordId
    stage: FootprintStage
    sources: dict[FootprintSource, Kilograms] = Field(min_length=1)
    method_note: LongText = ""


class ClaimIssue(_Model):
    """Claims carbon neutrality for an event; `event_entry` binds the claim to the event's registration."""

    kind: Literal["claim.issue"] = "claim.issue"
    event_id: RecordId
    event_entry: Annotated[int, Field(strict=True, ge=0, le=MAX_SAFE_INTEGER)]
    """The log index of the event's `event.register` entry, so a certificate cannot swap in another event."""


# --- the public path: carbon points ------------------------------------------------------------------


class ClaimMode(StrEnum):
    """Whether a points rule only rewards activity or also claims its reduction (one claimant per reduction)."""

    REWARD_ONLY = "reward_only"
    CLAIM = "claim"


class PointsSubject(StrEnum):
    """What one attested record is about: rewarded at most once across providers."""

    ACCOUNT_DAY = "account_day"
    VEHICLE_DAY = "vehicle_day"
    METER_MONTH = "meter_month"


class PointAccountKind(StrEnum):
    CITIZEN = "citizen"
    SMALL_BUSINESS = "small_business"


RuleId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{1,47}$")]
PointAccountId = Annotated[str, StringConstraints(pattern=r"^PA[0-9a-f]{16}$")]
"""A pseudonymous point account: random, so the public log holds no personal data."""
Points = Annotated[int, Field(strict=True, gt=0, le=MAX_SAFE_INTEGER)]


DisplacedSource = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{1,63}$")]
"""The emission source an activity displaces (e.g. car-trips): with a subject and a period, a claim key."""


class ClaimScope(_Model):
    """Activity data whose reductions a claimant claims: one displaced source, one kind of subject."""

    displaced_source: DisplacedSource
    subject: PointsSubject


class ProjectScope(_Model):
    """Declares the activity data a project's reductions rest on (its owner), so that no claim-mode points
    rule and no project ever claim the same reduction."""

    kind: Literal["project.scope"] = "project.scope"
    project_id: RecordId
    scopes: tuple[ClaimScope, ...] = Field(max_length=20)


class PointsRulePublish(_Model):
    """Publishes version `version` of a points rule (authority); versions never apply retroactively."""

    kind: Literal["points.rule_publish"] = "points.rule_publish"
    rule_id: RuleId
    version: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    title: Text
    activity_unit: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
    emission_factor_g: Points
    """gCO2e avoided per activity unit."""
    factor_source: Text
    points_per_gram: Points
    daily_cap: Points
    monthly_cap: Points
    annual_cap: Points
    late_window_days: Annotated[int, Field(strict=True, ge=0, le=90)]
    """How many days after an activity day its attestation is still accepted."""
    claim_mode: ClaimMode
    subject: PointsSubject
    displaced_source: DisplacedSource
    effective_from: date
    effective_until: date | None = None

    @model_validator(mode="after")
    def _consistent(self) -> PointsRulePublish:
        if not self.daily_cap <= self.monthly_cap <= self.annual_cap:
            raise ValueError("caps must grow: daily_cap <= monthly_cap <= annual_cap")
        if self.effective_until is not None and self.effective_until < self.effective_from:
            raise ValueError("effective_until is before effective_from")
        return self


class ProviderScope(_Model):
    """Sets the points rules a data provider may attest (authority); an empty tuple revokes them all."""

    kind: Literal["points.provider_scope"] = "points.provider_scope"
    provider: Identifier
    rules: tuple[RuleId, ...] = Field(max_length=100)


class PointAccountOpen(_Model):
    """Opens a pseudonymous point account for a citizen or small business (platform operator)."""

    kind: Literal["points.account_open"] = "points.account_open"
    account_id: PointAccountId
    account_kind: PointAccountKind


class PointsConsent(_Model):
    """Records a holder's consent, given in the operator's app, for a provider to attest under a rule."""

    kind: Literal["points.consent"] = "points.consent"
    account_id: PointAccountId
    provider: Identifier
    rule_id: RuleId
    granted: bool


MonthText = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$")]
"""A calendar month, ``YYYY-MM``: point lots are held by the month their activity was on."""
BatchId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
"""A provider's id for one attested batch, unique across the registry."""
OrderId = Annotated[str, StringConstraints(pattern=r"^RO[0-9a-f]{16}$")]
"""A redemption order: random, chosen by the operator's app."""
SceneId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,47}$")]
MAX_ATTESTED_RECORDS = 1_000_000
"""The most per-account records one attested batch may carry."""


class PointsAttest(_Model):
    """A data provider attests one day of activity under a rule: one batch, one entry, however many records.

    The records themselves (per-account quantity and subject commitment) are uploaded beforehand and stay
    off the public log; the entry commits to them with `root`, the RFC 6962 Merkle tree hash over their
    leaves (`ledger.points_batch`), and with their count and total quantity.
    """

    kind: Literal["points.attest"] = "points.attest"
    batch_id: BatchId
    rule_id: RuleId
    version: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    """The version of the rule in force on `day` (the signer commits to which one it attests under)."""
    day: date
    count: Annotated[int, Field(strict=True, ge=1, le=MAX_ATTESTED_RECORDS)]
    total_quantity: Quantity
    root: Sha256Hex


class PointsExpire(_Model):
    """Expires every point lot of `through_month` and earlier, once they are past their lifetime (authority)."""

    kind: Literal["points.expire"] = "points.expire"
    through_month: MonthText


class PointsPolicy(_Model):
    """Sets how many months points stay redeemable after their activity month (authority).

    A lot of month M expires once M plus `lifetime_months` has ended. The lifetime may be lengthened at
    any time but shortened only while no points have been awarded: never retroactively against holders.
    """

    kind: Literal["points.policy"] = "points.policy"
    lifetime_months: Annotated[int, Field(strict=True, ge=1, le=120)]


class PointsClawback(_Model):
    """Takes back points a batch awarded fraudulently (authority): from the named accounts, or all of them.

    Where an account's balance does not cover what it owes, the account's pending redemption orders are
    cancelled first (newest first, as `RedemptionCancel` would) until it does; what is still missing (spent
    on fulfilled orders, say) is recorded as a shortfall, never taken below a zero balance.
    """

    kind: Literal["points.clawback"] = "points.clawback"
    batch_id: BatchId
    accounts: tuple[PointAccountId, ...] = Field(default=(), max_length=1000)
    """Empty: every account the batch awarded points to."""
    reason: Reason


class SceneCategory(StrEnum):
    RESTAURANT = "restaurant"
    MALL = "mall"
    HOTEL = "hotel"
    SCENIC_SPOT = "scenic_spot"
    OFFICE = "office"
    OTHER = "other"


class SceneApply(_Model):
    """A merchant applies to have a place evaluated as a low-carbon scene."""

    kind: Literal["scene.apply"] = "scene.apply"
    scene_id: SceneId
    name: Text
    category: SceneCategory
    district: Text
    address: Text
    description: LongText = ""


class SceneEvaluate(_Model):
    """A scene evaluator scores a scene it has no stake in (0-100) and gives its opinion."""

    kind: Literal["scene.evaluate"] = "scene.evaluate"
    scene_id: SceneId
    score: Annotated[int, Field(strict=True, ge=0, le=100)]
    opinion: Opinion
    report_sha256: Sha256Hex


class SceneDecide(_Model):
    """The authority approves an evaluated scene until `valid_until`, or rejects it."""

    kind: Literal["scene.decide"] = "scene.decide"
    scene_id: SceneId
    approve: bool
    valid_until: date | None = None
    reason: Reason

    @model_validator(mode="after")
    def _until_iff_approved(self) -> SceneDecide:
        if self.approve != (self.valid_until is not None):
            raise ValueError("an approval needs valid_until, and a rejection takes none")
        return self


class SceneSuspend(_Model):
    kind: Literal["scene.suspend"] = "scene.suspend"
    scene_id: SceneId
    reason: Reason


class SceneReinstate(_Model):
    kind: Literal["scene.reinstate"] = "scene.reinstate"
    scene_id: SceneId
    reason: Reason


class SceneRevoke(_Model):
    kind: Literal["scene.revoke"] = "scene.revoke"
    scene_id: SceneId
    reason: Reason


class SceneRenew(_Model):
    """Extends an approved scene's validity, after an evaluation made since it was last approved (authority)."""

    kind: Literal["scene.renew"] = "scene.renew"
    scene_id: SceneId
    valid_until: date


class OfferPublish(_Model):
    """A merchant offers goods or services at an approved scene, for points."""

    kind: Literal["offer.publish"] = "offer.publish"
    offer_id: SceneId
    scene_id: SceneId
    title: Text
    price_points: Points
    stock: Annotated[int, Field(strict=True, ge=1, le=10_000_000)]
    per_account_limit: Annotated[int, Field(strict=True, ge=1, le=10_000)]
    valid_from: date
    valid_until: date

    @model_validator(mode="after")
    def _dates(self) -> OfferPublish:
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")
        return self


class OfferWithdraw(_Model):
    kind: Literal["offer.withdraw"] = "offer.withdraw"
    offer_id: SceneId


class PointsRedeem(_Model):
    """A holder, in the operator's app, orders `quantity` of an offer for points (platform operator signs).

    The points come from the account's oldest lots still within the points' lifetime; a lapsed lot's points
    are never spent, even before the authority expires them.
    """

    kind: Literal["points.redeem"] = "points.redeem"
    order_id: OrderId
    offer_id: SceneId
    account_id: PointAccountId
    quantity: Annotated[int, Field(strict=True, ge=1, le=100)]


class RedemptionFulfil(_Model):
    """The merchant hands over what was ordered: the order's points are spent."""

    kind: Literal["redemption.fulfil"] = "redemption.fulfil"
    order_id: OrderId


class RedemptionCancel(_Model):
    """The merchant or the holder's operator cancels a pending order: its points and stock come back.

    Its points of a month past the lifetime by then expire instead of coming back. A `PointsClawback` cancels
    pending orders the same way when the account's balance does not cover it.
    """

    kind: Literal["redemption.cancel"] = "redemption.cancel"
    order_id: OrderId
    reason: Reason


Payload = Annotated[
    RegistryGenesis
    | ParticipantRegister
    | ParticipantSetRoles
    | ParticipantSuspend
    | ParticipantReinstate
    | KeyAdd
    | KeyRevoke
    | KeyRotate
    | WitnessRegister
    | WitnessRemove
    | MethodologyPublish
    | MethodologyWithdraw
    | ProjectSubmit
    | ProjectResubmit
    | ProjectValidate
    | ProjectDecide
    | ProjectSuspend
    | ProjectReinstate
    | ProjectClose
    | ReportSubmit
    | ReportVerify
    | ReportReject
    | Issue
    | Transfer
    | Retire
    | Cancel
    | Freeze
    | Unfreeze
    | EventRegister
    | EventFootprint
    | ClaimIssue
    | PointsRulePublish
    | ProviderScope
    | PointAccountOpen
    | PointsConsent
    | ProjectScope
    | PointsAttest
    | PointsExpire
    | PointsPolicy
    | PointsClawback
    | SceneApply
    | SceneEvaluate
    | SceneDecide
    | SceneSuspend
    | SceneReinstate
    | SceneRevoke
    | SceneRenew
    | OfferPublish
    | OfferWithdraw
    | PointsRedeem
    | RedemptionFulfil
    | RedemptionCancel,
    Field(discriminator="kind"),
]

PAYLOAD_TYPES: tuple[type[BaseModel], ...] = Payload.__origin__.__args__  # type: ignore[attr-defined]
KINDS: tuple[str, ...] = tuple(t.model_fields["kind"].default for t in PAYLOAD_TYPES)


class TransactionBody(_Model):
    """What an actor signs."""

    v: Literal[1] = 1
    origin: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    actor: Identifier
    key_id: KeyIdText
    nonce: Nonce
    created_at: UtcDateTime
    payload: Payload

    @property
    def kind(self) -> str:
        """The transaction kind, e.g. ``units.transfer``."""
        return self.payload.kind


_NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def encode_body(body: TransactionBody) -> bytes:
    """The canonical bytes of a transaction body (what is signed and stored)."""
    return canonical_json(body.model_dump(mode="json", exclude_none=True))


def decode_body(data: bytes) -> TransactionBody:
    """Parse canonical transaction bytes into a typed body; refuse anything malformed."""
    if len(data) > MAX_TRANSACTION_BYTES:
        raise EncodingError(f"transaction: {len(data)} bytes, over the limit of {MAX_TRANSACTION_BYTES}")
    value = parse_canonical_json(data, what="transaction")
    return body_from_json(value, original=data)


def body_from_json(value: Any, *, original: bytes | None = None) -> TransactionBody:
    """Validate an already-parsed JSON value as a transaction body (strict, JSON-mode rules)."""
    data = original if original is not None else canonical_json(value)
    try:
        # JSON-mode validation: dates and times arrive as strings, the way they are stored.
        body = TransactionBody.model_validate_json(data)
    except ValidationError as exc:
        raise EncodingError(f"transaction: {_describe(exc)}") from None
    _refuse_nul(value)
    return body


def _refuse_nul(value: Any) -> None:
    """Refuse U+0000 in any string of a valid body: PostgreSQL text cannot hold it, so no registry may accept it."""
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:  # a loop, not recursion: the value's depth is the client's choice
        where, item = pending.pop()
        if isinstance(item, str) and "\x00" in item:
            raise EncodingError(f"transaction: {where or 'body'}: text must not contain the NUL character (U+0000)")
        if isinstance(item, dict):
            pending.extend((f"{where}.{key}" if where else str(key), sub) for key, sub in item.items())
        elif isinstance(item, list):
            pending.extend((f"{where}.{i}", sub) for i, sub in enumerate(item))


def _describe(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    more = len(exc.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def signing_message(body_bytes: bytes) -> bytes:
    """The exact bytes an actor's key signs for a transaction."""
    return TRANSACTION_SIGNING_PREFIX + body_bytes


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    """A transaction body in canonical bytes, its signature and the parsed body."""

    body_bytes: bytes
    signature: bytes
    body: TransactionBody

    def verify(self, key: PublicKey) -> None:
        """Check the signature with the given key; raise `SignatureError` if it does not verify."""
        key.verify(signing_message(self.body_bytes), self.signature)

    def to_json(self) -> dict[str, Any]:
        """The wire form: ``{"body": {...}, "signature": base64}``."""
        return {"body": parse_canonical_json(self.body_bytes), "signature": b64encode(self.signature)}

    @classmethod
    def from_json(cls, value: Any) -> SignedTransaction:
        """Parse the wire form; the body is re-encoded canonically (that is what was signed)."""
        if not isinstance(value, dict) or set(value) != {"body", "signature"}:
            raise EncodingError("signed transaction: expected an object with exactly 'body' and 'signature'")
        if not isinstance(value["signature"], str):
            raise EncodingError("signed transaction: 'signature' must be a base64 string")
        signature = b64decode(value["signature"], what="signature", size=64)
        body_bytes = canonical_json(value["body"])
        if len(body_bytes) > MAX_TRANSACTION_BYTES:
            raise EncodingError(f"transaction: {len(body_bytes)} bytes, over the limit of {MAX_TRANSACTION_BYTES}")
        body = body_from_json(value["body"], original=body_bytes)
        return cls(body_bytes=body_bytes, signature=signature, body=body)


def sign_transaction(body: TransactionBody, key: PrivateKey) -> SignedTransaction:
    """Sign a body with the actor's key (the body must name that key's id)."""
    if body.key_id != key.key_id:
        raise EncodingError(f"transaction names key {body.key_id} but is signed with key {key.key_id}")
    body_bytes = encode_body(body)
    return SignedTransaction(body_bytes=body_bytes, signature=key.sign(signing_message(body_bytes)), body=body)


def make_body(
    *,
    origin: str,
    actor: str,
    key: PrivateKey | PublicKey,
    payload: BaseModel,
    nonce: str,
    created_at: datetime,
) -> TransactionBody:
    """Build a body for a payload; a convenience for clients, tests and the demo."""
    if not _NONCE_RE.match(nonce):
        raise EncodingError("nonce: 16 to 64 characters of A-Z a-z 0-9 _ -")
    key_id: KeyId = key.key_id
    try:
        return TransactionBody.model_validate(
            {
                "origin": origin,
                "actor": actor,
                "key_id": key_id,
                "nonce": nonce,
                "created_at": created_at,
                "payload": payload,
            }
        )
    except ValidationError as exc:
        raise EncodingError(f"transaction: {_describe(exc)}") from None


@dataclass(frozen=True, slots=True)
class TransactionSigner:
    """Signs payloads as one actor of one registry: what a client holds."""

    origin: str
    actor: str
    key: PrivateKey

    def sign(self, payload: BaseModel, *, at: datetime, nonce: str | None = None) -> SignedTransaction:
        """Sign a payload with a fresh random nonce (or the given one) and the given client time."""
        body = make_body(
            origin=self.origin,
            actor=self.actor,
            key=self.key,
            payload=payload,
            nonce=nonce if nonce is not None else secrets.token_urlsafe(18),
            created_at=at,
        )
        return sign_transaction(body, self.key)
