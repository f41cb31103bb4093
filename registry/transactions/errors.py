"""How the ledger's refusals read over HTTP: one status per rule-violation code.

The problem ``type`` of a refused transaction is ``PROBLEM_TYPE_BASE + code`` (e.g.
``.../problems/insufficient_units``), so clients branch on a stable name; the ``detail`` is the
violation's message. The status says what kind of refusal it is:

- 403, the actor may not do this (who signed, with which key, in which role): the `FORBIDDEN` codes.
- 404, the transaction names a record that does not exist: `not_found`.
- 409, the transaction conflicts with the ledger's current state (it was already done, or the units,
  states or nonces it relies on are not as it expects): the `CONFLICT` codes.
- 422, the transaction can never be accepted as signed: every other code (``wrong_origin``,
  ``stale_transaction``, ``invalid_key``, ``invalid_block``, ``verified_exceeds_claimed``,
  ``empty_footprint``, ``event_mismatch``, ``invalid_verifier``, ...).
"""

from __future__ import annotations

from ledger.errors import RuleViolation
from registry.errors import RegistryError, status_title

FORBIDDEN = frozenset(
    {
        "forbidden",
        "unknown_key",
        "revoked_key",
        "unknown_actor",
        "actor_suspended",
        "bad_signature",
        "conflict_of_interest",
        "not_engaged",
    }
)
NOT_FOUND = frozenset({"not_found"})
CONFLICT = frozenset(
    {
        "nonce_reused",
        "replay",
        "conflict",
        "already_retired",
        "already_cancelled",
        "duplicate_key",
        "invalid_state",
        "insufficient_units",
        "insufficient_coverage",
        "not_held",
        "frozen",
        "overlapping_period",
        "no_final_footprint",
        "claim_window_closed",
        "too_early",
        "period_not_ended",
        "last_authority",
        "time_regression",
        "out_of_order",
    }
)
REFUSAL_STATUSES = (403, 404, 409, 422)
"""Every status a rule violation can answer with (for the routes' ``responses=``)."""


def violation_status(code: str) -> int:
    """The HTTP status of a rule-violation code (422 for any code not listed)."""
    if code in FORBIDDEN:
        return 403
    if code in NOT_FOUND:
        return 404
    if code in CONFLICT:
        return 409
    return 422


class TransactionRefused(RegistryError):
    """The ledger refused the transaction: a rule, an authorisation or the signature failed."""

    def __init__(self, violation: RuleViolation) -> None:
        status = violation_status(violation.code)
        super().__init__(status, status_title(status), violation.message, violation.code)
        self.code = violation.code
