"""The invariant checks of `ledger.invariants`: silent on healthy states, precise on corrupted ones.

Healthy states come from the scenario world; corrupted ones are made by editing a `State`
directly, the way a bug in the write path (or a tampered projection) would leave it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

import pytest

from ledger.invariants import (
    CHECKS,
    Finding,
    check_all,
    check_batch_conservation,
    check_blocks_around,
    check_claims,
    check_holders,
    check_points,
    check_retirements_terminal,
)
from ledger.serials import SerialRange
from ledger.state import Block, Claim, State
from ledger.transactions import FreezeTarget, RedemptionCancel, RedemptionFulfil, RetirementPurpose, Selection
from tests.ledger.scenario import World, full_story
from tests.ledger.state.test_scenes import A1, A2, open_shop, order_id, points_world, redeem

BATCH = "P0001-2023-001"


def busy_world() -> World:
    """Every kind of unit movement: two batches, transfers, explicit parts, retirements, a claim, a cancellation."""
    world = full_story()
    second = world.issued_batch("P0001", 2024, 200, 200)
    world.transfer_blocks("owner", "buyer", [str(SerialRange(BATCH, 400, 409)), str(SerialRange(second, 5, 9))])
    world.transfer("buyer", "owner", 3)
    world.retire("owner", Selection(quantity=12), purpose=RetirementPurpose.ORGANISATION, year=2024)
    world.cancel("buyer", Selection(blocks=(str(SerialRange(second, 7, 8)),)))
    world.freeze(FreezeTarget.ACCOUNT, "buyer")
    world.cancel("buyer", Selection(quantity=1))
    world.unfreeze(FreezeTarget.ACCOUNT, "buyer")
    return world


def set_block(state: State, bid: str, position: int, block: Block) -> None:
    """Overwrite one block in place, keeping the first-serial index in step."""
    state.blocks[bid][position] = block
    state._firsts[bid][position] = block.first


def messages(findings: list[Finding]) -> list[str]:
    return [f.message for f in findings]


@pytest.fixture
def story() -> State:
    """full_story: batch P0001-2023-001 of 1,150 units; organiser's 1-10 retired for claim CN0001."""
    state = full_story().state
    assert [(b.first, b.last, b.state, b.holder) for b in state.blocks[BATCH]] == [
        (1, 10, "retired", "organiser"),
        (11, 300, "held", "organiser"),
        (301, 1150, "held", "owner"),
    ]
    return state


# --- healthy states ----------------------------------------------------------------------------------------


def test_an_empty_registry_is_healthy() -> None:
    world = World()
    world.found()
    assert check_all(world.state) == []


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_every_check_is_silent_on_healthy_states(check: Callable[[State], list[Finding]]) -> None:
    for state in (full_story().state, busy_world().state):
        assert check(state) == []


def test_check_all_runs_every_check(story: State) -> None:
    story.blocks[BATCH][2] = replace(story.blocks[BATCH][2], holder="mallory")
    story.claims["CN0001"] = replace(story.claims["CN0001"], footprint_kg=50_000)
    invariants = {f.invariant for f in check_all(story)}
    assert invariants == {"unit_holder", "claim_coverage"}


def test_finding_reads_with_its_entry() -> None:
    assert str(Finding("claim_coverage", "CN0001: short", 15)) == "entry 15: claim_coverage: CN0001: short"
    assert str(Finding("unit_state", "block x: lost")) == "unit_state: block x: lost"


# --- (1) batch conservation --------------------------------------------------------------------------------


def test_a_missing_block_breaks_contiguity(story: State) -> None:
    del story.blocks[BATCH][1]
    del story._firsts[BATCH][1]
    assert messages(check_batch_conservation(story)) == [f"batch {BATCH}: block 301-1150 where serial 11 should start"]


def test_a_missing_last_block_loses_units(story: State) -> None:
    story.blocks[BATCH].pop()
    story._firsts[BATCH].pop()
    findings = check_batch_conservation(story)
    assert messages(findings) == [f"batch {BATCH}: blocks cover 300 units, 1150 were issued"]
    assert findings[0].index == story.batches[BATCH].issued_at


def test_a_batch_without_blocks_loses_everything(story: State) -> None:
    del story.blocks[BATCH]
    del story._firsts[BATCH]
    assert messages(check_batch_conservation(story)) == [f"batch {BATCH}: blocks cover 0 units, 1150 were issued"]


def test_overlapping_blocks_are_found(story: State) -> None:
    set_block(story, BATCH, 1, replace(story.blocks[BATCH][1], first=5))
    findings = check_batch_conservation(story)
    assert messages(findings) == [f"batch {BATCH}: block 5-300 where serial 11 should start"]
    assert findings[0].index == story.blocks[BATCH][1].updated_at


