"""Every transaction kind, gathered from the domain modules, and the tables derived from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ledger.state import awards, events, participants, points, projects, scenes, units
from ledger.state.context import Context
from ledger.state.outcomes import Outcome
from ledger.state.spec import KindSpec
from ledger.transactions import PAYLOAD_TYPES, Role

SPECS: dict[str, KindSpec] = {
    spec.kind: spec
    for module in (participants, projects, units, events, points, awards, scenes)
    for spec in module.SPECS
}
"""Every kind, by name, in domain order."""

KIND_ROLES: dict[str, frozenset[Role]] = {kind: spec.roles for kind, spec in SPECS.items()}
"""Which roles may sign each kind (a participant may also revoke its own key whatever its roles)."""

HANDLERS: dict[type[Any], Callable[[Context], Outcome]] = {spec.payload: spec.handler for spec in SPECS.values()}

if set(HANDLERS) != set(PAYLOAD_TYPES) or len(SPECS) != len(PAYLOAD_TYPES):  # pragma: no cover  # import time
    missing = sorted(t.__name__ for t in set(PAYLOAD_TYPES) ^ set(HANDLERS))
    raise AssertionError(f"every payload type needs exactly one KindSpec; out of step: {missing}")
