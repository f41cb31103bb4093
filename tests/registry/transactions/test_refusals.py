"""Bad input to ``POST /v1/transactions``: each answered by a 4xx problem a person can act on, nothing changed.

Every case of the registry API's acceptance list, over one registry that holds what the cases need:
the response is an ``application/problem+json`` document with the status and ``type`` of that error
and a ``detail`` naming what was wrong, and the log and every table are exactly as before.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import Engine, select

from ledger.keys import PrivateKey
from ledger.ledger import Ledger
from ledger.state import State
from ledger.storage.engine import make_engine, read_transaction
from ledger.storage.tables import log_entries
from ledger.transactions import (
    MAX_TRANSACTION_BYTES,
    ClaimIssue,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    FreezeTarget,
    Issue,
    KeyRotate,
    ReportReject,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    SignedTransaction,
    TransactionSigner,
    Transfer,
    signing_message,
)
from registry.app import create_app
from registry.settings import Settings
from tests.conftest import Databases, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key
from tests.registry.transactions.test_permissions import (
    PROBLEM,
    PROBLEM_BASE,
    URL,
    Clock,
    database_snapshot,
    founded_story,
    populate,
    project_in,
    report_in,
)

STRANGER = seeded_key("mallory")
OTHER_ORIGIN = "registry.elsewhere/cdcer"
MAX_BODY_BYTES = Settings().max_body_bytes


def build_registry(engine: Engine) -> None:
    """`test_permissions.populate`'s registry, and what the refusals below act on.

    ``spare`` holds 50 units and is frozen; ``veteran`` rotated its first key (revoked); an event that
    ended two years ago; an event whose final footprint of 9,000 kgCO2e only 2 retired units back.
    """
    story = founded_story(engine)
    populate(story)
    world = story.world
    world.transfer("owner", "spare", 50)
    world.freeze(FreezeTarget.ACCOUNT, "spare")
    world.register("veteran", [Role.ACCOUNT_HOLDER])
    world.register("verifier2", [Role.VERIFIER])
    world.submit(
        "authority",
        KeyRotate(
            participant_id="veteran",
            old_key_id=seeded_key("veteran").key_id,
            new_public_key=seeded_key("veteran-2").public_key.b64(),
            reason="scheduled rotation",
        ),
    )
    today = world.clock.date()
    for name, start in (("Spring Expo", today - timedelta(days=730)), ("Marathon", today - timedelta(days=2))):
        world.submit(
            "organiser",
            EventRegister(
                name=name,
                event_kind=EventKind.OTHER,
                venue="Chengdu",
                start_date=start,
                end_date=start + timedelta(days=1),
                expected_attendees=5000,
            ),
        )
    marathon = next(e.id for e in world.state.events.values() if e.name == "Marathon")
    world.submit(
        "organiser",
        EventFootprint(event_id=marathon, stage=FootprintStage.FINAL, sources={FootprintSource.STAFF_TRANSPORT: 9000}),
    )
    world.retire("organiser", Selection(quantity=2), purpose=RetirementPurpose.EVENT, event_id=marathon)
    story.sync(together=True)


@pytest.fixture
def registry(databases: Databases, tmp_path: Path) -> Iterator[Ledger]:
    """A private copy of `build_registry`'s ledger (built once per process and engine)."""
    url = databases.from_template("refusals", build_registry, directory=tmp_path)
    engine = make_engine(url)
    try:
        yield Ledger(engine, log_signer())
    finally:
        engine.dispose()
        databases.drop(url)


@pytest.fixture
def client(registry: Ledger) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=registry)) as test_client:
        yield test_client


@dataclass
class Clients:
    """The registry's participants, signing requests against its current state."""

    registry: Ledger
    state: State
    clock: Clock

    def sign(
        self,
        who: str,
        payload: BaseModel,
        *,
        key: PrivateKey | None = None,
        origin: str = ORIGIN,
        at: datetime | None = None,
        nonce: str | None = None,
    ) -> SignedTransaction:
        signer = TransactionSigner(origin, who, key or seeded_key(who))
        return signer.sign(payload, at=at or self.clock.tick(), nonce=nonce)

    def event(self, name: str) -> str:
        return next(e.id for e in self.state.events.values() if e.name == name)

    def block(self, wanted: Callable[[Any], bool]) -> str:
        found = next(b for b in self.state.records("unit_blocks") if wanted(b))
        return str(found.range)

    def a_nonce_of(self, actor: str) -> str:
        with read_transaction(self.registry.engine) as conn:
            nonce = conn.execute(select(log_entries.c.nonce).where(log_entries.c.actor == actor).limit(1)).scalar()
        assert isinstance(nonce, str)
        return nonce