def test_an_inverted_block_is_found(story: State) -> None:
    story.blocks[BATCH][1] = replace(story.blocks[BATCH][1], last=10)
    assert messages(check_batch_conservation(story)) == [f"batch {BATCH}: block 11-10 where serial 11 should start"]


def test_extra_units_are_found(story: State) -> None:
    story.blocks[BATCH][2] = replace(story.blocks[BATCH][2], last=1151)
    assert messages(check_batch_conservation(story)) == [f"batch {BATCH}: blocks cover 1151 units, 1150 were issued"]


def test_conservation_looks_only_at_the_batches_asked_for() -> None:
    state = busy_world().state
    del state.blocks[BATCH][0]
    del state._firsts[BATCH][0]
    assert check_batch_conservation(state, ["P0001-2024-001"]) == []
    assert len(check_batch_conservation(state, iter([BATCH]))) == 1


# --- (2, 3) holders and unit states ---------------------------------------------------------------------------


def test_an_unknown_holder_is_found(story: State) -> None:
    story.blocks[BATCH][2] = replace(story.blocks[BATCH][2], holder="mallory")
    assert f"block CDCER-{BATCH}-000301-001150: unknown holder mallory" in messages(check_holders(story))


def test_an_unknown_state_is_found(story: State) -> None:
    story.blocks[BATCH][1] = replace(story.blocks[BATCH][1], state="lost")
    assert messages(check_holders(story, [BATCH]))[0] == f"block CDCER-{BATCH}-000011-000300: unknown state lost"


def test_a_retired_block_held_again_is_found(story: State) -> None:
    story.blocks[BATCH][0] = replace(story.blocks[BATCH][0], state="held", ref=None)
    assert messages(check_holders(story)) == [f"block CDCER-{BATCH}-000001-000010: missing from organiser's holdings"]
    assert messages(check_retirements_terminal(story)) == [
        f"RT000001: serials CDCER-{BATCH}-000001-000010 are no longer retired by it"
    ]


def test_a_terminal_block_without_its_record_is_found(story: State) -> None:
    story.blocks[BATCH][0] = replace(story.blocks[BATCH][0], ref=None)
    assert messages(check_holders(story)) == [f"block CDCER-{BATCH}-000001-000010: retired without a record"]


def test_a_stale_holdings_entry_is_found(story: State) -> None:
    # The buyer's holdings index claims the owner's block: selections would offer units it does not hold.
    story.held.setdefault("buyer", set()).add((BATCH, 301))
    assert messages(check_holders(story)) == [f"buyer's holdings list {BATCH} serial 301, not a block it holds"]
    story.held["buyer"] = {(BATCH, 302)}
    assert messages(check_holders(story)) == [f"buyer's holdings list {BATCH} serial 302, not a block it holds"]


def test_a_balance_that_disagrees_with_the_held_blocks_is_found(story: State) -> None:
    story._balances["owner"] += 1
    assert messages(check_holders(story)) == ["owner: balance says 851, held blocks hold 850"]


def test_holders_looks_only_at_the_batches_asked_for(story: State) -> None:
    story.blocks[BATCH][2] = replace(story.blocks[BATCH][2], holder="mallory")
    assert check_holders(story, []) == []


# --- (2) retirements and cancellations stay terminal ------------------------------------------------------------


def test_a_cancelled_block_reassigned_is_found() -> None:
    state = busy_world().state
    cancelled = [(bid, i, b) for bid, row in state.blocks.items() for i, b in enumerate(row) if b.state == "cancelled"]
    bid, position, block = cancelled[0]
    state.blocks[bid][position] = replace(block, ref="CX999999")
    assert messages(check_retirements_terminal(state)) == [
        f"{block.ref}: serials {block.range} are no longer cancelled by it"
    ]
    assert check_retirements_terminal(state, ["RT000001"]) == []


def test_a_retirement_listing_held_serials_is_found(story: State) -> None:
    retirement = story.retirements["RT000001"]
    story.retirements["RT000001"] = replace(retirement, blocks=(*retirement.blocks, f"CDCER-{BATCH}-000011-000011"))
    assert messages(check_retirements_terminal(story, iter(["RT000001"]))) == [
        f"RT000001: serials CDCER-{BATCH}-000011-000011 are no longer retired by it"
    ]


