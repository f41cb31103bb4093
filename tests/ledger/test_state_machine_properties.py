"""A stateful property test of the unit state machine against an independent model.

Hypothesis drives issuance, transfers (by quantity and by explicit blocks), retirements,
cancellations, freezes and event claims among four accounts, two projects and several vintages.
Requests are allowed to be wrong (too many units, someone else's serials, overlapping blocks, a
frozen account or project): the model predicts whether each is valid, and a refused one must raise
`RuleViolation` and change nothing. After every step the ledger's own invariant checks must be
silent, and every serial's state and holder must match the model: a plain dictionary from
(batch, serial) to (state, holder), with the oldest-first rule written out independently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import date, timedelta

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pydantic import BaseModel

from ledger.errors import RuleViolation
from ledger.invariants import check_all, check_blocks_around
from ledger.serials import SerialRange, parse_block
from ledger.state import Outcome
from ledger.transactions import (
    Cancel,
    CancellationReason,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    Freeze,
    FreezeTarget,
    Issue,
    ParticipantSetRoles,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    Transfer,
    Unfreeze,
)
from tests.ledger.scenario import SHA, World

ACCOUNTS = ("owner", "organiser", "buyer", "trader")
PROJECTS = {"P0001": "owner", "P0002": "organiser"}  # the organiser also owns a project: its claims get units
PERIODS = tuple(
    (date(year, start_month, 1), date(year, end_month, end_day))
    for year in (2022, 2023, 2024)  # every period ended before the world's clock (2025)
    for start_month, end_month, end_day in ((1, 6, 30), (7, 12, 31))
)

SUBJECTS = tuple([(FreezeTarget.ACCOUNT, a) for a in ACCOUNTS] + [(FreezeTarget.PROJECT, p) for p in PROJECTS])

Serial = tuple[str, int]


def runs(serials: list[Serial]) -> list[SerialRange]:
    """Group serials (already in order) into maximal contiguous ranges of one batch."""
    out: list[SerialRange] = []
    for bid, n in serials:
        if out and out[-1].batch_id == bid and out[-1].last + 1 == n:
            out[-1] = SerialRange(bid, out[-1].first, n)
        else:
            out.append(SerialRange(bid, n, n))
    return out


def serials_of(ranges: list[SerialRange]) -> list[Serial]:
    return [(r.batch_id, n) for r in ranges for n in range(r.first, r.last + 1)]


class UnitMachine(RuleBasedStateMachine):
    """The registry as four accounts see it, next to a model that knows every serial."""

    def __init__(self) -> None:
        super().__init__()
        self.world = World()
        self.world.found()
        self.world.register("trader", [Role.ACCOUNT_HOLDER])
        roles = (Role.EVENT_ORGANISER, Role.PROJECT_OWNER)
        self.world.submit("authority", ParticipantSetRoles(participant_id="organiser", roles=roles))
        assert self.world.registered_project("owner") == "P0001"
        assert self.world.registered_project("organiser") == "P0002"
        # The model.
        self.units: dict[Serial, tuple[str, str]] = {}  # (batch, serial) -> (state, holder)
        self.age: dict[str, tuple[int, int]] = {}  # batch -> (vintage, issuance order)
        self.project_of: dict[str, str] = {}
        self.quantity_of: dict[str, int] = {}
        self.balances: Counter[str] = Counter()
        self.totals: Counter[str] = Counter()  # issued, retired, cancelled
        self.frozen: set[tuple[FreezeTarget, str]] = set()
        self.unused_periods = {(p, i) for p in PROJECTS for i in range(len(PERIODS))}
        self.pending: list[tuple[str, str, int]] = []  # verified, not issued: (project, report, quantity)
        self.claims = 0

    # ---- helpers ------------------------------------------------------------------------------------

    def attempt(self, who: str, payload: BaseModel, *, valid: bool) -> Outcome | None:
        """Submit; a valid request must pass, an invalid one must be refused and change nothing."""
        if valid:
            return self.world.submit(who, payload)
        before = self.world.snapshot()
        with pytest.raises(RuleViolation):
            self.world.submit(who, payload)
        assert self.world.snapshot() == before
        return None

    def held_by(self, holder: str) -> list[Serial]:
        """The model's oldest-first order: lowest vintage, then earliest batch, then lowest serial."""
        mine = [s for s, (state, who) in self.units.items() if state == "held" and who == holder]
        return sorted(mine, key=lambda s: (*self.age[s[0]], s[1]))

    def movable(self, holder: str, serials: list[Serial], *, check_freeze: bool) -> bool:
        if check_freeze and (FreezeTarget.ACCOUNT, holder) in self.frozen:
            return False
        if check_freeze and any((FreezeTarget.PROJECT, self.project_of[bid]) in self.frozen for bid, _ in serials):
            return False
        return True

    def by_quantity(self, holder: str, quantity: int, *, check_freeze: bool) -> list[Serial] | None:
        """The serials a quantity selection must take, or None if the request must be refused."""
        if check_freeze and (FreezeTarget.ACCOUNT, holder) in self.frozen:
            return None
        mine = self.held_by(holder)
        if len(mine) < quantity:
            return None
        picks = mine[:quantity]
        return picks if self.movable(holder, picks, check_freeze=check_freeze) else None

    def by_blocks(self, holder: str, ranges: list[SerialRange], *, check_freeze: bool) -> list[Serial] | None:
        """The serials explicit blocks name, or None if the request must be refused."""
        for i, rng in enumerate(ranges):
            if any(rng.overlaps(other) for other in ranges[:i]):
                return None
        picks = serials_of(ranges)
        if any(self.units.get(s) != ("held", holder) for s in picks):
            return None
        return picks if self.movable(holder, picks, check_freeze=check_freeze) else None

    def draw_holder(self, data: st.DataObject, label: str) -> str:
        """Mostly an account that holds units (so that many requests are valid), sometimes any."""
        holding = [a for a in ACCOUNTS if self.balances[a] > 0]
        if holding and data.draw(st.integers(0, 3), label=f"{label} holds") > 0:
            return data.draw(st.sampled_from(holding), label=label)
        return data.draw(st.sampled_from(ACCOUNTS), label=label)

    def draw_recipient(self, data: st.DataObject, sender: str, near: Sequence[SerialRange] = ()) -> str:
        """Mostly another account, often one holding units next to ``near`` (the blocks must then
        merge), sometimes the sender itself (which must be refused)."""
        if data.draw(st.integers(0, 5), label="to self") == 0:
            return sender
        neighbours = sorted(
            {
                who
                for r in near
                for serial in ((r.batch_id, r.first - 1), (r.batch_id, r.last + 1))
                for state, who in [self.units.get(serial, ("none", sender))]
                if state == "held" and who != sender
            }
        )
        if len(neighbours) > 0 and data.draw(st.booleans(), label="to a neighbour"):
            return data.draw(st.sampled_from(neighbours), label="to")
        return data.draw(st.sampled_from([a for a in ACCOUNTS if a != sender]), label="to")

    def draw_quantity(self, data: st.DataObject, holder: str, *, most: int | None = None) -> int:
        """Mostly at most the holder's balance (and ``most``), sometimes more (which must be refused)."""
        balance = self.balances[holder]
        if balance and data.draw(st.integers(0, 4), label="within balance") > 0:
            return data.draw(st.integers(1, min(balance, most or balance)), label="quantity")
        return data.draw(st.integers(1, balance + 10), label="quantity")

    def cut(self, data: st.DataObject, whole: SerialRange, *, fewest: int) -> list[SerialRange]:
        """Cut a range into ``fewest`` to four adjacent pieces (as far as it is long), in any order."""
        if whole.quantity == 1:
            return [whole]
        cuts = sorted(
            data.draw(
                st.sets(
                    st.integers(whole.first, whole.last - 1),
                    min_size=min(fewest - 1, whole.quantity - 1),
                    max_size=min(3, whole.quantity - 1),
                ),
                label="cuts",
            )
        )
        pieces = [
            SerialRange(whole.batch_id, lo, hi)
            for lo, hi in zip([whole.first, *(c + 1 for c in cuts)], [*cuts, whole.last], strict=True)
        ]
        return data.draw(st.permutations(pieces), label="order")

    def draw_ranges(self, data: st.DataObject, holder: str) -> list[SerialRange]:
        """Explicit blocks: mostly parts of distinct runs the holder has (a run perhaps cut into
        adjacent pieces), sometimes anybody's serials, past a batch's end, or overlapping."""
        own = runs(self.held_by(holder))
        if own and data.draw(st.integers(0, 4), label="own") > 0:
            chosen = data.draw(st.lists(st.sampled_from(own), min_size=1, max_size=3, unique=True), label="runs")
            ranges: list[SerialRange] = []
            for run in chosen:
                # Often up to an end of the run: the neighbour there is another account's block,
                # which must merge with the part when that account is the recipient.
                first = data.draw(st.one_of(st.just(run.first), st.integers(run.first, run.last)), label="first")
                last = data.draw(st.one_of(st.just(run.last), st.integers(first, run.last)), label="last")
                ranges += self.cut(data, SerialRange(run.batch_id, first, last), fewest=1)
            return ranges
        wild: list[SerialRange] = []
        for _ in range(data.draw(st.integers(1, 3), label="parts")):
            bid = data.draw(st.sampled_from(sorted(self.quantity_of)), label="batch")
            size = self.quantity_of[bid]
            first = data.draw(st.integers(1, size), label="first")
            wild.append(SerialRange(bid, first, data.draw(st.integers(first, size + 2), label="last")))
        return wild

    def moved(self, picks: list[Serial], outcome: Outcome | None, *, state: str, holder: str) -> None:
        """Apply a move to the model and check the outcome named exactly those serials."""
        assert outcome is not None
        assert outcome.details["quantity"] == len(picks)
        named = serials_of([parse_block(text) for text in outcome.details["blocks"]])
        assert sorted(named) == sorted(picks)
        for serial in picks:
            _, old = self.units[serial]
            self.balances[old] -= 1
            self.units[serial] = (state, holder)
        if state == "held":
            self.balances[holder] += len(picks)
        else:
            self.totals[state] += len(picks)

    # ---- issuance -------------------------------------------------------------------------------------

    @precondition(lambda self: bool(self.unused_periods))
    @rule(data=st.data(), quantity=st.integers(1, 40))
    def issue(self, data: st.DataObject, quantity: int) -> None:
        project, period = data.draw(st.sampled_from(sorted(self.unused_periods)), label="period")
        self.unused_periods.discard((project, period))
        start, end = PERIODS[period]
        owner = PROJECTS[project]
        out = self.world.submit(
            owner,
            ReportSubmit(
                project_id=project, period_start=start, period_end=end, claimed=quantity + 5, verifier="verifier"
            ),
        )
        rid = str(out.details["report_id"])
        self.world.submit(
            "verifier", ReportVerify(report_id=rid, verified=quantity, opinion_sha256=SHA, statement="ok")
        )
        self.pending.append((project, rid, quantity))
        self.try_issue(len(self.pending) - 1)

    @precondition(lambda self: bool(self.pending))
    @rule(which=st.integers(0, 20))
    def issue_pending(self, which: int) -> None:
        """Issue a verified report that a project freeze held back (refused again if still frozen)."""
        self.try_issue(which % len(self.pending))

    def try_issue(self, which: int) -> None:
        project, rid, quantity = self.pending[which]
        frozen = (FreezeTarget.PROJECT, project) in self.frozen
        out = self.attempt("authority", Issue(report_id=rid), valid=not frozen)
        if out is None:
            return
        self.pending.remove((project, rid, quantity))
        bid = str(out.details["batch_id"])
        vintage = self.world.state.reports[rid].period_end[:4]
        number = 1 + sum(1 for b, p in self.project_of.items() if p == project and b.split("-")[1] == vintage)
        assert bid == f"{project}-{vintage}-{number:03d}"
        owner = PROJECTS[project]
        self.age[bid] = (int(vintage), len(self.age) + 1)
        self.project_of[bid] = project
        self.quantity_of[bid] = quantity
        for n in range(1, quantity + 1):
            self.units[(bid, n)] = ("held", owner)
        self.balances[owner] += quantity
        self.totals["issued"] += quantity

    # ---- transfers ------------------------------------------------------------------------------------

    @precondition(lambda self: any(self.balances.values()))
    @rule(data=st.data())
    def transfer_quantity(self, data: st.DataObject) -> None:
        sender = self.draw_holder(data, "sender")
        quantity = self.draw_quantity(data, sender)
        picks = self.by_quantity(sender, quantity, check_freeze=True)
        to = self.draw_recipient(data, sender, runs(picks or []))
        valid = picks is not None and sender != to
        out = self.attempt(sender, Transfer(to=to, selection=Selection(quantity=quantity)), valid=valid)
        if picks is not None and out is not None:
            # Oldest first, and the holder's blocks are coalesced: one block string per run.
            assert out.details["blocks"] == [str(r) for r in runs(picks)]
            self.moved(picks, out, state="held", holder=to)

    @precondition(lambda self: any(self.balances.values()))
    @rule(data=st.data())
    def transfer_blocks(self, data: st.DataObject) -> None:
        sender = self.draw_holder(data, "sender")
        ranges = self.draw_ranges(data, sender)
        to = self.draw_recipient(data, sender, ranges)
        picks = self.by_blocks(sender, ranges, check_freeze=True)
        valid = picks is not None and sender != to
        payload = Transfer(to=to, selection=Selection(blocks=tuple(str(r) for r in ranges)))
        out = self.attempt(sender, payload, valid=valid)
        if picks is not None and out is not None:
            self.moved(picks, out, state="held", holder=to)

    @precondition(lambda self: any(self.balances.values()))
    @rule(data=st.data())
    def give_back_to_a_neighbour(self, data: st.DataObject) -> None:
        """Back-and-forth: send the edge of a run, in adjacent pieces, to the account holding the
        next block, so the ledger must merge across several planned and existing blocks at once."""
        edges = [
            (sender, run, side, who)
            for sender in ACCOUNTS
            for run in runs(self.held_by(sender))
            for side, serial in (("left", (run.batch_id, run.first - 1)), ("right", (run.batch_id, run.last + 1)))
            for state, who in [self.units.get(serial, ("none", sender))]
            if state == "held" and who != sender
        ]
        if not edges:
            return
        sender, run, side, to = data.draw(st.sampled_from(edges), label="edge")
        size = data.draw(st.integers(1, run.quantity), label="size")
        first, last = (run.first, run.first + size - 1) if side == "left" else (run.last - size + 1, run.last)
        ranges = self.cut(data, SerialRange(run.batch_id, first, last), fewest=2)
        picks = self.by_blocks(sender, ranges, check_freeze=True)
        out = self.attempt(
            sender, Transfer(to=to, selection=Selection(blocks=tuple(map(str, ranges)))), valid=picks is not None
        )
        if picks is not None:
            self.moved(picks, out, state="held", holder=to)

    # ---- retirement and cancellation --------------------------------------------------------------------

    @precondition(lambda self: any(self.balances.values()))
    @rule(
        data=st.data(),
        purpose=st.sampled_from(
            [RetirementPurpose.INDIVIDUAL, RetirementPurpose.VOLUNTARY, RetirementPurpose.ORGANISATION]
        ),
    )
    def retire_quantity(self, data: st.DataObject, purpose: RetirementPurpose) -> None:
        holder = self.draw_holder(data, "holder")
        quantity = self.draw_quantity(data, holder, most=10)
        picks = self.by_quantity(holder, quantity, check_freeze=True)
        year = 2024 if purpose is RetirementPurpose.ORGANISATION else None
        payload = Retire(
            selection=Selection(quantity=quantity), beneficiary="Chengdu", purpose=purpose, year=year, reason="r"
        )
        out = self.attempt(holder, payload, valid=picks is not None)
        if picks is not None:
            assert out is not None
            assert out.details["blocks"] == [str(r) for r in runs(picks)]
            self.moved(picks, out, state="retired", holder=holder)

    @precondition(lambda self: any(self.balances.values()))
    @rule(data=st.data())
    def retire_blocks(self, data: st.DataObject) -> None:
        holder = self.draw_holder(data, "holder")
        ranges = self.draw_ranges(data, holder)
        picks = self.by_blocks(holder, ranges, check_freeze=True)
        payload = Retire(
            selection=Selection(blocks=tuple(str(r) for r in ranges)),
            beneficiary="Chengdu",
            purpose=RetirementPurpose.VOLUNTARY,
            reason="r",
        )
        out = self.attempt(holder, payload, valid=picks is not None)
        if picks is not None:
            self.moved(picks, out, state="retired", holder=holder)

    @precondition(lambda self: any(self.balances.values()))
    @rule(data=st.data())
    def cancel_quantity(self, data: st.DataObject) -> None:
        holder = self.draw_holder(data, "holder")
        quantity = self.draw_quantity(data, holder, most=10)
        # Cancellation is the authority's correction: freezes do not stop it.
        picks = self.by_quantity(holder, quantity, check_freeze=False)
        payload = Cancel(
            holder=holder,
            selection=Selection(quantity=quantity),
            reason_code=CancellationReason.CORRECTION,
            reason="c",
        )
        out = self.attempt("authority", payload, valid=picks is not None)
        if picks is not None:
            self.moved(picks, out, state="cancelled", holder=holder)

    @precondition(lambda self: any(self.balances.values()))
    @rule(data=st.data())
    def cancel_blocks(self, data: st.DataObject) -> None:
        holder = self.draw_holder(data, "holder")
        ranges = self.draw_ranges(data, holder)
        picks = self.by_blocks(holder, ranges, check_freeze=False)
        payload = Cancel(
            holder=holder,
            selection=Selection(blocks=tuple(str(r) for r in ranges)),
            reason_code=CancellationReason.REVERSAL,
            reason="c",
        )
        out = self.attempt("authority", payload, valid=picks is not None)
        if picks is not None:
            self.moved(picks, out, state="cancelled", holder=holder)

    # ---- freezes -----------------------------------------------------------------------------------------

    @rule(data=st.data())
    def set_freeze(self, data: st.DataObject) -> None:
        # Mostly lift a freeze that is in place, so frozen periods end; sometimes any request at all.
        if len(self.frozen) > 0 and data.draw(st.booleans(), label="lift"):
            subject, freeze = data.draw(st.sampled_from(sorted(self.frozen)), label="frozen"), False
        else:
            subject = data.draw(st.sampled_from(SUBJECTS), label="subject")
            freeze = data.draw(st.integers(0, 3), label="freeze") < 3  # mostly a freeze; an unfreeze may be wrong
        kind, target_id = subject
        valid = (subject in self.frozen) != freeze
        payload: BaseModel = (Freeze if freeze else Unfreeze)(target=kind, target_id=target_id, reason="f")
        if self.attempt("authority", payload, valid=valid) is not None:
            if freeze:
                self.frozen.add(subject)
            else:
                self.frozen.discard(subject)

    # ---- an event and its claim ------------------------------------------------------------------------

    @precondition(lambda self: self.balances["organiser"] > 0)
    @rule(data=st.data())
    def event_claim(self, data: st.DataObject) -> None:
        # Mostly units the organiser holds, and a footprint around what they cover (either side).
        units = self.draw_quantity(data, "organiser") if data.draw(st.integers(0, 5), label="retire") else 0
        footprint_kg = data.draw(st.integers(0, units * 1000 + 999), label="footprint")
        yesterday = self.world.clock.date() - timedelta(days=1)
        out = self.world.submit(
            "organiser",
            EventRegister(
                name="Forum",
                event_kind=EventKind.FORUM,
                venue="Chengdu",
                start_date=yesterday,
                end_date=yesterday,
                expected_attendees=10,
            ),
        )
        eid = str(out.details["event_id"])
        # A final footprint of 0 kg is refused (nothing to neutralise), so that event can never be claimed.
        self.attempt(
            "organiser",
            EventFootprint(event_id=eid, stage=FootprintStage.FINAL, sources={FootprintSource.CATERING: footprint_kg}),
            valid=footprint_kg > 0,
        )
        retired = 0
        if units:
            picks = self.by_quantity("organiser", units, check_freeze=True)
            payload = Retire(
                selection=Selection(quantity=units),
                beneficiary="Forum",
                purpose=RetirementPurpose.EVENT,
                event_id=eid,
                reason="neutral",
            )
            done = self.attempt("organiser", payload, valid=picks is not None)
            if picks is not None:
                self.moved(picks, done, state="retired", holder="organiser")
                retired = units
        covered = footprint_kg > 0 and retired * 1000 >= footprint_kg
        claim = self.attempt("organiser", self.world.claim_issue(eid), valid=covered)
        if claim is not None:
            self.claims += 1
            assert claim.details["units"] == retired
            # An event has one claim, ever.
            self.attempt("organiser", self.world.claim_issue(eid), valid=False)

    # ---- invariants --------------------------------------------------------------------------------------

    @invariant()
    def ledger_checks_are_silent(self) -> None:
        state = self.world.state
        assert check_all(state) == []
        assert check_blocks_around(state, [b.range for row in state.blocks.values() for b in row]) == []

    @invariant()
    def balances_match_the_model(self) -> None:
        state = self.world.state
        for account in ACCOUNTS:
            assert state.balance(account) == self.balances[account] == len(self.held_by(account)), account
        held = sum(self.balances.values())
        assert self.totals["issued"] == held + self.totals["retired"] + self.totals["cancelled"]
        by_state: Counter[str] = Counter()
        for row in state.blocks.values():
            for block in row:
                by_state[block.state] += block.quantity
        assert sum(b.quantity for b in state.batches.values()) == self.totals["issued"]
        assert (by_state["held"], by_state["retired"], by_state["cancelled"]) == (
            held,
            self.totals["retired"],
            self.totals["cancelled"],
        )
        assert len(state.claims) == self.claims

    @invariant()
    def every_serial_matches_the_model(self) -> None:
        seen: dict[Serial, tuple[str, str]] = {}
        for bid, row in self.world.state.blocks.items():
            for block in row:
                for n in range(block.first, block.last + 1):
                    seen[(bid, n)] = (block.state, block.holder)
        assert seen == self.units

    @invariant()
    def holdings_stay_coalesced(self) -> None:
        for row in self.world.state.blocks.values():
            for left, right in zip(row, row[1:], strict=False):
                assert not (left.state == right.state == "held" and left.holder == right.holder), (left, right)

    @invariant()
    def freezes_match_the_model(self) -> None:
        state = self.world.state
        assert {(FreezeTarget.ACCOUNT, p.id) for p in state.participants.values() if p.frozen} | {
            (FreezeTarget.PROJECT, p.id) for p in state.projects.values() if p.frozen
        } == self.frozen


UnitMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
TestUnitMachine = UnitMachine.TestCase
