"""The bodies of the private account reads."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from registry.public.schemas import BlockOut
from registry.serials.schemas import MovementOut


class Holdings(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    balance: int = Field(description="units the account holds now, across all its blocks")
    frozen: bool = Field(description="a frozen account can move nothing until the authority unfreezes it")
    blocks: list[BlockOut] = Field(description="one page of the held blocks, oldest batch first")
    next_cursor: str | None = Field(description="pass as cursor for the next page of blocks; null after the last")


class AccountMovement(MovementOut):
    direction: str = Field(description="in: the account received the units; out: they left it (or ended in it)")


class History(BaseModel):
    model_config = ConfigDict(frozen=True)

    account: str
    items: list[AccountMovement] = Field(description="movements into or out of the account, oldest first")
    next_cursor: str | None = Field(description="pass as cursor for the next page; null after the last")
