"""The registry's state machine: participants, keys, projects, reports, batches, units, events, claims.

`State` is what replaying the log yields. `State.authorise` decides whether an actor's key may sign a
transaction at a given entry (invariant 5); `State.apply` applies one transaction or raises a
`RuleViolation` at the first broken rule, without changing anything. The invariants of SPEC
section 3 are pure `check_*` functions in `ledger.invariants`, used after each write and by the audit.

Every record is a frozen dataclass and a row of a projection table: `State.dirty` names the rows an
apply changed, so storage writes only those.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, ClassVar

from ledger.checkpoint import CosignatureVerifier
from ledger.errors import EncodingError, NoteError, RuleViolation
from ledger.keys import PublicKey
from ledger.note import NoteVerifier
from ledger.serials import SerialRange, batch_id, parse_block
from ledger.transactions import (
    UNITS_PER_CDCER_KG,
    Cancel,
    ClaimIssue,
    EventFootprint,
    EventRegister,
    FootprintStage,
    Freeze,
    FreezeTarget,
    Issue,
    KeyAdd,
    KeyRevoke,
    KeyRotate,
    MethodologyPublish,
    MethodologyWithdraw,
    Opinion,
    ParticipantRegister,
    ParticipantReinstate,
    ParticipantSetRoles,
    ParticipantSuspend,
    ProjectClose,
    ProjectDecide,
    ProjectDecision,
    ProjectReinstate,
    ProjectResubmit,
    ProjectSubmit,
    ProjectSuspend,
    ProjectValidate,
    RegistryGenesis,
    ReportReject,
    ReportSubmit,
    ReportVerify,
    Retire,
    Role,
    Selection,
    TransactionBody,
    Transfer,
    Unfreeze,
    WitnessRegister,
    WitnessRemove,
    format_utc,
)

FRESHNESS = timedelta(minutes=15)
"""A transaction's client time must lie within this much of its acceptance time. Together with
nonces this bounds replay detection to a sliding window, so the audit needs bounded memory."""

CLAIM_WINDOW_MONTHS = 12
HOLDER_ROLES = frozenset({Role.PROJECT_OWNER, Role.EVENT_ORGANISER, Role.ACCOUNT_HOLDER})

# Which roles may sign each kind. "self" marks kinds a participant may also sign for itself.
KIND_ROLES: dict[str, frozenset[Role]] = {
    "registry.genesis": frozenset({Role.AUTHORITY}),
    "participant.register": frozenset({Role.AUTHORITY}),
    "participant.set_roles": frozenset({Role.AUTHORITY}),
    "participant.suspend": frozenset({Role.AUTHORITY}),
    "participant.reinstate": frozenset({Role.AUTHORITY}),
    "key.add": frozenset({Role.AUTHORITY}),
    "key.revoke": frozenset({Role.AUTHORITY}),
    "key.rotate": frozenset({Role.AUTHORITY}),
    "witness.register": frozenset({Role.AUTHORITY}),
    "witness.remove": frozenset({Role.AUTHORITY}),
    "methodology.publish": frozenset({Role.AUTHORITY}),
    "methodology.withdraw": frozenset({Role.AUTHORITY}),
    "project.submit": frozenset({Role.PROJECT_OWNER}),
    "project.resubmit": frozenset({Role.PROJECT_OWNER}),
    "project.validate": frozenset({Role.VERIFIER}),
    "project.decide": frozenset({Role.AUTHORITY}),
    "project.suspend": frozenset({Role.AUTHORITY}),
    "project.reinstate": frozenset({Role.AUTHORITY}),
    "project.close": frozenset({Role.AUTHORITY}),
    "report.submit": frozenset({Role.PROJECT_OWNER}),
    "report.verify": frozenset({Role.VERIFIER}),
    "report.reject": frozenset({Role.VERIFIER, Role.AUTHORITY}),
    "issuance.issue": frozenset({Role.AUTHORITY}),
    "units.transfer": HOLDER_ROLES,
    "units.retire": HOLDER_ROLES,
    "units.cancel": frozenset({Role.AUTHORITY}),
    "freeze.set": frozenset({Role.AUTHORITY}),
    "freeze.lift": frozenset({Role.AUTHORITY}),
    "event.register": frozenset({Role.EVENT_ORGANISER}),
    "event.footprint": frozenset({Role.EVENT_ORGANISER}),
    "claim.issue": frozenset({Role.EVENT_ORGANISER}),
}


# --- records (each one a row of a projection table) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class Participant:
    TABLE: ClassVar[str] = "participants"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    name: str
    roles: tuple[str, ...]
    status: str  # active | suspended
    frozen: bool
    registered_at: int


@dataclass(frozen=True, slots=True)
class Key:
    TABLE: ClassVar[str] = "participant_keys"
    KEY: ClassVar[tuple[str, ...]] = ("key_id",)
    key_id: str
    participant_id: str
    public_key: str
    added_at: int
    revoked_at: int | None


@dataclass(frozen=True, slots=True)
class Witness:
    TABLE: ClassVar[str] = "witnesses"
    KEY: ClassVar[tuple[str, ...]] = ("name",)
    name: str
    vkey: str
    added_at: int
    removed_at: int | None


@dataclass(frozen=True, slots=True)
class Methodology:
    TABLE: ClassVar[str] = "methodologies"
    KEY: ClassVar[tuple[str, ...]] = ("code", "version")
    code: str
    version: str
    title: str
    sector: str
    document_sha256: str
    status: str  # active | withdrawn
    published_at: int


@dataclass(frozen=True, slots=True)
class Project:
    TABLE: ClassVar[str] = "projects"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    owner: str
    methodology_code: str
    methodology_version: str
    title: str
    district: str
    description: str
    crediting_start: str
    crediting_end: str
    estimated_annual_reductions: int
    documents: tuple[str, ...]
    state: str  # submitted validated registered rejected changes_requested suspended closed
    validator: str | None
    opinion: str | None
    frozen: bool
    submitted_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Report:
    TABLE: ClassVar[str] = "monitoring_reports"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    project_id: str
    period_start: str
    period_end: str
    claimed: int
    verified: int | None
    verifier: str | None
    state: str  # submitted verified issued rejected
    submitted_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class Batch:
    TABLE: ClassVar[str] = "batches"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    project_id: str
    vintage: int
    number: int
    report_id: str
    quantity: int
    owner: str
    sequence: int  # global issuance order: oldest serials first means lowest (vintage, sequence)
    issued_at: int
    issued_time: str


@dataclass(frozen=True, slots=True)
class Block:
    TABLE: ClassVar[str] = "unit_blocks"
    KEY: ClassVar[tuple[str, ...]] = ("batch_id", "first")
    batch_id: str
    first: int
    last: int
    state: str  # held | retired | cancelled
    holder: str
    ref: str | None  # retirement or cancellation id
    updated_at: int

    @property
    def range(self) -> SerialRange:
        return SerialRange(self.batch_id, self.first, self.last)

    @property
    def quantity(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True)
class Retirement:
    TABLE: ClassVar[str] = "retirements"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    holder: str
    quantity: int
    blocks: tuple[str, ...]
    beneficiary: str
    purpose: str
    event_id: str | None
    year: int | None
    reason: str
    claim_id: str | None
    entry: int
    retired_time: str


@dataclass(frozen=True, slots=True)
class Cancellation:
    TABLE: ClassVar[str] = "cancellations"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    holder: str
    quantity: int
    blocks: tuple[str, ...]
    reason_code: str
    reason: str
    entry: int
    cancelled_time: str


@dataclass(frozen=True, slots=True)
class Event:
    TABLE: ClassVar[str] = "events"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    organiser: str
    name: str
    kind: str
    venue: str
    start_date: str
    end_date: str
    expected_attendees: int
    planned_footprint: tuple[tuple[str, int], ...]
    final_footprint: tuple[tuple[str, int], ...]
    final_footprint_kg: int | None
    retired_units: int
    claim_id: str | None
    registered_at: int


@dataclass(frozen=True, slots=True)
class Claim:
    TABLE: ClassVar[str] = "claims"
    KEY: ClassVar[tuple[str, ...]] = ("id",)
    id: str
    event_id: str
    organiser: str
    footprint_kg: int
    footprint: tuple[tuple[str, int], ...]
    units: int
    retirements: tuple[str, ...]
    blocks: tuple[str, ...]
    entry: int
    issued_time: str


RECORD_TYPES: tuple[type[Any], ...] = (
    Participant,
    Key,
    Witness,
    Methodology,
    Project,
    Report,
    Batch,
    Block,
    Retirement,
    Cancellation,
    Event,
    Claim,
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one applied transaction did, for the receipt: ids created and units moved."""

    kind: str
    details: dict[str, Any] = field(default_factory=dict)


