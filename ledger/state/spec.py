"""How each transaction kind is declared, once: its payload, who may sign it, its handler, what it does to
serial blocks, its place in certificates, and the refusals it can give.

Each domain module (`participants`, `projects`, `units`, `events`) declares its kinds as `KindSpec`s;
`ledger.state.kinds` gathers them. Every table the rest of the code reads (which roles sign a kind, which
handler applies it, which history action it records, which certificate role its entry plays, which
class of refusal a rule code is) is derived from these declarations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from pydantic import BaseModel

from ledger.transactions import Role

if TYPE_CHECKING:
    from ledger.state.context import Context
    from ledger.state.outcomes import Outcome


class Refusal(StrEnum):
    """What kind of refusal a rule code is (the registry answers each with its own HTTP status)."""

    FORBIDDEN = "forbidden"
    """The actor may not do this: who signed, with which key, in which role, for whose record."""
    NOT_FOUND = "not_found"
    """The transaction names a record that does not exist."""
    CONFLICT = "conflict"
    """The ledger's current state does not allow it now (already done, not yet possible, units elsewhere)."""
    INVALID = "invalid"
    """The transaction can never be accepted as signed."""


@dataclass(frozen=True, slots=True)
class KindSpec:
    """One transaction kind, declared once."""

    payload: type[BaseModel]
    """The payload model of `ledger.transactions`; its ``kind`` field's default names the kind."""
    roles: frozenset[Role]
    """The roles of which the signer must hold one."""
    handler: Callable[[Context], Outcome]
    """Checks every rule on the state and plans the changes (see `ledger.state.context`)."""
    codes: frozenset[str]
    """The rule codes the handler can refuse with (authorisation codes come on top of these)."""
    action: str | None = None
    """What the kind does to the serial blocks its outcome lists, in a serial's history (e.g. ``retired``)."""
    certificate_role: str | None = None
    """The role its entries play in a certificate, if certificates carry them."""

    @property
    def kind(self) -> str:
        default = self.payload.model_fields["kind"].default
        assert isinstance(default, str)
        return default


AUTHORISATION_CODES: dict[str, Refusal] = {
    "out_of_order": Refusal.CONFLICT,
    "time_regression": Refusal.CONFLICT,
    "replay": Refusal.CONFLICT,
    "nonce_reused": Refusal.CONFLICT,
    "stale_transaction": Refusal.INVALID,
    "wrong_origin": Refusal.INVALID,
    "genesis_missing": Refusal.INVALID,
    "genesis_not_first": Refusal.INVALID,
    "unknown_actor": Refusal.FORBIDDEN,
    "actor_suspended": Refusal.FORBIDDEN,
    "unknown_key": Refusal.FORBIDDEN,
    "revoked_key": Refusal.FORBIDDEN,
    "bad_signature": Refusal.FORBIDDEN,
    "forbidden": Refusal.FORBIDDEN,
}
"""The codes every kind can be refused with before its handler runs (`State.authorise`, the signature)."""

RULE_CODES: dict[str, Refusal] = {
    "forbidden": Refusal.FORBIDDEN,
    "conflict_of_interest": Refusal.FORBIDDEN,
    "not_engaged": Refusal.FORBIDDEN,
    "not_found": Refusal.NOT_FOUND,
    "conflict": Refusal.CONFLICT,
    "already_retired": Refusal.CONFLICT,
    "already_cancelled": Refusal.CONFLICT,
    "duplicate_key": Refusal.CONFLICT,
    "invalid_state": Refusal.CONFLICT,
    "insufficient_units": Refusal.CONFLICT,
    "insufficient_coverage": Refusal.CONFLICT,
    "not_held": Refusal.CONFLICT,
    "frozen": Refusal.CONFLICT,
    "overlapping_period": Refusal.CONFLICT,
    "no_final_footprint": Refusal.CONFLICT,
    "claim_window_closed": Refusal.CONFLICT,
    "too_early": Refusal.CONFLICT,
    "period_not_ended": Refusal.CONFLICT,
    "last_authority": Refusal.CONFLICT,
    "rule_version": Refusal.CONFLICT,
    "out_of_scope": Refusal.CONFLICT,
    "claimed_elsewhere": Refusal.CONFLICT,
    "records_missing": Refusal.CONFLICT,
    "no_consent": Refusal.CONFLICT,
    "subject_rewarded": Refusal.CONFLICT,
    "late_attestation": Refusal.CONFLICT,
    "insufficient_points": Refusal.CONFLICT,
    "not_expirable": Refusal.CONFLICT,
    "shorter_lifetime": Refusal.CONFLICT,
    "out_of_stock": Refusal.CONFLICT,
    "limit_reached": Refusal.CONFLICT,
    "offer_closed": Refusal.CONFLICT,
    "scene_not_approved": Refusal.CONFLICT,
    "invalid_key": Refusal.INVALID,
    "invalid_block": Refusal.INVALID,
    "invalid_transfer": Refusal.INVALID,
    "invalid_recipient": Refusal.INVALID,
    "invalid_verifier": Refusal.INVALID,
    "verified_exceeds_claimed": Refusal.INVALID,
    "outside_crediting_period": Refusal.INVALID,
    "empty_footprint": Refusal.INVALID,
    "event_mismatch": Refusal.INVALID,
    "retroactive": Refusal.INVALID,
    "invalid_rule": Refusal.INVALID,
    "invalid_provider": Refusal.INVALID,
    "invalid_scope": Refusal.INVALID,
    "not_in_force": Refusal.INVALID,
    "root_mismatch": Refusal.INVALID,
    "invalid_batch": Refusal.INVALID,
}
"""Every code a handler can refuse with, and its class."""


def refusal(code: str) -> Refusal:
    """The class of refusal of rule code `code` (INVALID for a code nothing declares)."""
    return AUTHORISATION_CODES.get(code) or RULE_CODES.get(code) or Refusal.INVALID