def test_a_retirement_listing_unknown_serials_is_found(story: State) -> None:
    retirement = story.retirements["RT000001"]
    story.retirements["RT000001"] = replace(retirement, blocks=("CDCER-P0009-2023-001-000001-000001",))
    assert messages(check_retirements_terminal(story)) == [
        "RT000001: serials CDCER-P0009-2023-001-000001-000001 are no longer retired by it"
    ]


# --- (6) claims -----------------------------------------------------------------------------------------------


def test_a_footprint_above_coverage_is_found(story: State) -> None:
    claim = story.claims["CN0001"]
    story.claims["CN0001"] = replace(claim, footprint_kg=10_001)
    findings = check_claims(story)
    assert messages(findings) == ["CN0001: 10 units cover 10000 kgCO2e of a 10001 kgCO2e footprint"]
    assert findings[0].invariant == "claim_coverage"
    assert findings[0].index == claim.entry


def test_a_retirement_that_does_not_back_its_claim_is_found(story: State) -> None:
    story.retirements["RT000001"] = replace(story.retirements["RT000001"], claim_id=None)
    assert messages(check_claims(story)) == [
        "CN0001: retirement RT000001 does not back it",
        "CN0001: 0 units cover 0 kgCO2e of a 9600 kgCO2e footprint",
    ]


def test_a_missing_retirement_is_found(story: State) -> None:
    del story.retirements["RT000001"]
    assert "CN0001: retirement RT000001 does not back it" in messages(check_claims(story))


def test_a_retirement_backing_two_claims_is_found(story: State) -> None:
    # A second claim listing RT000001, which names CN0001 as the claim it backs.
    story.claims["CN0002"] = replace(story.claims["CN0001"], id="CN0002", event_id="E0009")
    assert messages(check_claims(story)) == [
        "CN0002: retirement RT000001 does not back it",
        "CN0002: 0 units cover 0 kgCO2e of a 9600 kgCO2e footprint",
    ]


def test_a_retirement_listed_twice_counts_once(story: State) -> None:
    claim = story.claims["CN0001"]
    story.claims["CN0001"] = replace(claim, retirements=("RT000001", "RT000001"), footprint_kg=19_000)
    assert messages(check_claims(story)) == [
        "CN0001: retirement RT000001 already backs CN0001",
        "CN0001: 10 units cover 10000 kgCO2e of a 19000 kgCO2e footprint",
    ]


def two_claims() -> World:
    """Two events, each with a claim (CN0001 for E0001, CN0002 for E0002)."""
    world = full_story()
    world.transfer("owner", "organiser", 100)
    world.advance(timedelta(days=1))
    world.event_with_claim(units=3, footprint_kg=2500)
    assert set(world.state.claims) == {"CN0001", "CN0002"}
    return world


def test_claims_looks_only_at_the_events_asked_for() -> None:
    state = two_claims().state
    state.claims["CN0002"] = replace(state.claims["CN0002"], footprint_kg=3001)
    assert check_claims(state, ["E0001"]) == []
    assert len(check_claims(state, ["E0002"])) == 1
    # A one-shot iterator of event ids is read once, not once per claim.
    assert messages(check_claims(state, iter(["E0001", "E0002"]))) == [
        "CN0002: 3 units cover 3000 kgCO2e of a 3001 kgCO2e footprint"
    ]


def test_the_claim_records_are_what_the_checks_read() -> None:
    claim = two_claims().state.claims["CN0002"]
    assert isinstance(claim, Claim)
    assert (claim.event_id, claim.footprint_kg, claim.units) == ("E0002", 2500, 3)


# --- the write path's scoped check --------------------------------------------------------------------------


def every_range(state: State) -> list[SerialRange]:
    return [block.range for row in state.blocks.values() for block in row]


def test_blocks_around_is_silent_on_healthy_states() -> None:
    for state in (full_story().state, busy_world().state):
        assert check_blocks_around(state, every_range(state)) == []
    assert check_blocks_around(full_story().state, []) == []


def test_blocks_around_finds_a_gap_next_to_the_touched_serials(story: State) -> None:
    del story.blocks[BATCH][1]  # 11-300 goes missing
    del story._firsts[BATCH][1]
    # The hole right after the touched serials (a lost remainder of a split) is found...
    assert messages(check_blocks_around(story, [SerialRange(BATCH, 5, 10)])) == [
        f"batch {BATCH}: serials 4-11 are not all in blocks"
    ]
    # ...and so is the one right before them.
    assert messages(check_blocks_around(story, [SerialRange(BATCH, 301, 305)])) == [
        f"batch {BATCH}: CDCER-{BATCH}-000001-000010 is followed by CDCER-{BATCH}-000301-001150"
    ]
    # Far from the touched serials, the gap is the audit's to find, not the write path's.
    assert check_blocks_around(story, [SerialRange(BATCH, 1000, 1100)]) == []
    assert check_batch_conservation(story) != []