def record_key(record: Any) -> tuple[Any, ...]:
    """The primary key of a record, as a tuple."""
    return tuple(getattr(record, name) for name in record.KEY)


# --- the state -----------------------------------------------------------------------------------------


class State:
    """The registry state that replaying the log builds, and the rules every transaction must pass."""

    def __init__(self) -> None:
        self.origin: str | None = None
        self.registry_vkey: str | None = None
        self.size = 0  # entries applied so far (the next entry's index)
        self.participants: dict[str, Participant] = {}
        self.keys: dict[str, Key] = {}
        self.witnesses: dict[str, Witness] = {}
        self.methodologies: dict[tuple[str, str], Methodology] = {}
        self.projects: dict[str, Project] = {}
        self.reports: dict[str, Report] = {}
        self.reports_by_project: dict[str, list[str]] = {}
        self.batches: dict[str, Batch] = {}
        self.batch_count: dict[tuple[str, int], int] = {}
        self.retirements: dict[str, Retirement] = {}
        self.cancellations: dict[str, Cancellation] = {}
        self.events: dict[str, Event] = {}
        self.claims: dict[str, Claim] = {}
        # Units: every block of a batch, sorted by first serial; and each holder's held blocks.
        self.blocks: dict[str, list[Block]] = {}
        self._firsts: dict[str, list[int]] = {}
        self.held: dict[str, set[tuple[str, int]]] = {}
        # Each holder's held blocks by age (vintage, issuance order, first serial), and running totals,
        # so balances and "oldest serials first" cost O(blocks moved), not O(blocks held).
        self._held_order: dict[str, list[tuple[int, int, str, int]]] = {}
        self._balances: dict[str, int] = {}
        # Replay protection: (actor, nonce) digests of the last FRESHNESS window of entries.
        # Nonce digests bucketed by the minute of acceptance; whole buckets expire together. A set of
        # small ints per minute costs ~60 bytes a transaction, whatever the log's length.
        self._nonce_buckets: deque[tuple[int, set[int]]] = deque()
        self.last_time: datetime | None = None
        self.dirty: set[tuple[str, tuple[Any, ...]]] = set()
        self._by_table: dict[str, dict[Any, Any]] = {
            Participant.TABLE: self.participants,
            Key.TABLE: self.keys,
            Witness.TABLE: self.witnesses,
            Methodology.TABLE: self.methodologies,
            Project.TABLE: self.projects,
            Report.TABLE: self.reports,
            Batch.TABLE: self.batches,
            Retirement.TABLE: self.retirements,
            Cancellation.TABLE: self.cancellations,
            Event.TABLE: self.events,
            Claim.TABLE: self.claims,
        }

    # ---- reading ------------------------------------------------------------------------------------

    def records(self, table: str) -> Iterator[Any]:
        """Every record of one projection table, in primary-key order."""
        source: dict[Any, Any] = self._by_table.get(table, {})
        if table == Block.TABLE:
            for bid in sorted(self.blocks):
                yield from self.blocks[bid]
            return
        for key in sorted(source):
            yield source[key]

    def lookup(self, table: str, key: tuple[Any, ...]) -> Any | None:
        """One record by table and primary key, or None if it no longer exists."""
        if table == Block.TABLE:
            found = self._find_block(key[0], key[1])
            return found if found is not None and found.first == key[1] else None
        single = key[0] if len(key) == 1 else key
        return self._by_table[table].get(single)

    def balance(self, holder: str) -> int:
        """Units an account holds now."""
        return self._balances.get(holder, 0)

    def held_blocks(self, holder: str) -> Iterator[Block]:
        """An account's held blocks, oldest serials first (lazily: stop when you have enough).

        Do not change the state while iterating.
        """
        for _, _, bid, first in self._held_order.get(holder, ()):
            block = self._find_block(bid, first)
            assert block is not None
            assert block.first == first
            yield block

    def _age(self, block: Block) -> tuple[int, int, str, int]:
        batch = self.batches[block.batch_id]
        return (batch.vintage, batch.sequence, block.batch_id, block.first)

    def _hold(self, block: Block) -> None:
        self.held.setdefault(block.holder, set()).add((block.batch_id, block.first))
        bisect.insort(self._held_order.setdefault(block.holder, []), self._age(block))
        self._balances[block.holder] = self._balances.get(block.holder, 0) + block.quantity

    def _unhold(self, block: Block) -> None:
        self.held[block.holder].discard((block.batch_id, block.first))
        order = self._held_order[block.holder]
        age = self._age(block)
        pos = bisect.bisect_left(order, age)
        if pos < len(order) and order[pos] == age:
            del order[pos]
        self._balances[block.holder] -= block.quantity

    def _find_block(self, bid: str, serial: int) -> Block | None:
        firsts = self._firsts.get(bid)
        if not firsts:
            return None
        pos = bisect.bisect_right(firsts, serial) - 1
        if pos < 0:
            return None
        block = self.blocks[bid][pos]
        return block if block.first <= serial <= block.last else None

    # ---- authorisation (invariant 5) ------------------------------------------------------------------

    def authorise(self, body: TransactionBody, *, index: int, accepted_at: datetime) -> PublicKey:
        """Check origin, freshness, replay, actor, key and role; return the key that must have signed.

        The caller verifies the signature with the returned key. Raises `RuleViolation`.
        """
        if index != self.size:
            raise RuleViolation("out_of_order", f"entry {index} applied when {self.size} was expected")
        if self.last_time is not None and accepted_at < self.last_time:
            raise RuleViolation(
                "time_regression",
                f"acceptance time {format_utc(accepted_at)} is before the previous entry's "
                f"{format_utc(self.last_time)}",
            )
        if abs(body.created_at - accepted_at) > FRESHNESS:
            raise RuleViolation(
                "stale_transaction",
                f"transaction time {format_utc(body.created_at)} is more than "
                f"{int(FRESHNESS.total_seconds() // 60)} minutes from the registry's time "
                f"{format_utc(accepted_at)}; sign it again with the current time",
            )
        digest = _nonce_digest(body.actor, body.nonce)
        self._expire_nonces(accepted_at)
        if any(digest in seen for _, seen in self._nonce_buckets):
            raise RuleViolation(
                "replay",
                f"nonce {body.nonce} of {body.actor} was already used in the last "
                f"{int(2 * FRESHNESS.total_seconds() // 60)} minutes",
            )
        if isinstance(body.payload, RegistryGenesis) and index == 0:
            key = PublicKey.from_b64(body.payload.authority_public_key)
            if key.key_id != body.key_id:
                raise RuleViolation("unknown_key", f"genesis names key {body.key_id} but carries {key.key_id}")
            return key
        if index == 0:
            raise RuleViolation("genesis_missing", "entry 0 must be registry.genesis")
        if body.origin != self.origin:
            raise RuleViolation("wrong_origin", f"transaction is for registry {body.origin!r}, this is {self.origin!r}")
        actor = self.participants.get(body.actor)
        if actor is None:
            raise RuleViolation("unknown_actor", f"no participant {body.actor!r} is registered")
        if actor.status != "active":
            raise RuleViolation("actor_suspended", f"participant {body.actor} is suspended")
        stored = self.keys.get(body.key_id)
        if stored is None or stored.participant_id != body.actor:
            raise RuleViolation("unknown_key", f"key {body.key_id} is not registered to {body.actor}")
        if stored.revoked_at is not None:
            raise RuleViolation(
                "revoked_key", f"key {body.key_id} of {body.actor} was revoked at entry {stored.revoked_at}"
            )
        allowed = KIND_ROLES[body.kind]
        roles = set(actor.roles)
        self_revoke = (
            isinstance(body.payload, KeyRevoke) and body.payload.participant_id == body.actor
        )  # anyone may revoke their own (stolen) key
        if not self_revoke and not roles & {r.value for r in allowed}:
            needed = " or ".join(sorted(r.value for r in allowed))
            raise RuleViolation("forbidden", f"{body.kind} needs the role {needed}; {body.actor} has {sorted(roles)}")
        if isinstance(body.payload, RegistryGenesis):  # an authority's, after the role check: others get forbidden
            raise RuleViolation("genesis_not_first", "registry.genesis is only valid as entry 0")
        return PublicKey.from_b64(stored.public_key)

    def skip(self, index: int) -> None:
        """Count entry ``index`` as seen without applying it (the audit, after reporting it as bad)."""
        self.size = index + 1

    def _expire_nonces(self, now: datetime) -> None:
        # Keep one extra minute so a bucket is dropped only when all of it is past the window.
        horizon = _minute(now - 2 * FRESHNESS) - 1
        while self._nonce_buckets and self._nonce_buckets[0][0] < horizon:
            self._nonce_buckets.popleft()

    # ---- applying ----------------------------------------------------------------------------------------

    def apply(self, body: TransactionBody, *, index: int, accepted_at: datetime) -> Outcome:
        """Apply one authorised transaction as entry ``index``; raise `RuleViolation` and change nothing.

        Call `authorise` first (and verify the signature with the key it returns).
        """
        if index != self.size:
            raise RuleViolation("out_of_order", f"entry {index} applied when {self.size} was expected")
        handler = _HANDLERS[type(body.payload)]
        ctx = _Context(state=self, body=body, index=index, time=accepted_at)
        outcome = handler(ctx)
        # Every check has passed: commit the planned changes.
        ctx.commit()
        minute = _minute(accepted_at)
        if not self._nonce_buckets or self._nonce_buckets[-1][0] != minute:
            self._nonce_buckets.append((minute, set()))
        self._nonce_buckets[-1][1].add(_nonce_digest(body.actor, body.nonce))
        self.last_time = accepted_at
        self.size = index + 1
        return outcome

    # ---- mutation primitives used by _Context.commit ----------------------------------------------

    def _put(self, record: Any) -> None:
        table = record.TABLE
        key = record_key(record)
        if table == Block.TABLE:
            self._put_block(record)
        else:
            target = self._table(table)
            if table == Report.TABLE and key[0] not in target:
                # The index the overlap rule reads: kept here so it changes only on commit.
                self.reports_by_project.setdefault(record.project_id, []).append(key[0])
            target[key[0] if len(key) == 1 else key] = record
        self.dirty.add((table, key))

    def _table(self, table: str) -> dict[Any, Any]:
        return self._by_table[table]

    def _put_block(self, block: Block) -> None:
        blocks = self.blocks.setdefault(block.batch_id, [])
        firsts = self._firsts.setdefault(block.batch_id, [])
        pos = bisect.bisect_left(firsts, block.first)
        if pos < len(firsts) and firsts[pos] == block.first:
            old = blocks[pos]
            if old.state == "held":
                self._unhold(old)
            blocks[pos] = block
        else:
            blocks.insert(pos, block)
            firsts.insert(pos, block.first)
        if block.state == "held":
            self._hold(block)

    def _drop_block(self, bid: str, first: int) -> None:
        firsts = self._firsts[bid]
        pos = bisect.bisect_left(firsts, first)
        old = self.blocks[bid][pos]
        if old.state == "held":
            self._unhold(old)
        del self.blocks[bid][pos]
        del firsts[pos]
        self.dirty.add((Block.TABLE, (bid, first)))


