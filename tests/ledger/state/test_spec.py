"""Each transaction kind is declared once (`KindSpec`), and every table the code reads derives from that."""

from __future__ import annotations

from typing import get_args

from ledger.certificate import ENTRY_ROLES
from ledger.certificate.format import EntryRole
from ledger.history import ACTIONS
from ledger.state import KIND_ROLES, SPECS, Refusal, refusal
from ledger.state.kinds import HANDLERS
from ledger.state.outcomes import Transferred
from ledger.state.spec import AUTHORISATION_CODES, RULE_CODES
from ledger.transactions import PAYLOAD_TYPES
from registry.transactions.errors import violation_status


def test_every_payload_type_has_exactly_one_spec() -> None:
    assert sorted(spec.payload.__name__ for spec in SPECS.values()) == sorted(t.__name__ for t in PAYLOAD_TYPES)
    assert set(HANDLERS) == set(PAYLOAD_TYPES)
    assert set(KIND_ROLES) == set(SPECS)
    assert all(spec.roles for spec in SPECS.values())


def test_every_code_a_kind_declares_has_a_refusal_class_and_every_class_is_used() -> None:
    declared = {code for spec in SPECS.values() for code in spec.codes}
    assert declared - set(RULE_CODES) == set()
    assert set(RULE_CODES) - declared == set()


def test_the_registry_answers_each_refusal_class_with_its_status() -> None:
    statuses = {Refusal.FORBIDDEN: 403, Refusal.NOT_FOUND: 404, Refusal.CONFLICT: 409, Refusal.INVALID: 422}
    for code in [*RULE_CODES, *AUTHORISATION_CODES]:
        assert violation_status(code) == statuses[refusal(code)], code
    assert refusal("a_rule_nobody_declared") is Refusal.INVALID


def test_certificate_roles_and_history_actions_come_from_the_specs() -> None:
    assert set(ENTRY_ROLES.values()) == set(get_args(EntryRole))
    assert ENTRY_ROLES["units.retire"] == "retirement"
    assert set(ACTIONS) == {"issued", "transferred", "retired", "cancelled", "claimed"}
    assert SPECS["claim.issue"].action == "claimed"


def test_typed_outcomes_read_as_the_receipts_json() -> None:
    moved = Transferred("units.transfer", "owner", "buyer", 5, ("CDCER-P0001-2023-001-000001-000005",))
    assert moved.details == {
        "from": "owner",
        "to": "buyer",
        "quantity": 5,
        "blocks": ["CDCER-P0001-2023-001-000001-000005"],
    }
    assert moved.moved("owner") == (moved.blocks, "owner", "buyer", None)
