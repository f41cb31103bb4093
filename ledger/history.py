"""The lifecycle of serials: what each entry did to which serial blocks.

Holdings (`ledger.state.Block`) say where units are now; a serial's history says how they got
there. Every entry that issues, transfers, retires, cancels or claims units yields one `Movement`
per serial block it touched. Like the projections, movements are derived from the log alone
(`movements` is a pure function of an entry's outcome), so the write path stores them beside the
entry and the audit recomputes them and compares, entry by entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ledger.serials import parse_block
from ledger.state import SPECS, Outcome, UnitsMoved

ACTIONS: tuple[str, ...] = tuple(spec.action for spec in SPECS.values() if spec.action is not None)
"""What an entry can do to serial blocks (each kind that moves units declares its action)."""


@dataclass(frozen=True, slots=True)
class Movement:
    """Serials ``first..last`` of one batch, and what entry ``entry`` did to them.

    ``from_holder`` held them before (None for an issuance); ``to_holder`` holds them after (None
    once they are retired, cancelled or claimed, which are terminal); ``ref`` names the batch,
    retirement, cancellation or claim the entry created.
    """

    TABLE: ClassVar[str] = "unit_movements"
    KEY: ClassVar[tuple[str, ...]] = ("entry", "batch_id", "first")
    entry: int
    batch_id: str
    first: int
    last: int
    action: str
    from_holder: str | None
    to_holder: str | None
    ref: str | None


def movements(index: int, actor: str, outcome: Outcome) -> list[Movement]:
    """The movements of entry `index`, signed by `actor`, whose application gave `outcome`."""
    if not isinstance(outcome, UnitsMoved):
        return []
    action = SPECS[outcome.kind].action
    assert action is not None, f"{outcome.kind} moves units, so its KindSpec names its action"
    blocks, holder_before, holder_after, ref = outcome.moved(actor)
    moved = []
    for text in blocks:
        rng = parse_block(text)
        moved.append(Movement(index, rng.batch_id, rng.first, rng.last, action, holder_before, holder_after, ref))
    moved.sort(key=lambda m: (m.batch_id, m.first))
    return moved


def span_class(first: int, last: int) -> int:
    """The length class of serials ``first..last``: the bit length of ``last - first``.

    A block of class k spans fewer than 2**k serials after its first, so the blocks of one class that
    touch serial s all start within 2**k - 1 serials before s: a serial's movements are found by one index
    range per class (`ledger.storage.store.movements_of_serials`) instead of by every movement before it.
    """
    return (last - first).bit_length()


def movement_row(movement: Movement) -> dict[str, Any]:
    """A movement as a row of the ``unit_movements`` table (``span``: its `span_class`)."""
    return {
        "entry": movement.entry,
        "batch_id": movement.batch_id,
        "first": movement.first,
        "last": movement.last,
        "span": span_class(movement.first, movement.last),
        "action": movement.action,
        "from_holder": movement.from_holder,
        "to_holder": movement.to_holder,
        "ref": movement.ref,
    }