def _nonce_digest(actor: str, nonce: str) -> int:
    # 64 bits: a false "replay" needs a collision among the ~10^6 nonces of one window (p < 10^-7).
    return int.from_bytes(hashlib.sha256(f"{actor}\x00{nonce}".encode()).digest()[:8], "big")


def _minute(when: datetime) -> int:
    return int(when.timestamp()) // 60


def _add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year = day.year + month // 12
    month = month % 12 + 1
    for last in (31, 30, 29, 28):
        try:
            return date(year, month, min(day.day, last))
        except ValueError:
            continue
    raise AssertionError("unreachable")


# --- handlers: check everything, then plan changes on the context -----------------------------------------


@dataclass(slots=True)
class _Context:
    state: State
    body: TransactionBody
    index: int
    time: datetime
    puts: list[Any] = field(default_factory=list)
    drops: list[tuple[str, int]] = field(default_factory=list)

    def put(self, record: Any) -> None:
        self.puts.append(record)

    def commit(self) -> None:
        st = self.state
        if isinstance(self.body.payload, RegistryGenesis):
            st.origin = self.body.origin
            st.registry_vkey = self.body.payload.registry_vkey
        for bid, first in self.drops:
            st._drop_block(bid, first)
        for record in self.puts:
            st._put(record)

    @property
    def actor(self) -> str:
        return self.body.actor

    @property
    def when(self) -> str:
        return format_utc(self.time)


