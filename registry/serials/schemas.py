"""The body of a serial's history."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from registry.public.schemas import BatchOut, BlockOut


class MovementOut(BaseModel):
    model_config = ConfigDict(frozen=True)

    entry: int = Field(description="the log entry that did it (verify it with /v1/log/proof/inclusion)")
    time: str = Field(description="when the registry accepted that entry (UTC)")
    action: str = Field(description="issued, transferred, retired, cancelled or claimed")
    block: str = Field(description="the serials the entry moved, as a block string")
    quantity: int
    from_holder: str | None = Field(description="who held them before (null for an issuance)")
    to_holder: str | None = Field(description="who holds them after (null once retired, cancelled or claimed)")
    ref: str | None = Field(description="the batch, retirement, cancellation or claim the entry created")


class SerialHistory(BaseModel):
    model_config = ConfigDict(frozen=True)

    serial: str = Field(description="the serial or serial block asked about")
    first: int
    last: int
    batch: BatchOut
    blocks: list[BlockOut] = Field(description="the blocks that hold these serials now")
    history: list[MovementOut] = Field(
        description="one page of the lifecycle events of these serials, oldest first (by entry, then first serial)"
    )
    next_cursor: str | None = Field(description="pass as cursor for the next page of history; null after the last")