def wire(tx: SignedTransaction, change: Callable[[dict[str, Any]], Any] | None = None) -> bytes:
    """The request body of `tx`, after `change` (which edits the JSON value in place) if given."""
    value = tx.to_json()
    if change is not None:
        change(value)
    return json.dumps(value).encode()


def transfer(quantity: int = 10, to: str = "buyer") -> Transfer:
    return Transfer(to=to, selection=Selection(quantity=quantity))


def set_quantity(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(request: dict[str, Any]) -> None:
        request["body"]["payload"]["selection"]["quantity"] = value

    return change


# --- the cases ------------------------------------------------------------------------------------------


def forged_signature(c: Clients) -> bytes:
    tx = c.sign("owner", transfer())
    forged = STRANGER.sign(signing_message(tx.body_bytes))  # by someone else, for the owner's key id

    def change(value: dict[str, Any]) -> None:
        value["signature"] = base64.b64encode(forged).decode()

    return wire(tx, change)


def unknown_key(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer(), key=STRANGER))


def revoked_key(c: Clients) -> bytes:
    return wire(c.sign("veteran", transfer(1, to="owner")))


def other_origin(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer(), origin=OTHER_ORIGIN))


def replay_after_its_window(c: Clients) -> bytes:
    # A transaction signed an hour before the registry's time, captured and sent only now.
    return wire(c.sign("owner", transfer(), at=c.clock.now - timedelta(hours=1)))


def nonce_reused_with_another_body(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer(3), nonce=c.a_nonce_of("owner")))


def transfer_more_than_held(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer(c.state.balance("owner") + 1)))


def move_another_holders_units(c: Clients) -> bytes:
    theirs = c.block(lambda b: b.state == "held" and b.holder == "buyer")
    return wire(c.sign("owner", Transfer(to="organiser", selection=Selection(blocks=(theirs,)))))


def retire_retired_units(c: Clients) -> bytes:
    retired = c.block(lambda b: b.state == "retired" and b.holder == "organiser")
    retire = Retire(
        selection=Selection(blocks=(retired,)), beneficiary="Chengdu", purpose=RetirementPurpose.VOLUNTARY, reason="x"
    )
    return wire(c.sign("organiser", retire))


def move_from_a_frozen_account(c: Clients) -> bytes:
    return wire(c.sign("spare", transfer(5)))


def overlapping_monitoring_period(c: Clients) -> bytes:
    report = ReportSubmit(
        project_id=project_in(c.state, "registered"),
        period_start=date(2024, 7, 1),
        period_end=date(2025, 6, 30),
        claimed=100,
        verifier="verifier",
    )
    return wire(c.sign("owner", report))


def verified_more_than_claimed(c: Clients) -> bytes:
    report = c.state.reports[report_in(c.state, "submitted")]
    verify = ReportVerify(report_id=report.id, verified=report.claimed + 1, opinion_sha256=SHA, statement="ok")
    return wire(c.sign("verifier", verify))


def issue_an_unverified_report(c: Clients) -> bytes:
    return wire(c.sign("authority", Issue(report_id=report_in(c.state, "submitted"))))


def claim_without_coverage(c: Clients) -> bytes:
    event = c.state.events[c.event("Marathon")]
    return wire(c.sign("organiser", ClaimIssue(event_id=event.id, event_entry=event.registered_at)))


def retire_after_the_claim_window(c: Clients) -> bytes:
    retire = Retire(
        selection=Selection(quantity=1),
        beneficiary="Spring Expo",
        purpose=RetirementPurpose.EVENT,
        event_id=c.event("Spring Expo"),
        reason="late offsetting",
    )
    return wire(c.sign("organiser", retire))


def retire_for_another_organisers_event(c: Clients) -> bytes:
    retire = Retire(
        selection=Selection(quantity=1),
        beneficiary="Marathon",
        purpose=RetirementPurpose.EVENT,
        event_id=c.event("Marathon"),
        reason="a stranger's retirement attached to someone else's event",
    )
    return wire(c.sign("buyer", retire))