def _fail(code: str, message: str) -> RuleViolation:
    return RuleViolation(code, message)


def _participant(ctx: _Context, pid: str) -> Participant:
    found = ctx.state.participants.get(pid)
    if found is None:
        raise _fail("not_found", f"no participant {pid!r} is registered")
    return found


def _public_key(text: str) -> PublicKey:
    try:
        return PublicKey.from_b64(text)
    except EncodingError as exc:
        raise _fail("invalid_key", f"public key: {exc}") from None


def _new_key(ctx: _Context, pid: str, text: str, seen: set[str]) -> Key:
    key = _public_key(text)
    if key.key_id in ctx.state.keys or key.key_id in seen:
        raise _fail("duplicate_key", f"key {key.key_id} is already registered")
    seen.add(key.key_id)
    return Key(key.key_id, pid, key.b64(), ctx.index, None)


def _genesis(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, RegistryGenesis)
    _check_vkey(p.registry_vkey)
    ctx.put(Participant(ctx.actor, p.authority_name, (Role.AUTHORITY.value,), "active", False, ctx.index))
    ctx.put(_new_key(ctx, ctx.actor, p.authority_public_key, set()))
    return Outcome(p.kind, {"participant_id": ctx.actor})


def _check_vkey(vkey: str, *, witness: bool = False) -> str:
    """Parse a verifier key (the log's Ed25519 key, or a witness's cosignature key); return its name."""
    try:
        verifier = CosignatureVerifier.from_vkey(vkey) if witness else NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        raise _fail("invalid_key", str(exc)) from None
    return verifier.name


def _participant_register(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ParticipantRegister)
    if p.participant_id in ctx.state.participants:
        raise _fail("conflict", f"participant {p.participant_id} is already registered")
    roles = tuple(sorted({r.value for r in p.roles}))
    ctx.put(Participant(p.participant_id, p.name, roles, "active", False, ctx.index))
    seen: set[str] = set()
    key_ids = []
    for text in p.public_keys:
        key = _new_key(ctx, p.participant_id, text, seen)
        key_ids.append(key.key_id)
        ctx.put(key)
    return Outcome(p.kind, {"participant_id": p.participant_id, "key_ids": key_ids})


def _participant_set_roles(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ParticipantSetRoles)
    part = _participant(ctx, p.participant_id)
    roles = tuple(sorted({r.value for r in p.roles}))
    if Role.AUTHORITY.value in part.roles and Role.AUTHORITY.value not in roles:
        _require_other_authority(ctx, p.participant_id)
    ctx.put(replace(part, roles=roles))
    return Outcome(p.kind, {"participant_id": p.participant_id, "roles": list(roles)})


def _require_other_authority(ctx: _Context, pid: str) -> None:
    others = [
        q
        for q in ctx.state.participants.values()
        if q.id != pid and Role.AUTHORITY.value in q.roles and q.status == "active"
    ]
    if not others:
        raise _fail("last_authority", f"{pid} is the last active authority; register another first")


def _participant_status(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ParticipantSuspend | ParticipantReinstate)
    part = _participant(ctx, p.participant_id)
    suspend = isinstance(p, ParticipantSuspend)
    if suspend and part.status == "suspended":
        raise _fail("invalid_state", f"participant {part.id} is already suspended")
    if not suspend and part.status == "active":
        raise _fail("invalid_state", f"participant {part.id} is not suspended")
    if suspend and Role.AUTHORITY.value in part.roles:
        _require_other_authority(ctx, part.id)
    ctx.put(replace(part, status="suspended" if suspend else "active"))
    return Outcome(p.kind, {"participant_id": part.id})


def _key_add(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, KeyAdd)
    _participant(ctx, p.participant_id)
    key = _new_key(ctx, p.participant_id, p.public_key, set())
    ctx.put(key)
    return Outcome(p.kind, {"participant_id": p.participant_id, "key_id": key.key_id})


def _live_key(ctx: _Context, pid: str, key_id: str) -> Key:
    _participant(ctx, pid)
    key = ctx.state.keys.get(key_id)
    if key is None or key.participant_id != pid:
        raise _fail("not_found", f"key {key_id} is not registered to {pid}")
    if key.revoked_at is not None:
        raise _fail("invalid_state", f"key {key_id} was already revoked at entry {key.revoked_at}")
    return key


def _key_revoke(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, KeyRevoke)
    key = _live_key(ctx, p.participant_id, p.key_id)
    _require_other_live_key_if_authority(ctx, p.participant_id, p.key_id)
    ctx.put(replace(key, revoked_at=ctx.index))
    return Outcome(p.kind, {"participant_id": p.participant_id, "key_id": key.key_id, "revoked_at": ctx.index})


def _require_other_live_key_if_authority(ctx: _Context, pid: str, key_id: str) -> None:
    part = ctx.state.participants[pid]
    if Role.AUTHORITY.value not in part.roles:
        return
    live = [k for k in ctx.state.keys.values() if k.revoked_at is None and k.key_id != key_id]
    authorities = {q.id for q in ctx.state.participants.values() if Role.AUTHORITY.value in q.roles}
    if not any(k.participant_id in authorities for k in live):
        raise _fail("last_authority", f"key {key_id} is the authority's last valid key; add another first")


