"""How the ledger's refusals read over HTTP: one status per rule-violation code.

The problem ``type`` of a refused transaction is ``PROBLEM_TYPE_BASE + code`` (e.g.
``.../problems/insufficient_units``), so clients branch on a stable name; the ``detail`` is the
violation's message. The status says what kind of refusal it is, by the class the ledger declares for
the code (`ledger.state.spec`):

- 403, the actor may not do this (who signed, with which key, in which role): `Refusal.FORBIDDEN`.
- 404, the transaction names a record that does not exist: `Refusal.NOT_FOUND`.
- 409, the transaction conflicts with the ledger's current state (it was already done, or the units,
  states or nonces it relies on are not as it expects): `Refusal.CONFLICT`.
- 422, the transaction can never be accepted as signed: `Refusal.INVALID` (``wrong_origin``,
  ``stale_transaction``, ``invalid_key``, ``invalid_block``, ``verified_exceeds_claimed``,
  ``empty_footprint``, ``event_mismatch``, ``invalid_verifier``, ...), and any code nothing declares.
"""

from __future__ import annotations

from ledger.errors import RuleViolation
from ledger.state import Refusal, refusal
from registry.errors import RegistryError, status_title

STATUS: dict[Refusal, int] = {
    Refusal.FORBIDDEN: 403,
    Refusal.NOT_FOUND: 404,
    Refusal.CONFLICT: 409,
    Refusal.INVALID: 422,
}
REFUSAL_STATUSES = tuple(sorted(set(STATUS.values())))
"""Every status a rule violation can answer with (for the routes' ``responses=``)."""


def violation_status(code: str) -> int:
    """The HTTP status of a rule-violation code, by the class the ledger declares for it (422 if none)."""
    return STATUS[refusal(code)]


class TransactionRefused(RegistryError):
    """The ledger refused the transaction: a rule, an authorisation or the signature failed."""

    def __init__(self, violation: RuleViolation) -> None:
        status = violation_status(violation.code)
        super().__init__(status, status_title(status), violation.message, violation.code)
        self.code = violation.code
