"""What a transaction handler works with: the state, the transaction, and the changes it plans.

A handler checks every rule first and only then plans its changes on the `Context` (`put` a record,
drop a block). `State.apply` commits the plan only when the handler returns, so a refused transaction
(a `RuleViolation`, raised with `fail`) changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from ledger.errors import RuleViolation
from ledger.state.records import Participant, Project
from ledger.transactions import RegistryGenesis, Role, TransactionBody, format_utc

if TYPE_CHECKING:
    from ledger.state.core import State

HOLDER_ROLES = frozenset({Role.PROJECT_OWNER, Role.EVENT_ORGANISER, Role.ACCOUNT_HOLDER})
"""The roles that hold an account: they may receive, transfer and retire units."""


@dataclass(slots=True)
class Context:
    """One transaction being applied as entry `index` at `time`, and the changes planned so far."""

    state: State
    body: TransactionBody
    index: int
    time: datetime
    puts: list[Any] = field(default_factory=list)
    drops: list[tuple[str, int]] = field(default_factory=list)
    removes: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    attachment: Any = None
    """What the entry's transaction commits to but does not carry (a points batch's records), or None."""
    hooks: list[Callable[[State], None]] = field(default_factory=list)

    def put(self, record: Any) -> None:
        """Plan to write `record` (a new row, or a new version of one)."""
        self.puts.append(record)

    def remove(self, table: str, key: tuple[Any, ...]) -> None:
        """Plan to delete the record of `table` with primary key `key` (not a serial block: see `drops`)."""
        self.removes.append((table, key))

    def on_commit(self, hook: Callable[[State], None]) -> None:
        """Plan a change to the state's memory-only indexes (derived from the log, not stored as rows)."""
        self.hooks.append(hook)

    def commit(self) -> None:
        """Apply the planned changes to the state (only after every check has passed)."""
        st = self.state
        if isinstance(self.body.payload, RegistryGenesis):
            st.origin = self.body.origin
            st.registry_vkey = self.body.payload.registry_vkey
        for bid, first in self.drops:
            st._drop_block(bid, first)
        for record in self.puts:
            st._put(record)
        for table, key in self.removes:
            st._remove(table, key)
        for hook in self.hooks:
            hook(st)

    @property
    def actor(self) -> str:
        return self.body.actor

    @property
    def when(self) -> str:
        return format_utc(self.time)


def fail(code: str, message: str) -> RuleViolation:
    """The refusal of rule `code`, with a message a person can act on."""
    return RuleViolation(code, message)


def participant(ctx: Context, pid: str) -> Participant:
    """The registered participant `pid`, or refuse with not_found."""
    found = ctx.state.participants.get(pid)
    if found is None:
        raise fail("not_found", f"no participant {pid!r} is registered")
    return found


def project(ctx: Context, pid: str) -> Project:
    """The project `pid`, or refuse with not_found."""
    found = ctx.state.projects.get(pid)
    if found is None:
        raise fail("not_found", f"no project {pid}")
    return found


def add_months(day: date, months: int) -> date:
    """The same day `months` later, clamped to the end of a shorter month (31 January + 1 = 28 February)."""
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")
