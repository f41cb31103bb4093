"""The bodies of the carbon-points routes: the records a provider uploads, and what each read answers."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ledger.points_batch import MAX_QUANTITY

MAX_CHUNK = 10_000
"""The most records one upload request carries (a batch is sent in as many chunks as it needs)."""

SCHEMA_REF = "#/components/schemas/{model}"

AccountId = Annotated[str, StringConstraints(pattern=r"^PA[0-9a-f]{16}$")]
Subject = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


# --- the upload ------------------------------------------------------------------------------------------


class RecordIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    account_id: AccountId = Field(description="the point account, PA followed by 16 lowercase hex digits")
    quantity: int = Field(ge=1, le=MAX_QUANTITY, description="activity units of the rule's unit that day")
    subject: Subject = Field(description="the subject commitment, 64 lowercase hex (`ledger.points_batch`)")


class RecordsChunk(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    records: list[RecordIn] = Field(min_length=1, max_length=MAX_CHUNK)


def request_body_schemas() -> dict[str, dict[str, Any]]:
    """`RecordsChunk` and the model it uses, as OpenAPI component schemas (the route reads its body raw)."""
    schema = RecordsChunk.model_json_schema(ref_template=SCHEMA_REF, mode="validation")
    defs: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    return {**defs, "RecordsChunk": schema}


class Uploaded(_Out):
    batch_id: str
    uploaded: int = Field(description="records uploaded under the batch so far: the offset of the next chunk")


class Discarded(_Out):
    batch_id: str
    discarded: int = Field(description="how many uploaded records were deleted")


# --- batches ---------------------------------------------------------------------------------------------


class AttestationOut(_Out):
    batch_id: str
    provider: str
    rule_id: str
    version: int
    day: str
    count: int = Field(description="records in the batch")
    total_quantity: int
    root: str = Field(description="the RFC 6962 Merkle tree hash over the batch's record leaves, hex")
    points_awarded: int
    points_capped: int = Field(description="points the records earned above the caps, not awarded")
    reduction_g: int = Field(description="gCO2e the records avoided, by the rule's emission factor")
    claimable: bool
    clawed_back: int
    attested_at: int = Field(description="the log entry that attested the batch")


class RecordOut(_Out):
    position: int
    account_id: str
    quantity: int
    subject: str


class BatchRecords(_Out):
    batch_id: str
    provider: str
    attested: bool = Field(description="false while the provider is still uploading (or has not yet attested)")
    count: int
    records: list[RecordOut] = Field(description="every record, by position")


# --- accounts --------------------------------------------------------------------------------------------


class TotalsOut(_Out):
    awarded: int
    balance: int
    redeemed: int = Field(description="held by pending orders and spent by fulfilled ones")
    expired: int
    clawed_back: int


class LotOut(_Out):
    month: str = Field(description="YYYY-MM: the month of the activity that earned the points")
    points: int


class RedemptionOut(_Out):
    id: str
    offer_id: str
    quantity: int
    points: int
    lots: list[str] = Field(description='"YYYY-MM:points" taken from each lot, oldest first')
    state: str
    placed_at: int
    closed_at: int | None


class PointAccountOut(_Out):
    account_id: str
    account_kind: str
    operator: str
    opened_at: int = Field(description="the log entry that opened the account")
    totals: TotalsOut
    lots: list[LotOut] = Field(description="the account's lots, oldest month first")
    redemptions: list[RedemptionOut] = Field(description="oldest first")


class AccountRecordOut(_Out):
    batch_id: str
    position: int
    account_id: str
    quantity: int
    subject: str
    rule_id: str
    version: int
    day: str
    count: int = Field(description="records in the batch (the size of its tree)")
    root: str = Field(description="the batch's root, hex, as its points.attest entry commits to it")
    proof: list[str] = Field(description="the record leaf's inclusion proof in the batch's tree, hex hashes")
    attested_at: int = Field(description="the log entry of the batch's attestation (prove it in a checkpoint)")


class AccountRecords(_Out):
    account_id: str
    items: list[AccountRecordOut] = Field(description="every attested record of the account, by batch and position")


# --- public ----------------------------------------------------------------------------------------------


class PointsRuleOut(_Out):
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
    claim_mode: str
    subject: str
    displaced_source: str
    effective_from: str
    effective_until: str | None
    published_at: int = Field(description="the log entry that published this version")


class SceneOut(_Out):
    id: str
    merchant: str
    name: str
    category: str
    district: str
    address: str
    description: str
    state: str
    evaluator: str | None
    score: int | None
    opinion: str | None
    evaluated_at: int | None
    decided_at: int | None
    valid_until: str | None
    applied_at: int


class OfferOut(_Out):
    id: str
    scene_id: str
    merchant: str
    title: str
    price_points: int
    stock: int = Field(description="items left")
    per_account_limit: int
    valid_from: str
    valid_until: str
    state: str
    published_at: int