def final_footprint_of_zero(c: Clients) -> bytes:
    zero = EventFootprint(event_id=c.event("Marathon"), stage=FootprintStage.FINAL, sources={FootprintSource.WASTE: 0})
    return wire(c.sign("organiser", zero))


def claim_naming_another_events_registration(c: Clients) -> bytes:
    other = c.state.events[c.event("Spring Expo")]
    return wire(c.sign("organiser", ClaimIssue(event_id=c.event("Marathon"), event_entry=other.registered_at)))


def verify_by_a_verifier_not_engaged(c: Clients) -> bytes:
    report = c.state.reports[report_in(c.state, "submitted")]
    verify = ReportVerify(report_id=report.id, verified=1, opinion_sha256=SHA, statement="not engaged")
    return wire(c.sign("verifier2", verify))


def reject_by_a_verifier_not_engaged(c: Clients) -> bytes:
    report = c.state.reports[report_in(c.state, "verified")]
    return wire(c.sign("verifier2", ReportReject(report_id=report.id, reason="a rival's verification")))


def report_engaging_its_own_owner(c: Clients) -> bytes:
    report = ReportSubmit(
        project_id=project_in(c.state, "registered"),
        period_start=date(2025, 7, 1),
        period_end=date(2025, 12, 31),
        claimed=100,
        verifier="owner",
    )
    return wire(c.sign("owner", report))


def monitoring_period_in_the_future(c: Clients) -> bytes:
    report = ReportSubmit(
        project_id=project_in(c.state, "registered"),
        period_start=date(2030, 1, 1),
        period_end=date(2030, 12, 31),
        claimed=100,
        verifier="verifier",
    )
    return wire(c.sign("owner", report))


def body_over_the_size_limit(c: Clients) -> bytes:
    body = wire(c.sign("owner", transfer()))
    return body + b" " * (MAX_BODY_BYTES + 1 - len(body))  # still valid JSON: only the size is wrong


def transaction_over_its_size_limit(c: Clients) -> bytes:
    # Under the request limit, but a transaction body is at most MAX_TRANSACTION_BYTES canonical bytes.
    return wire(c.sign("owner", Transfer(to="buyer", selection=Selection(quantity=1), memo="")), _long_memo)


def _long_memo(value: dict[str, Any]) -> None:
    value["body"]["payload"]["memo"] = "m" * MAX_TRANSACTION_BYTES


def malformed_json(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer()))[:-2]


def wrong_type(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer()), set_quantity("10"))


def unknown_field(c: Clients) -> bytes:
    def change(value: dict[str, Any]) -> None:
        value["body"]["payload"]["priority"] = "high"

    return wire(c.sign("owner", transfer()), change)


def integer_beyond_64_bits(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer()), set_quantity(2**64 + 1))


def zero_quantity(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer()), set_quantity(0))


def negative_quantity(c: Clients) -> bytes:
    return wire(c.sign("owner", transfer()), set_quantity(-5))


def text_with_a_nul_character(c: Clients) -> bytes:
    # Valid JSON and a valid body on SQLite, but PostgreSQL text cannot hold U+0000: no registry accepts it.
    retire = Retire(
        selection=Selection(quantity=1), beneficiary="Chengdu\x00", purpose=RetirementPurpose.VOLUNTARY, reason="x"
    )
    return wire(c.sign("owner", retire))


def invalid_utf8(c: Clients) -> bytes:
    body = wire(c.sign("owner", transfer()))
    return body.replace(b'"to": "buyer"', b'"to": "buy\xffer"')


@dataclass(frozen=True)
class Case:
    request: Callable[[Clients], bytes]
    status: int
    rule: str
    detail: str
    """A regular expression the problem's detail must match (what was wrong, in the person's terms)."""