def _key_rotate(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, KeyRotate)
    old = _live_key(ctx, p.participant_id, p.old_key_id)
    new = _new_key(ctx, p.participant_id, p.new_public_key, set())
    ctx.put(new)
    ctx.put(replace(old, revoked_at=ctx.index))
    return Outcome(p.kind, {"participant_id": p.participant_id, "key_id": new.key_id, "revoked": old.key_id})


def _witness_register(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, WitnessRegister)
    name = _check_vkey(p.vkey, witness=True)
    existing = ctx.state.witnesses.get(name)
    if existing is not None and existing.removed_at is None:
        raise _fail("conflict", f"witness {name} is already registered")
    ctx.put(Witness(name, p.vkey, ctx.index, None))
    return Outcome(p.kind, {"witness": name})


def _witness_remove(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, WitnessRemove)
    existing = ctx.state.witnesses.get(p.name)
    if existing is None or existing.removed_at is not None:
        raise _fail("not_found", f"no registered witness {p.name!r}")
    ctx.put(replace(existing, removed_at=ctx.index))
    return Outcome(p.kind, {"witness": p.name})


def _methodology_publish(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, MethodologyPublish)
    if (p.code, p.version) in ctx.state.methodologies:
        raise _fail("conflict", f"methodology {p.code} version {p.version} is already published")
    ctx.put(Methodology(p.code, p.version, p.title, p.sector, p.document_sha256, "active", ctx.index))
    return Outcome(p.kind, {"code": p.code, "version": p.version})


def _methodology_withdraw(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, MethodologyWithdraw)
    found = ctx.state.methodologies.get((p.code, p.version))
    if found is None:
        raise _fail("not_found", f"no methodology {p.code} version {p.version}")
    if found.status != "active":
        raise _fail("invalid_state", f"methodology {p.code} version {p.version} is already withdrawn")
    ctx.put(replace(found, status="withdrawn"))
    return Outcome(p.kind, {"code": p.code, "version": p.version})


def _check_methodology(ctx: _Context, code: str, version: str) -> None:
    found = ctx.state.methodologies.get((code, version))
    if found is None:
        raise _fail("not_found", f"no methodology {code} version {version} is published")
    if found.status != "active":
        raise _fail("invalid_state", f"methodology {code} version {version} is withdrawn")


def _project_submit(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectSubmit)
    d = p.details
    _check_methodology(ctx, d.methodology_code, d.methodology_version)
    pid = f"P{len(ctx.state.projects) + 1:04d}"
    ctx.put(
        Project(
            pid,
            ctx.actor,
            d.methodology_code,
            d.methodology_version,
            d.title,
            d.district,
            d.description,
            d.crediting_start.isoformat(),
            d.crediting_end.isoformat(),
            d.estimated_annual_reductions,
            d.documents,
            "submitted",
            None,
            None,
            False,
            ctx.index,
            ctx.index,
        )
    )
    return Outcome(p.kind, {"project_id": pid})


def _project(ctx: _Context, pid: str) -> Project:
    found = ctx.state.projects.get(pid)
    if found is None:
        raise _fail("not_found", f"no project {pid}")
    return found


def _project_resubmit(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectResubmit)
    proj = _project(ctx, p.project_id)
    if proj.owner != ctx.actor:
        raise _fail("forbidden", f"project {proj.id} belongs to {proj.owner}, not {ctx.actor}")
    if proj.state != "changes_requested":
        raise _fail("invalid_state", f"project {proj.id} is {proj.state}; only changes_requested can be resubmitted")
    d = p.details
    _check_methodology(ctx, d.methodology_code, d.methodology_version)
    ctx.put(
        replace(
            proj,
            methodology_code=d.methodology_code,
            methodology_version=d.methodology_version,
            title=d.title,
            district=d.district,
            description=d.description,
            crediting_start=d.crediting_start.isoformat(),
            crediting_end=d.crediting_end.isoformat(),
            estimated_annual_reductions=d.estimated_annual_reductions,
            documents=d.documents,
            state="submitted",
            validator=None,
            opinion=None,
            updated_at=ctx.index,
        )
    )
    return Outcome(p.kind, {"project_id": proj.id})


def _project_validate(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectValidate)
    proj = _project(ctx, p.project_id)
    if proj.owner == ctx.actor:
        raise _fail("conflict_of_interest", f"{ctx.actor} owns project {proj.id} and may not validate it")
    if proj.state != "submitted":
        raise _fail("invalid_state", f"project {proj.id} is {proj.state}; only a submitted project is validated")
    ctx.put(replace(proj, state="validated", validator=ctx.actor, opinion=p.opinion.value, updated_at=ctx.index))
    return Outcome(p.kind, {"project_id": proj.id, "opinion": p.opinion.value})


def _project_decide(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectDecide)
    proj = _project(ctx, p.project_id)
    if proj.owner == ctx.actor:
        raise _fail("conflict_of_interest", f"{ctx.actor} owns project {proj.id} and may not decide on it")
    if p.decision is ProjectDecision.REGISTER:
        if proj.state != "validated" or proj.opinion != Opinion.POSITIVE.value:
            raise _fail(
                "invalid_state",
                f"project {proj.id} is {proj.state}"
                + (f" with a {proj.opinion} opinion" if proj.opinion else "")
                + "; registration needs a positive validation",
            )
        new_state = "registered"
    else:
        if proj.state not in ("submitted", "validated"):
            raise _fail("invalid_state", f"project {proj.id} is {proj.state}; only a pending project is decided")
        new_state = "rejected" if p.decision is ProjectDecision.REJECT else "changes_requested"
    ctx.put(replace(proj, state=new_state, updated_at=ctx.index))
    return Outcome(p.kind, {"project_id": proj.id, "state": new_state})


def _project_lifecycle(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ProjectSuspend | ProjectReinstate | ProjectClose)
    proj = _project(ctx, p.project_id)
    moves = {
        "project.suspend": (("registered",), "suspended"),
        "project.reinstate": (("suspended",), "registered"),
        "project.close": (("registered", "suspended"), "closed"),
    }
    sources, target = moves[p.kind]
    if proj.state not in sources:
        raise _fail("invalid_state", f"project {proj.id} is {proj.state}; {p.kind} needs {' or '.join(sources)}")
    ctx.put(replace(proj, state=target, updated_at=ctx.index))
    return Outcome(p.kind, {"project_id": proj.id, "state": target})


