"""Events and their carbon-neutral claims.

An event organiser registers an event, declares its planned and (after it ends) final footprint in
kgCO2e by source, retires units for it, and once the retired units cover the final footprint (1 CDCER
covers 1,000 kgCO2e; a final footprint is never 0) obtains the claim: an immutable record of the
footprint and the retirements behind it, which names the log entry that registered the event.
Retirements for an event, and its claim, close 12 months after it ends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import date

from pydantic import BaseModel

from ledger.state.context import Context, add_months, fail
from ledger.state.outcomes import Claimed, EventRegistered, FootprintDeclared, Outcome
from ledger.state.records import Claim, Event
from ledger.state.spec import KindSpec
from ledger.state.units import CLAIM_WINDOW_MONTHS
from ledger.transactions import (
    UNITS_PER_CDCER_KG,
    ClaimIssue,
    EventFootprint,
    EventRegister,
    FootprintStage,
    Role,
)


def _event_register(ctx: Context) -> Outcome:
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
    return EventRegistered(p.kind, eid)


def _event(ctx: Context, eid: str, *, own: bool) -> Event:
    event = ctx.state.events.get(eid)
    if event is None:
        raise fail("not_found", f"no event {eid}")
    if own and event.organiser != ctx.actor:
        raise fail("forbidden", f"event {eid} is organised by {event.organiser}, not {ctx.actor}")
    return event


def _event_footprint(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, EventFootprint)
    event = _event(ctx, p.event_id, own=True)
    if event.claim_id is not None:
        raise fail("invalid_state", f"event {event.id} has claim {event.claim_id}; its footprint is final")
    sources = tuple(sorted((src.value, kg) for src, kg in p.sources.items()))
    total = sum(kg for _, kg in sources)
    if p.stage is FootprintStage.FINAL:
        if ctx.time.date() < date.fromisoformat(event.end_date):
            raise fail("too_early", f"event {event.id} ends {event.end_date}; the final footprint comes after it")
        if total == 0:
            raise fail(
                "empty_footprint",
                f"a final footprint of 0 kgCO2e leaves nothing to neutralise for event {event.id}; "
                "declare the event's emissions by source",
            )
        ctx.put(replace(event, final_footprint=sources, final_footprint_kg=total))
    else:
        ctx.put(replace(event, planned_footprint=sources))
    return FootprintDeclared(p.kind, event.id, p.stage.value, total)


def _claim_issue(ctx: Context) -> Outcome:
    p = ctx.body.payload
    assert isinstance(p, ClaimIssue)
    st = ctx.state
    event = _event(ctx, p.event_id, own=True)
    if p.event_entry != event.registered_at:
        raise fail(
            "event_mismatch",
            f"event {event.id} was registered at log entry {event.registered_at}, not at entry {p.event_entry}",
        )
    if event.claim_id is not None:
        raise fail("conflict", f"event {event.id} already has claim {event.claim_id}")
    if event.final_footprint_kg is None:
        raise fail("no_final_footprint", f"event {event.id} has no final footprint declared")
    deadline = add_months(date.fromisoformat(event.end_date), CLAIM_WINDOW_MONTHS)
    if ctx.time.date() > deadline:
        raise fail("claim_window_closed", f"event {event.id} ended {event.end_date}; claims closed on {deadline}")
    backing = [r for r in st.retirements.values() if r.event_id == event.id and r.claim_id is None]
    units = sum(r.quantity for r in backing)
    if event.final_footprint_kg == 0:
        raise fail("empty_footprint", f"event {event.id} has a final footprint of 0 kgCO2e; there is nothing to claim")
    if units * UNITS_PER_CDCER_KG < event.final_footprint_kg:
        need = -(-event.final_footprint_kg // UNITS_PER_CDCER_KG)
        raise fail(
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
    return Claimed(p.kind, cid, event.id, units, blocks)


def _spec(payload: type[BaseModel], handler: Callable[[Context], Outcome], codes: str, **extra: str) -> KindSpec:
    return KindSpec(payload, frozenset({Role.EVENT_ORGANISER}), handler, frozenset(codes.split()), **extra)


SPECS = (
    _spec(EventRegister, _event_register, "", certificate_role="event"),
    _spec(
        EventFootprint,
        _event_footprint,
        "empty_footprint forbidden invalid_state not_found too_early",
        certificate_role="footprint",
    ),
    _spec(
        ClaimIssue,
        _claim_issue,
        "claim_window_closed conflict empty_footprint event_mismatch forbidden insufficient_coverage "
        "no_final_footprint not_found",
        action="claimed",
        certificate_role="claim",
    ),
)