CASES = [
    Case(forged_signature, 403, "bad_signature", r"signature does not verify for key [0-9a-f]{16}"),
    Case(unknown_key, 403, "unknown_key", rf"key {STRANGER.key_id} is not registered to owner"),
    Case(revoked_key, 403, "revoked_key", rf"key {seeded_key('veteran').key_id} of veteran was revoked at entry \d+"),
    Case(other_origin, 422, "wrong_origin", rf"'{OTHER_ORIGIN}'.*'{ORIGIN}'"),
    Case(replay_after_its_window, 422, "stale_transaction", r"more than 15 minutes.*sign it again"),
    Case(nonce_reused_with_another_body, 409, "nonce_reused", r"nonce \S+ of owner was already used by entry \d+"),
    Case(transfer_more_than_held, 409, "insufficient_units", r"owner holds \d+ units, \d+ requested"),
    Case(move_another_holders_units, 409, "not_held", r"CDCER-P\d+-.* are held by buyer, not owner"),
    Case(retire_retired_units, 409, "already_retired", r"CDCER-P\d+-.* are already retired"),
    Case(move_from_a_frozen_account, 409, "frozen", r"account spare is frozen"),
    Case(overlapping_monitoring_period, 409, "overlapping_period", r"2024-07-01\.\.2025-06-30 overlaps report MR\d+"),
    Case(verified_more_than_claimed, 422, "verified_exceeds_claimed", r"verified quantity 501 is more than the 500"),
    Case(issue_an_unverified_report, 409, "invalid_state", r"report MR\d+ is submitted; only a verified report"),
    Case(claim_without_coverage, 409, "insufficient_coverage", r"9000 kgCO2e, which needs 9 retired units; 2 are"),
    Case(retire_after_the_claim_window, 409, "claim_window_closed", r"event E\d+ ended .*possible until"),
    Case(retire_for_another_organisers_event, 403, "forbidden", r"only its organiser retires units for it"),
    Case(final_footprint_of_zero, 422, "empty_footprint", r"a final footprint of 0 kgCO2e leaves nothing"),
    Case(claim_naming_another_events_registration, 422, "event_mismatch", r"registered at log entry \d+, not at"),
    Case(verify_by_a_verifier_not_engaged, 403, "not_engaged", r"engaged verifier to verify it; verifier2 may not"),
    Case(reject_by_a_verifier_not_engaged, 403, "not_engaged", r"verifier2 may not reject it"),
    Case(report_engaging_its_own_owner, 403, "conflict_of_interest", r"owner owns project P\d+ and may not verify"),
    Case(monitoring_period_in_the_future, 409, "period_not_ended", r"2030-01-01\.\.2030-12-31 has not ended"),
    Case(body_over_the_size_limit, 413, "content-too-large", rf"over the limit of {MAX_BODY_BYTES} bytes"),
    Case(transaction_over_its_size_limit, 422, "invalid-transaction", rf"over the limit of {MAX_TRANSACTION_BYTES}"),
    Case(malformed_json, 400, "malformed-json", r"not valid JSON"),
    Case(wrong_type, 422, "invalid-transaction", r"selection\.quantity: Input should be a valid integer"),
    Case(unknown_field, 422, "invalid-transaction", r"priority: Extra inputs are not permitted"),
    Case(integer_beyond_64_bits, 422, "invalid-transaction", r"18446744073709551617 exceeds safe integer"),
    Case(zero_quantity, 422, "invalid-transaction", r"quantity: Input should be greater than 0"),
    Case(negative_quantity, 422, "invalid-transaction", r"quantity: Input should be greater than 0"),
    Case(text_with_a_nul_character, 422, "invalid-transaction", r"payload\.beneficiary: .*NUL character"),
    Case(invalid_utf8, 400, "malformed-json", r"not UTF-8 \(invalid start byte at byte \d+\)"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.request.__name__ for case in CASES])
def test_bad_input_is_a_problem_and_changes_nothing(client: TestClient, registry: Ledger, case: Case) -> None:
    state = registry.state()
    content = case.request(Clients(registry, state, Clock(state)))
    before = database_snapshot(registry.engine)
    response: httpx.Response = client.post(URL, content=content, headers={"content-type": "application/json"})
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + case.rule, problem
    assert problem["status"] == case.status
    assert problem["title"]
    assert re.search(case.detail, problem["detail"]), problem["detail"]
    assert database_snapshot(registry.engine) == before


def test_a_replayed_transaction_gets_its_receipt_and_changes_nothing(client: TestClient, registry: Ledger) -> None:
    # Replaying what is already in the log is not an error, and never a second effect (invariant 4).
    state = registry.state()
    held = state.balance("owner")
    tx = Clients(registry, state, Clock(state)).sign("owner", transfer(7))
    first = client.post(URL, json=tx.to_json())
    assert first.status_code == 201, first.text
    before = database_snapshot(registry.engine)
    for _ in range(2):
        again = client.post(URL, json=tx.to_json())
        assert again.status_code == 200, again.text
        assert again.json()["duplicate"] is True
        assert again.json()["index"] == first.json()["index"]
    assert database_snapshot(registry.engine) == before
    assert registry.state().balance("owner") == held - 7
