"""ledger.transactions: typed bodies, their canonical bytes, the wire form and signatures.

One example of every payload kind round-trips through bytes and the wire form and verifies; every
way the bytes or the wire form can be malformed is refused with an `EncodingError` whose message
names the problem.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ledger.encoding import MAX_SAFE_INTEGER, b64encode, canonical_json
from ledger.errors import EncodingError, SignatureError
from ledger.transactions import (
    KINDS,
    MAX_TRANSACTION_BYTES,
    PAYLOAD_TYPES,
    TRANSACTION_SIGNING_PREFIX,
    Cancel,
    CancellationReason,
    ClaimIssue,
    ClaimMode,
    ClaimScope,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    Freeze,
    FreezeTarget,
    Issue,
    KeyAdd,
    KeyRevoke,
    KeyRotate,
    MethodologyPublish,
    MethodologyWithdraw,
    OfferPublish,
    OfferWithdraw,
    Opinion,
    ParticipantRegister,
    ParticipantReinstate,
    ParticipantSetRoles,
    ParticipantSuspend,
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsClawback,
    PointsConsent,
    PointsExpire,
    PointsPolicy,
    PointsRedeem,
    PointsRulePublish,
    PointsSubject,
    ProjectClose,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectReinstate,
    ProjectResubmit,
    ProjectScope,
    ProjectSubmit,
    ProjectSuspend,
    ProjectValidate,
    ProviderScope,
    RedemptionCancel,
    RedemptionFulfil,
    RegistryGenesis,
    ReportReject,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
    SceneEvaluate,
    SceneReinstate,
    SceneRenew,
    SceneRevoke,
    SceneSuspend,
    Selection,
    SignedTransaction,
    TransactionBody,
    TransactionSigner,
    Transfer,
    Unfreeze,
    WitnessRegister,
    WitnessRemove,
    decode_body,
    encode_body,
    format_utc,
    make_body,
    sign_transaction,
    signing_message,
)
from tests.ledger.scenario import ORIGIN, seeded_key

ALICE = seeded_key("alice")
MALLORY = seeded_key("mallory")
AT = datetime(2025, 3, 1, 8, 0, 0, 123456, tzinfo=UTC)
NONCE = "nonce-0123456789abcdef"
SHA = "ab" * 32
BLOCK = "CDCER-P0007-2023-001-000001-000500"

DETAILS = ProjectDetails(
    methodology_code="CDCER-PV",
    methodology_version="1.0",
    title="Rooftop PV, 郫都区",
    district="Pidu",
    description="2 MW distributed PV \U0001f31e",
    crediting_start=date(2022, 1, 1),
    crediting_end=date(2031, 12, 31),
    estimated_annual_reductions=1500,
    documents=(SHA,),
)

EXAMPLES: dict[str, BaseModel] = {
    "registry.genesis": RegistryGenesis(
        registry_vkey="registry.test/cdcer+01234567+AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=",
        authority_name="Chengdu Ecology and Environment Bureau",
        authority_public_key=seeded_key("authority").public_key.b64(),
    ),
    "participant.register": ParticipantRegister(
        participant_id="alice",
        name="Alice 成都",
        roles=(Role.ACCOUNT_HOLDER, Role.EVENT_ORGANISER),
        public_keys=(ALICE.public_key.b64(),),
    ),
    "participant.set_roles": ParticipantSetRoles(participant_id="alice", roles=(Role.AUDITOR,)),
    "participant.suspend": ParticipantSuspend(participant_id="alice", reason="investigation"),
    "participant.reinstate": ParticipantReinstate(participant_id="alice", reason="cleared"),
    "key.add": KeyAdd(participant_id="alice", public_key=MALLORY.public_key.b64()),
    "key.revoke": KeyRevoke(participant_id="alice", key_id=MALLORY.key_id, reason="lost"),
    "key.rotate": KeyRotate(
        participant_id="alice", old_key_id=ALICE.key_id, new_public_key=MALLORY.public_key.b64(), reason="yearly"
    ),
    "witness.register": WitnessRegister(vkey="witness.example+89abcdef+BAIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="),
    "witness.remove": WitnessRemove(name="witness.example", reason="retired"),
    "methodology.publish": MethodologyPublish(
        code="CDCER-PV", version="1.0.2", title="Distributed PV", sector="energy", document_sha256=SHA
    ),
    "methodology.withdraw": MethodologyWithdraw(code="CDCER-PV", version="1.0.2", reason="superseded"),
    "project.submit": ProjectSubmit(details=DETAILS),
    "project.resubmit": ProjectResubmit(project_id="P0007", details=DETAILS),
    "project.validate": ProjectValidate(
        project_id="P0007", opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="meets the methodology"
    ),
    "project.decide": ProjectDecide(project_id="P0007", decision=ProjectDecision.REQUEST_CHANGES, reason="baseline"),
    "project.suspend": ProjectSuspend(project_id="P0007", reason="audit"),
    "project.reinstate": ProjectReinstate(project_id="P0007", reason="audit passed"),
    "project.close": ProjectClose(project_id="P0007", reason="crediting period over"),
    "report.submit": ReportSubmit(
        project_id="P0007",
        period_start=date(2023, 1, 1),
        period_end=date(2023, 12, 31),
        claimed=1200,
        verifier="tianfu-verify",
    ),
    "report.verify": ReportVerify(report_id="MR0003", verified=1150, opinion_sha256=SHA, statement=""),
    "report.reject": ReportReject(report_id="MR0003", reason="meter data missing"),
    "issuance.issue": Issue(report_id="MR0003"),
    "units.transfer": Transfer(to="bob", selection=Selection(blocks=(BLOCK,)), memo="for the forum"),
    "units.retire": Retire(
        selection=Selection(quantity=10),
        beneficiary="Tianfu Green Forum",
        purpose=RetirementPurpose.EVENT,
        event_id="E0002",
        reason="carbon-neutral forum",
    ),
    "units.cancel": Cancel(
        holder="bob", selection=Selection(quantity=3), reason_code=CancellationReason.CORRECTION, reason="typo"
    ),
    "freeze.set": Freeze(target=FreezeTarget.ACCOUNT, target_id="bob", reason="court order"),
    "freeze.lift": Unfreeze(target=FreezeTarget.PROJECT, target_id="P0007", reason="order lifted"),
    "event.register": EventRegister(
        name="Tianfu Green Forum",
        event_kind=EventKind.FORUM,
        venue="Chengdu Century City",
        start_date=date(2025, 5, 1),
        end_date=date(2025, 5, 1),
        expected_attendees=800,
    ),
    "event.footprint": EventFootprint(
        event_id="E0002",
        stage=FootprintStage.FINAL,
        sources={FootprintSource.VENUE_ENERGY: 9000, FootprintSource.CATERING: 600, FootprintSource.WASTE: 0},
        method_note="GHG Protocol",
    ),
    "claim.issue": ClaimIssue(event_id="E0002", event_entry=41),
    "points.rule_publish": PointsRulePublish(
        rule_id="bike-km",
        version=2,
        title="Shared-bike kilometres",
        activity_unit="km",
        emission_factor_g=120,
        factor_source="Chengdu transport survey 2024",
        points_per_gram=1,
        daily_cap=2000,
        monthly_cap=30000,
        annual_cap=200000,
        late_window_days=7,
        claim_mode=ClaimMode.CLAIM,
        subject=PointsSubject.VEHICLE_DAY,
        displaced_source="car-trips",
        effective_from=date(2026, 1, 1),
        effective_until=date(2026, 12, 31),
    ),
    "project.scope": ProjectScope(
        project_id="P0007", scopes=(ClaimScope(displaced_source="car-trips", subject=PointsSubject.VEHICLE_DAY),)
    ),
    "points.provider_scope": ProviderScope(provider="bike-co", rules=("bike-km", "metro-trips")),
    "points.account_open": PointAccountOpen(account_id="PA0123456789abcdef", account_kind=PointAccountKind.CITIZEN),
    "points.consent": PointsConsent(
        account_id="PA0123456789abcdef", provider="bike-co", rule_id="bike-km", granted=False
    ),
    "points.attest": PointsAttest(
        batch_id="bike-co-2026-03-02",
        rule_id="bike-km",
        version=1,
        day=date(2026, 3, 2),
        count=2,
        total_quantity=17,
        root="ab" * 32,
    ),
    "points.policy": PointsPolicy(lifetime_months=12),
    "points.expire": PointsExpire(through_month="2025-01"),
    "points.clawback": PointsClawback(batch_id="bike-co-2026-03-02", accounts=("PA0123456789abcdef",), reason="x"),
    "scene.apply": SceneApply(
        scene_id="taikoo-li",
        name="Taikoo Li",
        category=SceneCategory.MALL,
        district="Jinjiang",
        address="Zhongshamao St",
    ),
    "scene.evaluate": SceneEvaluate(scene_id="taikoo-li", score=86, opinion=Opinion.POSITIVE, report_sha256="cd" * 32),
    "scene.decide": SceneDecide(scene_id="taikoo-li", approve=True, valid_until=date(2027, 12, 31), reason="ok"),
    "scene.suspend": SceneSuspend(scene_id="taikoo-li", reason="x"),
    "scene.reinstate": SceneReinstate(scene_id="taikoo-li", reason="x"),
    "scene.revoke": SceneRevoke(scene_id="taikoo-li", reason="x"),
    "scene.renew": SceneRenew(scene_id="taikoo-li", valid_until=date(2028, 12, 31)),
    "offer.publish": OfferPublish(
        offer_id="tea-voucher",
        scene_id="taikoo-li",
        title="A pot of tea",
        price_points=5_000,
        stock=100,
        per_account_limit=2,
        valid_from=date(2026, 4, 1),
        valid_until=date(2026, 6, 30),
    ),
    "offer.withdraw": OfferWithdraw(offer_id="tea-voucher"),
    "points.redeem": PointsRedeem(
        order_id="RO0123456789abcdef", offer_id="tea-voucher", account_id="PA0123456789abcdef", quantity=1
    ),
    "redemption.fulfil": RedemptionFulfil(order_id="RO0123456789abcdef"),
    "redemption.cancel": RedemptionCancel(order_id="RO0123456789abcdef", reason="x"),
}


def _signed(payload: BaseModel, *, key: Any = ALICE, at: datetime = AT) -> SignedTransaction:
    return TransactionSigner(ORIGIN, "alice", key).sign(payload, at=at, nonce=NONCE)


def _transfer_json() -> dict[str, Any]:
    """The JSON value of a valid Transfer body, to be damaged one way per test."""
    value: dict[str, Any] = json.loads(_signed(Transfer(to="bob", selection=Selection(quantity=5))).body_bytes)
    return value


def _retire(**payload: Any) -> dict[str, Any]:
    value = _transfer_json()
    value["payload"] = {
        "kind": "units.retire",
        "selection": {"quantity": 1},
        "beneficiary": "x",
        "reason": "r",
        **payload,
    }
    return value


def _flip(data: bytes, position: int) -> bytes:
    mutated = bytearray(data)
    mutated[position] ^= 0x01
    return bytes(mutated)


# --- every kind ---------------------------------------------------------------------------------


def test_examples_cover_every_kind() -> None:
    assert len(KINDS) == len(set(KINDS)) == len(PAYLOAD_TYPES)
    assert set(EXAMPLES) == set(KINDS)
    for kind, payload in EXAMPLES.items():
        assert payload.model_dump()["kind"] == kind


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_round_trips_and_verifies(kind: str) -> None:
    payload = EXAMPLES[kind]
    tx = _signed(payload)
    assert tx.body.kind == kind
    assert tx.body.payload == payload

    # bytes -> body -> bytes
    assert decode_body(tx.body_bytes) == tx.body
    assert encode_body(decode_body(tx.body_bytes)) == tx.body_bytes
    assert canonical_json(json.loads(tx.body_bytes)) == tx.body_bytes

    # wire form, through JSON text as an HTTP client would send it
    wire = json.loads(json.dumps(tx.to_json()))
    assert set(wire) == {"body", "signature"}
    again = SignedTransaction.from_json(wire)
    assert again == tx
    assert again.to_json() == tx.to_json()

    tx.verify(ALICE.public_key)
    again.verify(ALICE.public_key)


def test_body_bytes_are_canonical_json_of_the_named_fields() -> None:
    tx = _signed(Issue(report_id="MR0003"))
    expected = {
        "actor": "alice",
        "created_at": "2025-03-01T08:00:00.123456Z",
        "key_id": ALICE.key_id,
        "nonce": NONCE,
        "origin": ORIGIN,
        "payload": {"kind": "issuance.issue", "report_id": "MR0003"},
        "v": 1,
    }
    assert tx.body_bytes == canonical_json(expected)


def test_optional_none_fields_are_left_out() -> None:
    tx = _signed(
        Retire(selection=Selection(quantity=1), beneficiary="x", purpose=RetirementPurpose.VOLUNTARY, reason="r")
    )
    payload = json.loads(tx.body_bytes)["payload"]
    assert "event_id" not in payload
    assert "year" not in payload
    assert payload["selection"] == {"quantity": 1}


# --- times --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)))
def test_created_at_round_trips(at: datetime) -> None:
    body = make_body(
        origin=ORIGIN, actor="alice", key=ALICE, payload=Issue(report_id="MR0001"), nonce=NONCE, created_at=at
    )
    data = encode_body(body)
    assert json.loads(data)["created_at"] == format_utc(at)
    assert decode_body(data).created_at == at
    assert encode_body(decode_body(data)) == data


@pytest.mark.parametrize(
    ("at", "text"),
    [
        (datetime(2025, 3, 1, 8, 0, tzinfo=UTC), "2025-03-01T08:00:00.000000Z"),
        (datetime(999, 1, 2, 3, 4, 5, 6, tzinfo=UTC), "0999-01-02T03:04:05.000006Z"),
        (datetime(1, 1, 1, tzinfo=UTC), "0001-01-01T00:00:00.000000Z"),
        (datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), "9999-12-31T23:59:59.999999Z"),
    ],
)
def test_format_utc(at: datetime, text: str) -> None:
    assert format_utc(at) == text


def test_zero_offset_time_is_normalised_to_utc() -> None:
    at = datetime(2025, 3, 1, 8, 0, tzinfo=timezone(timedelta(0)))
    body = make_body(
        origin=ORIGIN, actor="alice", key=ALICE, payload=Issue(report_id="MR0001"), nonce=NONCE, created_at=at
    )
    assert body.created_at.tzinfo is UTC
    assert json.loads(encode_body(body))["created_at"] == "2025-03-01T08:00:00.000000Z"


# --- signatures ---------------------------------------------------------------------------------


def test_signing_message_has_the_domain_prefix() -> None:
    assert TRANSACTION_SIGNING_PREFIX == b"cdcer/transaction/v1\n"
    tx = _signed(Issue(report_id="MR0003"))
    assert signing_message(tx.body_bytes) == b"cdcer/transaction/v1\n" + tx.body_bytes
    ALICE.public_key.verify(TRANSACTION_SIGNING_PREFIX + tx.body_bytes, tx.signature)


def test_signature_over_the_raw_body_does_not_verify() -> None:
    tx = _signed(Issue(report_id="MR0003"))
    raw = SignedTransaction(body_bytes=tx.body_bytes, signature=ALICE.sign(tx.body_bytes), body=tx.body)
    with pytest.raises(SignatureError, match=f"signature does not verify for key {ALICE.key_id}"):
        raw.verify(ALICE.public_key)
    # ... and the transaction signature is not a signature over the raw body either.
    with pytest.raises(SignatureError, match="does not verify"):
        ALICE.public_key.verify(tx.body_bytes, tx.signature)


def test_signature_fails_with_another_key() -> None:
    tx = _signed(Issue(report_id="MR0003"))
    with pytest.raises(SignatureError, match=f"^signature does not verify for key {MALLORY.key_id}$"):
        tx.verify(MALLORY.public_key)


def test_signature_fails_after_changing_any_byte_of_the_body() -> None:
    tx = _signed(Transfer(to="bob", selection=Selection(quantity=5)))
    for position in range(len(tx.body_bytes)):
        forged = SignedTransaction(body_bytes=_flip(tx.body_bytes, position), signature=tx.signature, body=tx.body)
        with pytest.raises(SignatureError, match="does not verify"):
            forged.verify(ALICE.public_key)


def test_signature_fails_after_changing_any_byte_of_the_signature() -> None:
    tx = _signed(Issue(report_id="MR0003"))
    for position in range(len(tx.signature)):
        forged = SignedTransaction(body_bytes=tx.body_bytes, signature=_flip(tx.signature, position), body=tx.body)
        with pytest.raises(SignatureError, match="does not verify"):
            forged.verify(ALICE.public_key)


def test_changed_wire_body_parses_but_does_not_verify() -> None:
    wire = _signed(Transfer(to="bob", selection=Selection(quantity=5))).to_json()
    wire["body"]["payload"]["selection"]["quantity"] = 500
    forged = SignedTransaction.from_json(wire)
    assert forged.body.payload == Transfer(to="bob", selection=Selection(quantity=500))
    with pytest.raises(SignatureError, match="does not verify"):
        forged.verify(ALICE.public_key)


def test_wire_body_key_order_does_not_matter() -> None:
    tx = _signed(EXAMPLES["project.submit"])
    wire = tx.to_json()

    def reverse(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: reverse(value[key]) for key in reversed(list(value))}
        return value

    again = SignedTransaction.from_json({"signature": wire["signature"], "body": reverse(wire["body"])})
    assert again.body_bytes == tx.body_bytes
    again.verify(ALICE.public_key)


def test_sign_transaction_refuses_a_key_the_body_does_not_name() -> None:
    body = make_body(
        origin=ORIGIN, actor="alice", key=ALICE, payload=Issue(report_id="MR0001"), nonce=NONCE, created_at=AT
    )
    with pytest.raises(EncodingError, match=f"names key {ALICE.key_id} but is signed with key {MALLORY.key_id}"):
        sign_transaction(body, MALLORY)


def test_signer_draws_a_fresh_nonce() -> None:
    signer = TransactionSigner(ORIGIN, "alice", ALICE)
    first = signer.sign(Issue(report_id="MR0001"), at=AT)
    second = signer.sign(Issue(report_id="MR0001"), at=AT)
    assert first.body.nonce != second.body.nonce
    assert first.body_bytes != second.body_bytes
    first.verify(ALICE.public_key)
    second.verify(ALICE.public_key)


def test_make_body_accepts_a_public_key() -> None:
    body = make_body(
        origin=ORIGIN,
        actor="alice",
        key=ALICE.public_key,
        payload=Issue(report_id="MR0001"),
        nonce=NONCE,
        created_at=AT,
    )
    assert body.key_id == ALICE.key_id


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"nonce": "short"}, "^nonce: 16 to 64 characters"),
        ({"nonce": "n" * 16 + "\n"}, "^nonce: 16 to 64 characters|nonce: String should match pattern"),
        ({"nonce": "n" * 65}, "^nonce: 16 to 64 characters"),
        ({"nonce": "n" * 15 + "!"}, "^nonce: 16 to 64 characters"),
        ({"created_at": datetime(2025, 3, 1, 8, 0)}, "^transaction: created_at: .*time must be timezone-aware UTC"),
        (
            {"created_at": datetime(2025, 3, 1, 16, 0, tzinfo=timezone(timedelta(hours=8)))},
            "^transaction: created_at: .*time must be timezone-aware UTC",
        ),
        ({"actor": "Alice!"}, "^transaction: actor: String should match pattern"),
        ({"origin": ""}, "^transaction: origin: String should have at least 1 character"),
        ({"payload": Selection(quantity=1)}, "^transaction: payload"),
    ],
)
def test_make_body_refuses_bad_fields(changes: dict[str, Any], match: str) -> None:
    arguments: dict[str, Any] = {
        "origin": ORIGIN,
        "actor": "alice",
        "key": ALICE,
        "payload": Issue(report_id="MR0001"),
        "nonce": NONCE,
        "created_at": AT,
        **changes,
    }
    with pytest.raises(EncodingError, match=match):
        make_body(**arguments)


# --- decode_body: malformed bytes ---------------------------------------------------------------


def test_decode_body_accepts_the_base_case() -> None:
    assert decode_body(canonical_json(_transfer_json())).payload == Transfer(to="bob", selection=Selection(quantity=5))


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b'{"actor":"\xff"}', "^transaction: not UTF-8 \\(invalid start byte at byte 10\\)"),
        (b'{"actor":"\xed\xa0\x80"}', "^transaction: not UTF-8"),
        (b"[]", "^transaction: body: Input should be an object"),
        (b'"body"', "^transaction: body: Input should be an object"),
        (b"null", "^transaction: body: Input should be an object"),
        (b"", "^transaction: not valid JSON"),
        (b"{", "^transaction: not valid JSON"),
    ],
)
def test_decode_body_refuses_malformed_bytes(data: bytes, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        decode_body(data)


@pytest.mark.parametrize(
    ("before", "after", "match"),
    [
        (b'"quantity":5', b'"quantity":5.0', "non-integer number 5.0 is not allowed"),
        (b'"quantity":5', b'"quantity":1.5', "non-integer number 1.5 is not allowed"),
        (b'"quantity":5', b'"quantity":5e0', "non-integer number 5e0 is not allowed"),
        (b'"quantity":5', b'"quantity":NaN', "NaN is not allowed"),
        (b'"quantity":5', b'"quantity":9007199254740992', "integer 9007199254740992 is outside the safe range"),
        (b'"quantity":5', b'"quantity":18446744073709551615', "outside the safe range"),  # 2**64 - 1
        (b'"quantity":5', b'"quantity":18446744073709551616', "outside the safe range"),  # 2**64
        (b'"quantity":5', b'"quantity":05', "^transaction: not valid JSON"),
        (b'"quantity":5', b'"quantity": 5', "^transaction: JSON is not in RFC 8785 canonical form$"),
        (b'{"actor"', b'{ "actor"', "not in RFC 8785 canonical form"),
        (b'"to":"bob"', b'"to":"\\u0062ob"', "not in RFC 8785 canonical form"),
        (b'"v":1}', b'"v":1}\n', "not in RFC 8785 canonical form"),
        (  # keys out of order
            b'"memo":"","selection":{"quantity":5}',
            b'"selection":{"quantity":5},"memo":""',
            "not in RFC 8785 canonical form",
        ),
        (b'"to":"bob"', b'"to":"bob","to":"bob"', "not in RFC 8785 canonical form"),  # duplicate key
        (b'"to":"bob"', b'"to":"eve","to":"bob"', "not in RFC 8785 canonical form"),
        (b'"to":"bob"', b'"to":"\\ud800"', "surrogate"),
    ],
)
def test_decode_body_refuses_damaged_bytes(before: bytes, after: bytes, match: str) -> None:
    data = canonical_json(_transfer_json())
    assert before in data
    damaged = data.replace(before, after)
    with pytest.raises(EncodingError, match=match):
        decode_body(damaged)


def test_decode_body_refuses_oversized_bodies() -> None:
    value = _transfer_json()
    value["payload"]["memo"] = ""
    base = len(canonical_json(value))
    value["payload"]["memo"] = "m" * (MAX_TRANSACTION_BYTES + 1 - base)
    data = canonical_json(value)
    assert len(data) == MAX_TRANSACTION_BYTES + 1
    with pytest.raises(
        EncodingError, match=f"^transaction: {MAX_TRANSACTION_BYTES + 1} bytes, over the limit of 32768$"
    ):
        decode_body(data)
    # One byte less passes the size check and fails on the memo's own limit instead.
    value["payload"]["memo"] = "m" * (MAX_TRANSACTION_BYTES - base)
    with pytest.raises(EncodingError, match="memo: String should have at most 500 characters"):
        decode_body(canonical_json(value))


def _set(path: str, new: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def apply(value: dict[str, Any]) -> None:
        for part in parents:
            value = value[part]
        value[last] = new

    return apply


def _delete(path: str) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def apply(value: dict[str, Any]) -> None:
        for part in parents:
            value = value[part]
        del value[last]

    return apply


QUANTITY = "payload.selection.quantity"
TRANSFER = "payload.units.transfer"


@pytest.mark.parametrize(
    ("change", "match"),
    [
        # kinds and fields
        (_set("payload.kind", "units.steal"), "payload: Input tag 'units.steal' found using 'kind' does not match"),
        (_set("payload.kind", 3), "payload: Input tag '3' found using 'kind' does not match"),
        (_delete("payload.kind"), "payload: Unable to extract tag using discriminator 'kind'"),
        (_set("payload.extra", 1), f"{TRANSFER}.extra: Extra inputs are not permitted"),
        (_set("extra", 1), "^transaction: extra: Extra inputs are not permitted"),
        (_set("payload.selection.extra", 1), f"{TRANSFER}.selection.extra: Extra inputs are not permitted"),
        (_delete("payload.to"), f"{TRANSFER}.to: Field required"),
        (_delete("payload.selection"), f"{TRANSFER}.selection: Field required"),
        (_set("payload", []), "^transaction: payload: Input should be an object"),
        (_set("payload", "units.transfer"), "^transaction: payload: Input should be an object"),
        # wrong types and out-of-range numbers
        (_set(QUANTITY, "5"), f"{TRANSFER}.selection.quantity: Input should be a valid integer"),
        (_set(QUANTITY, True), f"{TRANSFER}.selection.quantity: Input should be a valid integer"),
        (_set(QUANTITY, None), f"{TRANSFER}.selection: Value error, give exactly one of 'quantity' or 'blocks'"),
        (_set(QUANTITY, [5]), f"{TRANSFER}.selection.quantity: Input should be a valid integer"),
        (_set(QUANTITY, 0), f"{TRANSFER}.selection.quantity: Input should be greater than 0"),
        (_set(QUANTITY, -1), f"{TRANSFER}.selection.quantity: Input should be greater than 0"),
        (_set(QUANTITY, -MAX_SAFE_INTEGER), "Input should be greater than 0"),
        (_set("payload.to", 7), f"{TRANSFER}.to: Input should be a valid string"),
        (_set("payload.to", "Bob"), f"{TRANSFER}.to: String should match pattern"),
        (_set("payload.memo", None), f"{TRANSFER}.memo: Input should be a valid string"),
        (_set("payload.memo", "m" * 501), f"{TRANSFER}.memo: String should have at most 500 characters"),
        # selections
        (_set("payload.selection", {}), f"{TRANSFER}.selection: Value error, give exactly one of 'quantity' or"),
        (
            _set("payload.selection", {"quantity": 5, "blocks": [BLOCK]}),
            f"{TRANSFER}.selection: Value error, give exactly one of 'quantity' or 'blocks'",
        ),
        (_set("payload.selection", {"blocks": []}), f"{TRANSFER}.selection.blocks: Tuple should have at least 1"),
        (_set("payload.selection", {"blocks": BLOCK}), f"{TRANSFER}.selection.blocks: Input should be a valid"),
        (_set("payload.selection", {"blocks": [BLOCK] * 201}), "blocks: Tuple should have at most 200 items"),
        (_set("payload.selection", {"blocks": ["x" * 81]}), "blocks.0: String should have at most 80 characters"),
        # top-level fields
        (_set("v", 2), "^transaction: v: Input should be 1"),
        (_set("v", "1"), "^transaction: v: Input should be 1"),
        (_set("origin", ""), "^transaction: origin: String should have at least 1 character"),
        (_set("origin", None), "^transaction: origin: Input should be a valid string"),
        (_set("actor", "alice bob"), "^transaction: actor: String should match pattern"),
        (_set("key_id", "5EE49813BC33CB15"), "^transaction: key_id: String should match pattern"),
        (_set("key_id", "5ee49813bc33cb1"), "^transaction: key_id: String should match pattern"),
        (_set("nonce", "too-short"), "^transaction: nonce: String should match pattern"),
        (_set("nonce", "n" * 20 + "\n"), "^transaction: nonce: String should match pattern"),
        (_set("nonce", "n" * 20 + "="), "^transaction: nonce: String should match pattern"),
        # times
        (_set("created_at", "2025-03-01T08:00:00"), "^transaction: created_at: Value error, time must be timezone"),
        (_set("created_at", "2025-03-01T08:00:00.000000"), "created_at: Value error, time must be timezone-aware UTC"),
        (_set("created_at", "2025-03-01T16:00:00+08:00"), "created_at: Value error, time must be timezone-aware UTC"),
        (_set("created_at", "2025-03-01T07:00:00-01:00"), "created_at: Value error, time must be timezone-aware UTC"),
        (_set("created_at", "2025-03-01"), "^transaction: created_at: Input should be a valid datetime"),
        (_set("created_at", "yesterday"), "^transaction: created_at: Input should be a valid datetime"),
        (_set("created_at", "2025-02-30T08:00:00Z"), "^transaction: created_at: Input should be a valid datetime"),
        (_set("created_at", 1740816000), "^transaction: created_at: Input should be a valid datetime"),
        (_set("created_at", None), "^transaction: created_at: Input should be a valid datetime"),
    ],
)
def test_decode_body_refuses_invalid_bodies(change: Callable[[dict[str, Any]], None], match: str) -> None:
    value = _transfer_json()
    change(value)
    with pytest.raises(EncodingError, match=match):
        decode_body(canonical_json(value))


@pytest.mark.parametrize("field", ["origin", "actor", "key_id", "nonce", "created_at", "payload"])
def test_decode_body_refuses_a_missing_field(field: str) -> None:
    value = _transfer_json()
    del value[field]
    with pytest.raises(EncodingError, match=f"^transaction: {field}: Field required$"):
        decode_body(canonical_json(value))


RETIRE = "payload.units.retire"


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"purpose": "event"}, f"{RETIRE}: Value error, event_id is required for purpose 'event' and only for it"),
        ({"purpose": "voluntary", "event_id": "E0002"}, "event_id is required for purpose 'event' and only for it"),
        ({"purpose": "organisation", "event_id": "E0002", "year": 2024}, "event_id is required for purpose 'event'"),
        ({"purpose": "organisation"}, f"{RETIRE}: Value error, year is required for purpose 'organisation' and only"),
        ({"purpose": "individual", "year": 2024}, "year is required for purpose 'organisation' and only for it"),
        ({"purpose": "event", "event_id": "E0002", "year": 2024}, "year is required for purpose 'organisation'"),
        ({"purpose": "organisation", "year": 1999}, f"{RETIRE}.year: Input should be greater than or equal to 2000"),
        ({"purpose": "organisation", "year": 2201}, f"{RETIRE}.year: Input should be less than or equal to 2200"),
        ({"purpose": "organisation", "year": "2024"}, f"{RETIRE}.year: Input should be a valid integer"),
        ({"purpose": "organisation", "year": True}, f"{RETIRE}.year: Input should be a valid integer"),
        ({"purpose": "event", "event_id": "e0002"}, f"{RETIRE}.event_id: String should match pattern"),
        ({"purpose": "charity"}, f"{RETIRE}.purpose: Input should be 'event', 'organisation', 'individual' or"),
    ],
)
def test_decode_body_refuses_retire_purpose_mismatches(payload: dict[str, Any], match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        decode_body(canonical_json(_retire(**payload)))


@pytest.mark.parametrize(
    "payload",
    [
        {"purpose": "event", "event_id": "E0002"},
        {"purpose": "organisation", "year": 2024},
        {"purpose": "individual"},
        {"purpose": "voluntary"},
    ],
)
def test_decode_body_accepts_retire_purposes(payload: dict[str, Any]) -> None:
    data = canonical_json(_retire(**payload))
    assert encode_body(decode_body(data)) == data


def _with_payload(kind: str, **changes: Any) -> dict[str, Any]:
    value = _transfer_json()
    payload: dict[str, Any] = json.loads(encode_body(_signed(EXAMPLES[kind]).body))["payload"]
    value["payload"] = payload
    for path, new in changes.items():
        _set(path.replace("__", "."), new)(payload)
    return value


@pytest.mark.parametrize(
    ("kind", "changes", "match"),
    [
        (
            "project.submit",
            {"details__crediting_end": "2021-12-31"},
            "project.submit.details: Value error, crediting_end is before crediting_start",
        ),
        (
            "project.resubmit",
            {"details__crediting_end": "2021-12-31"},
            "project.resubmit.details: Value error, crediting_end is before crediting_start",
        ),
        (
            "report.submit",
            {"period_end": "2022-12-31"},
            "payload.report.submit: Value error, period_end is before period_start",
        ),
        (
            "event.register",
            {"end_date": "2025-04-30"},
            "payload.event.register: Value error, end_date is before start_date",
        ),
        ("event.register", {"start_date": "2025-05-01T00:00:00"}, "start_date: Input should be a valid date"),
        ("event.register", {"start_date": "2025-13-01"}, "start_date: Input should be a valid date"),
        ("event.register", {"start_date": 20250501}, "start_date: Input should be a valid date"),
        ("event.register", {"expected_attendees": -1}, "expected_attendees: Input should be greater than or equal"),
        ("event.register", {"event_kind": "party"}, "event_kind: Input should be 'conference'"),
        ("event.footprint", {"sources": {}}, "sources: Dictionary should have at least 1 item"),
        ("event.footprint", {"sources": {"bogus": 1}}, "sources.bogus.\\[key\\]: Input should be 'venue_energy'"),
        ("event.footprint", {"sources": {"waste": -1}}, "sources.waste: Input should be greater than or equal to 0"),
        ("event.footprint", {"sources": {"waste": "1"}}, "sources.waste: Input should be a valid integer"),
        ("event.footprint", {"stage": "draft"}, "stage: Input should be 'planned' or 'final'"),
        ("report.submit", {"claimed": 0}, "claimed: Input should be greater than 0"),
        ("report.verify", {"verified": "1150"}, "verified: Input should be a valid integer"),
        ("report.verify", {"opinion_sha256": "AB" * 32}, "opinion_sha256: String should match pattern"),
        ("participant.register", {"roles": []}, "roles: Tuple should have at least 1 item"),
        ("participant.register", {"roles": ["king"]}, "roles.0: Input should be 'authority'"),
        ("participant.register", {"public_keys": ["not base64"]}, "public_keys.0: String should match pattern"),
        ("key.add", {"public_key": "AAAA"}, "public_key: String should match pattern"),
        ("methodology.publish", {"version": "v1"}, "version: String should match pattern"),
        ("project.validate", {"opinion": "maybe"}, "opinion: Input should be 'positive' or 'negative'"),
        ("units.cancel", {"reason_code": "whim"}, "reason_code: Input should be 'correction'"),
        ("units.cancel", {"reason": ""}, "reason: String should have at least 1 character"),
        ("freeze.set", {"target": "planet"}, "target: Input should be 'account' or 'project'"),
        ("issuance.issue", {"report_id": "MR3"}, "report_id: String should match pattern"),
    ],
)
def test_decode_body_refuses_invalid_payloads(kind: str, changes: dict[str, Any], match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        decode_body(canonical_json(_with_payload(kind, **changes)))


def test_quantity_boundaries() -> None:
    value = _transfer_json()
    value["payload"]["selection"]["quantity"] = MAX_SAFE_INTEGER
    data = canonical_json(value)
    assert decode_body(data).payload == Transfer(to="bob", selection=Selection(quantity=MAX_SAFE_INTEGER))
    assert encode_body(decode_body(data)) == data


@settings(max_examples=100, deadline=None)
@given(st.integers(1, MAX_SAFE_INTEGER))
def test_every_safe_quantity_round_trips(quantity: int) -> None:
    tx = _signed(Transfer(to="bob", selection=Selection(quantity=quantity)))
    assert decode_body(tx.body_bytes) == tx.body
    assert SignedTransaction.from_json(json.loads(json.dumps(tx.to_json()))) == tx


# --- the wire form ------------------------------------------------------------------------------


def _wire() -> dict[str, Any]:
    return _signed(Transfer(to="bob", selection=Selection(quantity=5))).to_json()


def _deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda w: [w], "^signed transaction: expected an object with exactly 'body' and 'signature'$"),
        (lambda w: None, "^signed transaction: expected an object with exactly 'body' and 'signature'$"),
        (lambda w: {**w, "extra": 1}, "^signed transaction: expected an object with exactly 'body' and 'signature'$"),
        (lambda w: {**w, "kind": "x"}, "expected an object with exactly 'body' and 'signature'"),
        (lambda w: {"body": w["body"]}, "expected an object with exactly 'body' and 'signature'"),
        (lambda w: {"signature": w["signature"]}, "expected an object with exactly 'body' and 'signature'"),
        (lambda w: {}, "expected an object with exactly 'body' and 'signature'"),
        (lambda w: {**w, "signature": None}, "^signed transaction: 'signature' must be a base64 string$"),
        (lambda w: {**w, "signature": 7}, "^signed transaction: 'signature' must be a base64 string$"),
        (lambda w: {**w, "signature": list(range(64))}, "'signature' must be a base64 string"),
        (lambda w: {**w, "signature": "!" * 88}, "^signature: not valid base64"),
        (lambda w: {**w, "signature": w["signature"].rstrip("=")}, "^signature: not valid base64 .*padding"),
        (
            lambda w: {**w, "signature": w["signature"].replace("+", "-").replace("/", "_") + "-"},
            "^signature: not valid base64",
        ),
        (lambda w: {**w, "signature": " " + w["signature"]}, "^signature: not valid base64"),
        (lambda w: {**w, "signature": ""}, "^signature: expected 64 bytes, found 0$"),
        (lambda w: {**w, "signature": b64encode(bytes(63))}, "^signature: expected 64 bytes, found 63$"),
        (lambda w: {**w, "signature": b64encode(bytes(65))}, "^signature: expected 64 bytes, found 65$"),
        (lambda w: {**w, "body": "body"}, "^transaction: body: Input should be an object"),
        (lambda w: {**w, "body": None}, "^transaction: body: Input should be an object"),
        (lambda w: {**w, "body": {}}, "^transaction: origin: Field required"),
        (lambda w: {**w, "body": {**w["body"], "extra": 1}}, "^transaction: extra: Extra inputs are not permitted"),
        (lambda w: {**w, "body": {**w["body"], "v": 2}}, "^transaction: v: Input should be 1"),
        (lambda w: {**w, "body": {1: 2}}, "^cannot canonicalize JSON: object keys must be strings$"),
        (lambda w: {**w, "body": {**w["body"], "nonce": "\ud800" * 20}}, "^cannot canonicalize JSON: .*surrogate"),
        (lambda w: {**w, "body": {**w["body"], "origin": _deep(5000)}}, "^cannot canonicalize JSON: nested too deeply"),
        (lambda w: {**w, "body": {**w["body"], "origin": b"x"}}, "^cannot canonicalize JSON: unsupported type"),
        (
            lambda w: {
                **w,
                "body": {**w["body"], "payload": {**w["body"]["payload"], "memo": "m" * MAX_TRANSACTION_BYTES}},
            },
            "^transaction: [0-9]+ bytes, over the limit of 32768$",
        ),
    ],
)
def test_from_json_refuses_malformed_wire_forms(change: Callable[[dict[str, Any]], Any], match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        SignedTransaction.from_json(change(_wire()))


@pytest.mark.parametrize(
    ("quantity", "match"),
    [
        ("5", "quantity: Input should be a valid integer"),
        (True, "quantity: Input should be a valid integer"),
        (1.5, "quantity: Input should be a valid integer"),
        (0, "quantity: Input should be greater than 0"),
        (-5, "quantity: Input should be greater than 0"),
        (MAX_SAFE_INTEGER + 1, "^cannot canonicalize JSON: 9007199254740992 exceeds safe integer domain"),
        (2**64, "^cannot canonicalize JSON: 18446744073709551616 exceeds safe integer domain"),
        (float("nan"), "^cannot canonicalize JSON: nan is not representable"),
        (float("inf"), "^cannot canonicalize JSON: inf is not representable"),
    ],
)
def test_from_json_refuses_bad_quantities(quantity: Any, match: str) -> None:
    wire = copy.deepcopy(_wire())
    wire["body"]["payload"]["selection"]["quantity"] = quantity
    with pytest.raises(EncodingError, match=match):
        SignedTransaction.from_json(wire)


def test_from_json_signs_over_the_canonical_bytes_of_the_wire_body() -> None:
    tx = _signed(
        Retire(
            selection=Selection(quantity=1),
            beneficiary="成都 \U0001f333",
            purpose=RetirementPurpose.VOLUNTARY,
            reason="r",
        )
    )
    wire = json.loads(json.dumps(tx.to_json(), ensure_ascii=True, indent=2))  # escaped, pretty, in any order
    again = SignedTransaction.from_json(wire)
    assert again.body_bytes == tx.body_bytes
    again.verify(ALICE.public_key)


def test_transaction_body_kind() -> None:
    body: TransactionBody = _signed(EXAMPLES["claim.issue"]).body
    assert body.kind == "claim.issue"