def test_blocks_around_finds_lost_ends_of_the_batch(story: State) -> None:
    story.blocks[BATCH].pop()
    story._firsts[BATCH].pop()
    assert messages(check_blocks_around(story, [SerialRange(BATCH, 1, 1)])) == [f"batch {BATCH}: blocks span 1-300"]


def test_blocks_around_finds_an_unknown_batch(story: State) -> None:
    assert messages(check_blocks_around(story, [SerialRange("P0009-2023-001", 1, 1)])) == [
        "CDCER-P0009-2023-001-000001-000001: no such batch or it holds no blocks"
    ]


def test_blocks_around_finds_a_bad_holder_or_state(story: State) -> None:
    story.blocks[BATCH][2] = replace(story.blocks[BATCH][2], holder="mallory")
    assert messages(check_blocks_around(story, [SerialRange(BATCH, 400, 400)])) == [
        f"block CDCER-{BATCH}-000301-001150: held by mallory"
    ]
    story.blocks[BATCH][2] = replace(story.blocks[BATCH][2], holder="owner", state="lost")
    assert messages(check_blocks_around(story, [SerialRange(BATCH, 400, 400)])) == [
        f"block CDCER-{BATCH}-000301-001150: lost by owner"
    ]


def test_blocks_around_finds_a_held_block_missing_from_the_holdings(story: State) -> None:
    story.blocks[BATCH][0] = replace(story.blocks[BATCH][0], state="held", ref=None)
    # The touched range 11-20 has the block 1-10 as its left neighbour.
    assert messages(check_blocks_around(story, [SerialRange(BATCH, 11, 20)])) == [
        f"block CDCER-{BATCH}-000001-000010: missing from organiser's holdings"
    ]


# --- points ----------------------------------------------------------------------------------------------


@pytest.fixture
def spent() -> World:
    """The scenes' shop: A1 ordered two tea sets (1,000 points) and got them; A2 ordered one, then cancelled."""
    w = open_shop(points_world())
    w.submit("tianfu-app", redeem(1, quantity=2))
    w.submit("teahouse", RedemptionFulfil(order_id=order_id(1)))
    w.submit("tianfu-app", redeem(2, account=A2, quantity=1))
    w.submit("tianfu-app", RedemptionCancel(order_id=order_id(2), reason="changed her mind"))
    assert check_points(w.state) == []
    return w


def test_points_that_appear_or_vanish_break_conservation(spent: World) -> None:
    state = spent.state
    state.point_totals[A1] = replace(state.point_totals[A1], awarded=state.point_totals[A1].awarded + 1)
    assert messages(check_points(state)) == [
        f"point account {A1}: awarded 2401 != balance 1400 + redeemed 1000 + expired 0 + clawed back 0, or its lots "
        "hold 1400"
    ]


def test_a_balance_its_lots_do_not_hold_is_found(spent: World) -> None:
    state = spent.state
    (month, *_) = state.lot_months[A1]
    state.point_lots[(A1, month)] = replace(state.point_lots[(A1, month)], points=-5)
    found = messages(check_points(state))
    assert f"point account {A1} holds an empty or negative lot" in found
    assert any("or its lots hold" in message for message in found)


def test_redeemed_points_no_order_holds_are_found(spent: World) -> None:
    # An order's points rewritten: the account's totals still add up, but not to what its orders hold.
    state = spent.state
    state.redemptions[order_id(1)] = replace(state.redemptions[order_id(1)], points=900)
    assert messages(check_points(state)) == [
        f"point account {A1}: redeemed 1000, but its pending and fulfilled orders hold 900"
    ]
    # A cancelled order counts for nothing: reopening one is found too.
    state = spent.state
    state.redemptions[order_id(1)] = replace(state.redemptions[order_id(1)], points=1_000)
    state.redemptions[order_id(2)] = replace(state.redemptions[order_id(2)], state="pending")
    assert messages(check_points(state)) == [
        f"point account {A2}: redeemed 0, but its pending and fulfilled orders hold 500"
    ]


def test_points_earned_past_a_cap_are_found(spent: World) -> None:
    state = spent.state
    key = next(key for key in state.earned if key[0] == A1 and key[2].startswith("D"))
    state.earned[key] = 2_001  # bike-km's daily cap is 2,000
    assert messages(check_points(state)) == [f"{A1} earned 2001 points under bike-km in {key[2][1:]}"]