def _report_submit(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ReportSubmit)
    proj = _project(ctx, p.project_id)
    if proj.owner != ctx.actor:
        raise _fail("forbidden", f"project {proj.id} belongs to {proj.owner}, not {ctx.actor}")
    if proj.state != "registered":
        raise _fail("invalid_state", f"project {proj.id} is {proj.state}; reports need a registered project")
    start, end = p.period_start.isoformat(), p.period_end.isoformat()
    if start < proj.crediting_start or end > proj.crediting_end:
        raise _fail(
            "outside_crediting_period",
            f"monitoring period {start}..{end} is outside the crediting period "
            f"{proj.crediting_start}..{proj.crediting_end} of {proj.id}",
        )
    if p.period_end >= ctx.time.date():
        raise _fail(
            "period_not_ended",
            f"monitoring period {start}..{end} has not ended (the registry's date is {ctx.time.date()} UTC); "
            "report a period after its last day",
        )
    for rid in ctx.state.reports_by_project.get(proj.id, []):
        other = ctx.state.reports[rid]
        if other.state != "rejected" and start <= other.period_end and other.period_start <= end:
            raise _fail(
                "overlapping_period",
                f"monitoring period {start}..{end} overlaps report {rid} ({other.period_start}..{other.period_end})",
            )
    _check_engaged_verifier(ctx, proj, p.verifier)
    rid = f"MR{len(ctx.state.reports) + 1:04d}"
    ctx.put(Report(rid, proj.id, start, end, p.claimed, None, p.verifier, "submitted", ctx.index, ctx.index))
    return Outcome(p.kind, {"report_id": rid, "project_id": proj.id, "verifier": p.verifier})


def _check_engaged_verifier(ctx: _Context, proj: Project, pid: str) -> None:
    """The verification body a report names must be an active verifier other than the project's owner."""
    if pid == proj.owner:
        raise _fail("conflict_of_interest", f"{pid} owns project {proj.id} and may not verify its reports")
    verifier = ctx.state.participants.get(pid)
    if verifier is None:
        raise _fail("not_found", f"no participant {pid!r} is registered to verify the report")
    if verifier.status != "active" or Role.VERIFIER.value not in verifier.roles:
        raise _fail("invalid_verifier", f"{pid} cannot verify reports (suspended, or not a verifier)")


def _require_engaged(ctx: _Context, rep: Report, action: str) -> None:
    """Only the verifier engaged for a report (or, to reject it, an authority) may act on it."""
    if rep.verifier != ctx.actor:
        raise _fail(
            "not_engaged",
            f"report {rep.id} engaged {rep.verifier} to verify it; {ctx.actor} may not {action} it",
        )


def _report(ctx: _Context, rid: str) -> Report:
    found = ctx.state.reports.get(rid)
    if found is None:
        raise _fail("not_found", f"no monitoring report {rid}")
    return found


def _report_verify(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ReportVerify)
    rep = _report(ctx, p.report_id)
    proj = ctx.state.projects[rep.project_id]
    if proj.owner == ctx.actor:
        raise _fail("conflict_of_interest", f"{ctx.actor} owns project {proj.id} and may not verify its report")
    _require_engaged(ctx, rep, "verify")
    if rep.state != "submitted":
        raise _fail("invalid_state", f"report {rep.id} is {rep.state}; only a submitted report is verified")
    if p.verified > rep.claimed:
        raise _fail(
            "verified_exceeds_claimed",
            f"verified quantity {p.verified} is more than the {rep.claimed} claimed in report {rep.id}",
        )
    ctx.put(replace(rep, verified=p.verified, verifier=ctx.actor, state="verified", updated_at=ctx.index))
    return Outcome(p.kind, {"report_id": rep.id, "verified": p.verified})


def _report_reject(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ReportReject)
    rep = _report(ctx, p.report_id)
    if rep.state not in ("submitted", "verified"):
        raise _fail("invalid_state", f"report {rep.id} is {rep.state}; it can no longer be rejected")
    if ctx.state.projects[rep.project_id].owner == ctx.actor:
        raise _fail("conflict_of_interest", f"{ctx.actor} owns the project of report {rep.id}")
    if Role.AUTHORITY.value not in ctx.state.participants[ctx.actor].roles:
        _require_engaged(ctx, rep, "reject")
    ctx.put(replace(rep, state="rejected", updated_at=ctx.index))
    return Outcome(p.kind, {"report_id": rep.id})


def _issue(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Issue)
    rep = _report(ctx, p.report_id)
    if rep.state != "verified" or rep.verified is None:
        raise _fail("invalid_state", f"report {rep.id} is {rep.state}; only a verified report is issued")
    proj = ctx.state.projects[rep.project_id]
    if proj.state != "registered":
        raise _fail("invalid_state", f"project {proj.id} is {proj.state}; issuance needs a registered project")
    if proj.frozen:
        raise _fail("frozen", f"project {proj.id} is frozen")
    owner = _participant(ctx, proj.owner)
    if owner.status != "active":
        raise _fail("invalid_state", f"project owner {owner.id} is suspended")
    vintage = int(rep.period_end[:4])
    number = ctx.state.batch_count.get((proj.id, vintage), 0) + 1
    bid = batch_id(proj.id, vintage, number)
    batch = Batch(
        bid, proj.id, vintage, number, rep.id, rep.verified, owner.id, len(ctx.state.batches) + 1, ctx.index, ctx.when
    )
    ctx.put(batch)
    ctx.put(Block(bid, 1, rep.verified, "held", owner.id, None, ctx.index))
    ctx.put(replace(rep, state="issued", updated_at=ctx.index))
    ctx.state.batch_count[(proj.id, vintage)] = number  # counters are pure functions of history
    block = SerialRange(bid, 1, rep.verified)
    return Outcome(p.kind, {"batch_id": bid, "quantity": rep.verified, "holder": owner.id, "blocks": [str(block)]})


def _select(ctx: _Context, holder: str, selection: Selection, *, check_freeze: bool) -> list[tuple[Block, SerialRange]]:
    """Resolve a selection to (held block, part of it) pairs, oldest serials first; refuse if not held."""
    st = ctx.state
    if check_freeze and st.participants[holder].frozen:
        raise _fail("frozen", f"account {holder} is frozen and can move nothing")
    picks: list[tuple[Block, SerialRange]] = []
    if selection.quantity is not None:
        need = selection.quantity
        available = st.balance(holder)
        if available < need:
            raise _fail("insufficient_units", f"{holder} holds {available} units, {need} requested")
        for block in st.held_blocks(holder):
            if need == 0:
                break
            take = min(need, block.quantity)
            picks.append((block, SerialRange(block.batch_id, block.first, block.first + take - 1)))
            need -= take
    else:
        assert selection.blocks is not None
        wanted: list[SerialRange] = []
        for text in selection.blocks:
            try:
                rng = parse_block(text)
            except EncodingError as exc:
                raise _fail("invalid_block", str(exc)) from None
            if any(rng.overlaps(other) for other in wanted):
                raise _fail("invalid_block", f"block {rng} overlaps another block of the same request")
            wanted.append(rng)
            found = st._find_block(rng.batch_id, rng.first)
            if found is None or not found.range.contains(rng):
                raise _fail("not_held", f"serials {rng} do not lie in one block held by {holder}")
            if found.state != "held":
                raise _fail("already_" + found.state, f"serials {rng} are already {found.state}")
            if found.holder != holder:
                raise _fail("not_held", f"serials {rng} are held by {found.holder}, not {holder}")
            picks.append((found, rng))
    if check_freeze:
        for block, _ in picks:
            proj = st.projects[st.batches[block.batch_id].project_id]
            if proj.frozen:
                raise _fail("frozen", f"project {proj.id} is frozen; its units cannot move")
    return picks


