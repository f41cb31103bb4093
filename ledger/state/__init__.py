"""The registry's state machine: participants, keys, projects, reports, batches, units, events, claims.

`State` is what replaying the log yields. `State.authorise` decides whether an actor's key may sign a
transaction at a given entry (invariant 5); `State.apply` applies one transaction or raises a
`RuleViolation` at the first broken rule, without changing anything. The invariants of SPEC section 3
are pure `check_*` functions in `ledger.invariants`, used after each write and by the audit.

The package, by layer:

- `records`: the records, each a frozen dataclass and a row of a projection table;
- `outcomes`: what an applied transaction did, one frozen type per kind of effect;
- `spec`: how a kind is declared (`KindSpec`: payload, roles, handler, refusal codes, its history action
  and certificate role) and the classes of refusal;
- `context`: what a handler works with, and the helpers every domain shares;
- `participants`, `projects`, `units`, `events`, `points` (the public path): the domains, each its
  handlers and its `SPECS`;
- `kinds`: every kind gathered, and the tables derived from them;
- `core`: `State`, its authorisation and its apply.
"""

from ledger.state.context import HOLDER_ROLES, add_months
from ledger.state.core import FRESHNESS, State
from ledger.state.kinds import KIND_ROLES, SPECS
from ledger.state.outcomes import Outcome, UnitsMoved
from ledger.state.records import (
    RECORD_TYPES,
    Batch,
    Block,
    Cancellation,
    Claim,
    Consent,
    Event,
    Key,
    Methodology,
    Participant,
    PointAccount,
    PointsRule,
    Project,
    ProjectScopes,
    ProviderRules,
    Report,
    Retirement,
    Witness,
    record_key,
)
from ledger.state.spec import KindSpec, Refusal, refusal
from ledger.state.units import CLAIM_WINDOW_MONTHS

__all__ = [
    "CLAIM_WINDOW_MONTHS",
    "FRESHNESS",
    "HOLDER_ROLES",
    "KIND_ROLES",
    "RECORD_TYPES",
    "SPECS",
    "Batch",
    "Block",
    "Cancellation",
    "Claim",
    "Consent",
    "Event",
    "Key",
    "KindSpec",
    "Methodology",
    "Outcome",
    "Participant",
    "PointAccount",
    "PointsRule",
    "Project",
    "ProjectScopes",
    "ProviderRules",
    "Refusal",
    "Report",
    "Retirement",
    "State",
    "UnitsMoved",
    "Witness",
    "add_months",
    "record_key",
    "refusal",
]
