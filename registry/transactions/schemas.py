"""The wire shapes of the transactions endpoint: a signed transaction in, a receipt out."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ledger.encoding import b64encode
from ledger.ledger import Receipt
from ledger.transactions import TransactionBody

SCHEMA_REF = "#/components/schemas/{model}"


class SignedTransactionIn(BaseModel):
    """A signed transaction as the client sends it (documentation only: the route reads the raw JSON,
    whose canonical form is what the actor signed)."""

    model_config = ConfigDict(extra="forbid", title="SignedTransactionIn")

    body: TransactionBody = Field(description="the transaction body; its RFC 8785 canonical bytes are signed")
    signature: str = Field(
        description="base64 Ed25519 signature of 'cdcer/transaction/v1\\n' || canonical body bytes (64 bytes)"
    )


class ReceiptOut(BaseModel):
    """Proof that the transaction is in the log: its entry, the covering checkpoint, the inclusion proof."""

    index: int = Field(description="the entry's index in the log")
    leaf_hash: str = Field(description="SHA-256(0x00 || entry bytes), base64")
    checkpoint: str = Field(description="the signed checkpoint (C2SP signed note) covering the entry")
    tree_size: int = Field(description="the checkpoint's tree size")
    inclusion_proof: list[str] = Field(description="RFC 9162 inclusion proof of the entry in that tree, base64")
    duplicate: bool = Field(description="true when this transaction was already in the log (nothing was appended)")
    outcome: dict[str, Any] | None = Field(
        description="what the transaction did: its kind and the ids created and units moved; null for a duplicate"
    )

    @classmethod
    def of(cls, receipt: Receipt) -> ReceiptOut:
        outcome = None
        if receipt.outcome is not None:
            outcome = {"kind": receipt.outcome.kind, **receipt.outcome.details}
        return cls(
            index=receipt.index,
            leaf_hash=b64encode(receipt.leaf_hash),
            checkpoint=receipt.checkpoint.decode("utf-8"),
            tree_size=receipt.tree_size,
            inclusion_proof=[b64encode(h) for h in receipt.inclusion_proof],
            duplicate=receipt.duplicate,
            outcome=outcome,
        )


def request_body_schemas() -> dict[str, dict[str, Any]]:
    """`SignedTransactionIn` and the models it uses, as OpenAPI component schemas."""
    schema = SignedTransactionIn.model_json_schema(ref_template=SCHEMA_REF, mode="validation")
    defs: dict[str, dict[str, Any]] = schema.pop("$defs", {})
    return {**defs, "SignedTransactionIn": schema}