def _move(
    ctx: _Context, picks: list[tuple[Block, SerialRange]], *, state: str, holder: str, ref: str | None
) -> list[str]:
    """Plan the split of each picked block and the new state of the moved part. Returns block strings."""
    moved: list[str] = []
    # Several explicit parts may cut one block: group them so the parent splits once.
    by_block: dict[tuple[str, int], tuple[Block, list[SerialRange]]] = {}
    for block, part in picks:
        by_block.setdefault((block.batch_id, block.first), (block, []))[1].append(part)
    for block, parts in by_block.values():
        parts.sort()
        cursor = block.first
        ctx.drops.append((block.batch_id, block.first))
        for part in parts:
            if part.first > cursor:
                ctx.put(replace(block, first=cursor, last=part.first - 1, updated_at=block.updated_at))
            ctx.put(Block(part.batch_id, part.first, part.last, state, holder, ref, ctx.index))
            moved.append(str(part))
            cursor = part.last + 1
        if cursor <= block.last:
            ctx.put(replace(block, first=cursor, last=block.last))
    if state == "held":
        _coalesce(ctx, holder)
    return moved


def _coalesce(ctx: _Context, holder: str) -> None:
    """Merge adjacent held blocks of one holder so holdings stay compact whatever the history."""
    # Work on the planned view: the new blocks this context puts for `holder`, merged with neighbours.
    st = ctx.state
    planned: dict[tuple[str, int], Block] = {}
    dropped = set(ctx.drops)
    for rec in ctx.puts:
        if isinstance(rec, Block):
            planned[(rec.batch_id, rec.first)] = rec
    for (bid, first), block in sorted(planned.items()):
        if block.state != "held" or block.holder != holder:
            continue
        current = planned.get((bid, first))
        if current is None or current is not block:
            continue
        # Left neighbour: a planned or existing held block of the same holder ending at first - 1.
        left = next(
            (b for (pb, _), b in planned.items() if pb == bid and b.last == first - 1 and b is not block),
            None,
        )
        if left is None:
            existing = st._find_block(bid, first - 1) if first > 1 else None
            if existing is not None and (bid, existing.first) not in dropped:
                left = existing
        if left is not None and left.state == "held" and left.holder == holder:
            merged = replace(left, last=block.last, updated_at=ctx.index)
            _replace_planned(ctx, planned, dropped, left, block, merged)
            block = merged
        # Keep merging rightwards: a planned right neighbour may itself touch an existing block.
        while True:
            right = planned.get((bid, block.last + 1))
            if right is None:
                existing = st._find_block(bid, block.last + 1)
                if existing is not None and existing.first == block.last + 1 and (bid, existing.first) not in dropped:
                    right = existing
            if right is None or right.state != "held" or right.holder != holder:
                break
            merged = replace(block, last=right.last, updated_at=ctx.index)
            _replace_planned(ctx, planned, dropped, block, right, merged)
            block = merged


def _replace_planned(
    ctx: _Context,
    planned: dict[tuple[str, int], Block],
    dropped: set[tuple[str, int]],
    left: Block,
    right: Block,
    merged: Block,
) -> None:
    for gone in (left, right):
        key = (gone.batch_id, gone.first)
        if planned.get(key) is gone:
            del planned[key]
            ctx.puts.remove(gone)
        else:
            ctx.drops.append(key)
            dropped.add(key)
    planned[(merged.batch_id, merged.first)] = merged
    ctx.puts.append(merged)


def _transfer(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Transfer)
    if p.to == ctx.actor:
        raise _fail("invalid_transfer", "a transfer needs another account than the sender's")
    to = ctx.state.participants.get(p.to)
    if to is None:
        raise _fail("not_found", f"no account {p.to!r} is registered")
    if to.status != "active" or not set(to.roles) & {r.value for r in HOLDER_ROLES}:
        raise _fail("invalid_recipient", f"{p.to} cannot receive units (suspended or holds no account)")
    picks = _select(ctx, ctx.actor, p.selection, check_freeze=True)
    moved = _move(ctx, picks, state="held", holder=p.to, ref=None)
    quantity = sum(part.quantity for _, part in picks)
    return Outcome(p.kind, {"from": ctx.actor, "to": p.to, "quantity": quantity, "blocks": moved})


def _retire(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Retire)
    st = ctx.state
    if p.event_id is not None:
        event = st.events.get(p.event_id)
        if event is None:
            raise _fail("not_found", f"no event {p.event_id}")
        if event.organiser != ctx.actor:
            raise _fail(
                "forbidden",
                f"event {event.id} is organised by {event.organiser}; only its organiser retires units for it "
                "(a sponsor transfers units to the organiser first)",
            )
        if event.claim_id is not None:
            raise _fail("invalid_state", f"event {event.id} already has claim {event.claim_id}; it is closed")
        deadline = _add_months(date.fromisoformat(event.end_date), CLAIM_WINDOW_MONTHS)
        if ctx.time.date() > deadline:
            raise _fail(
                "claim_window_closed",
                f"event {event.id} ended {event.end_date}; retirements for it were possible until {deadline}",
            )
    picks = _select(ctx, ctx.actor, p.selection, check_freeze=True)
    rid = f"RT{len(st.retirements) + 1:06d}"
    moved = _move(ctx, picks, state="retired", holder=ctx.actor, ref=rid)
    quantity = sum(part.quantity for _, part in picks)
    ctx.put(
        Retirement(
            rid,
            ctx.actor,
            quantity,
            tuple(moved),
            p.beneficiary,
            p.purpose.value,
            p.event_id,
            p.year,
            p.reason,
            None,
            ctx.index,
            ctx.when,
        )
    )
    if p.event_id is not None:
        event = st.events[p.event_id]
        ctx.put(replace(event, retired_units=event.retired_units + quantity))
    return Outcome(p.kind, {"retirement_id": rid, "quantity": quantity, "blocks": moved})


def _cancel(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Cancel)
    _participant(ctx, p.holder)
    picks = _select(ctx, p.holder, p.selection, check_freeze=False)
    cid = f"CX{len(ctx.state.cancellations) + 1:06d}"
    moved = _move(ctx, picks, state="cancelled", holder=p.holder, ref=cid)
    quantity = sum(part.quantity for _, part in picks)
    ctx.put(Cancellation(cid, p.holder, quantity, tuple(moved), p.reason_code.value, p.reason, ctx.index, ctx.when))
    return Outcome(p.kind, {"cancellation_id": cid, "holder": p.holder, "quantity": quantity, "blocks": moved})


def _freeze(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, Freeze | Unfreeze)
    frozen = isinstance(p, Freeze)
    target: Participant | Project
    if p.target is FreezeTarget.ACCOUNT:
        target = _participant(ctx, p.target_id)
    else:
        target = _project(ctx, p.target_id)
    if target.frozen == frozen:
        raise _fail("invalid_state", f"{p.target.value} {p.target_id} is {'already' if frozen else 'not'} frozen")
    ctx.put(replace(target, frozen=frozen))
    return Outcome(p.kind, {"target": p.target.value, "target_id": p.target_id, "frozen": frozen})


def _event_register(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, EventRegister)
    eid = f"E{len(ctx.state.events) + 1:04d}"
    ctx.put(
        Event(
            eid,
            ctx.actor,
            p.name,
            p.event_kind.value,
            p.venue,
            p.start_date.isoformat(),
            p.end_date.isoformat(),
            p.expected_attendees,
            (),
            (),
            None,
            0,
            None,
            ctx.index,
        )
    )
    return Outcome(p.kind, {"event_id": eid})


def _event(ctx: _Context, eid: str, *, own: bool) -> Event:
    event = ctx.state.events.get(eid)
    if event is None:
        raise _fail("not_found", f"no event {eid}")
    if own and event.organiser != ctx.actor:
        raise _fail("forbidden", f"event {eid} is organised by {event.organiser}, not {ctx.actor}")
    return event


def _event_footprint(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, EventFootprint)
    event = _event(ctx, p.event_id, own=True)
    if event.claim_id is not None:
        raise _fail("invalid_state", f"event {event.id} has claim {event.claim_id}; its footprint is final")
    sources = tuple(sorted((src.value, kg) for src, kg in p.sources.items()))
    total = sum(kg for _, kg in sources)
    if p.stage is FootprintStage.FINAL:
        if ctx.time.date() < date.fromisoformat(event.end_date):
            raise _fail("too_early", f"event {event.id} ends {event.end_date}; the final footprint comes after it")
        if total == 0:
            raise _fail(
                "empty_footprint",
                f"a final footprint of 0 kgCO2e leaves nothing to neutralise for event {event.id}; "
                "declare the event's emissions by source",
            )
        ctx.put(replace(event, final_footprint=sources, final_footprint_kg=total))
    else:
        ctx.put(replace(event, planned_footprint=sources))
    return Outcome(p.kind, {"event_id": event.id, "stage": p.stage.value, "total_kg": total})


def _claim_issue(ctx: _Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ClaimIssue)
    st = ctx.state
    event = _event(ctx, p.event_id, own=True)
    if p.event_entry != event.registered_at:
        raise _fail(
            "event_mismatch",
            f"event {event.id} was registered at log entry {event.registered_at}, not at entry {p.event_entry}",
        )
    if event.claim_id is not None:
        raise _fail("conflict", f"event {event.id} already has claim {event.claim_id}")
    if event.final_footprint_kg is None:
        raise _fail("no_final_footprint", f"event {event.id} has no final footprint declared")
    deadline = _add_months(date.fromisoformat(event.end_date), CLAIM_WINDOW_MONTHS)
    if ctx.time.date() > deadline:
        raise _fail("claim_window_closed", f"event {event.id} ended {event.end_date}; claims closed on {deadline}")
    backing = [r for r in st.retirements.values() if r.event_id == event.id and r.claim_id is None]
    units = sum(r.quantity for r in backing)
    if event.final_footprint_kg == 0:
        raise _fail("empty_footprint", f"event {event.id} has a final footprint of 0 kgCO2e; there is nothing to claim")
    if units * UNITS_PER_CDCER_KG < event.final_footprint_kg:
        need = -(-event.final_footprint_kg // UNITS_PER_CDCER_KG)
        raise _fail(
            "insufficient_coverage",
            f"event {event.id} has a final footprint of {event.final_footprint_kg} kgCO2e, which needs {need} "
            f"retired units; {units} are retired for it",
        )
    cid = f"CN{len(st.claims) + 1:04d}"
    blocks = tuple(b for r in backing for b in r.blocks)
    ctx.put(
        Claim(
            cid,
            event.id,
            event.organiser,
            event.final_footprint_kg,
            event.final_footprint,
            units,
            tuple(r.id for r in backing),
            blocks,
            ctx.index,
            ctx.when,
        )
    )
    ctx.put(replace(event, claim_id=cid))
    for r in backing:
        ctx.put(replace(r, claim_id=cid))
    return Outcome(p.kind, {"claim_id": cid, "event_id": event.id, "units": units, "blocks": list(blocks)})


_HANDLERS: dict[type[Any], Callable[[_Context], Outcome]] = {
    RegistryGenesis: _genesis,
    ParticipantRegister: _participant_register,
    ParticipantSetRoles: _participant_set_roles,
    ParticipantSuspend: _participant_status,
    ParticipantReinstate: _participant_status,
    KeyAdd: _key_add,
    KeyRevoke: _key_revoke,
    KeyRotate: _key_rotate,
    WitnessRegister: _witness_register,
    WitnessRemove: _witness_remove,
    MethodologyPublish: _methodology_publish,
    MethodologyWithdraw: _methodology_withdraw,
    ProjectSubmit: _project_submit,
    ProjectResubmit: _project_resubmit,
    ProjectValidate: _project_validate,
    ProjectDecide: _project_decide,
    ProjectSuspend: _project_lifecycle,
    ProjectReinstate: _project_lifecycle,
    ProjectClose: _project_lifecycle,
    ReportSubmit: _report_submit,
    ReportVerify: _report_verify,
    ReportReject: _report_reject,
    Issue: _issue,
    Transfer: _transfer,
    Retire: _retire,
    Cancel: _cancel,
    Freeze: _freeze,
    Unfreeze: _freeze,
    EventRegister: _event_register,
    EventFootprint: _event_footprint,
    ClaimIssue: _claim_issue,
}
