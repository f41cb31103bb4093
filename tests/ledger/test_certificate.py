"""Certificates: built from a real ledger, verified offline from bytes and the verifier key alone.

Every way a certificate can lie is tried: a changed byte anywhere, another registry's key, a missing,
extra or swapped entry, a statement that disagrees with what was signed, and (by re-signing a whole
forged log with the registry's own checkpoint key) entries no honest registry would have appended.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from ledger.certificate import (
    LIMIT_FOOTPRINT,
    LIMIT_IDS,
    ClaimStatement,
    RetirementStatement,
    build_certificate,
    parse_certificate,
    verify_certificate,
)
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.errors import CertificateError
from ledger.keys import PrivateKey
from ledger.ledger import Ledger
from ledger.log import Entry, decode_entry
from ledger.merkle import Frontier, MemoryNodeStore, inclusion_proof, leaf_hash
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.transactions import (
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    Issue,
    KeyRotate,
    ParticipantSetRoles,
    RegistryGenesis,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    TransactionSigner,
    make_body,
    sign_transaction,
)
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key

VKEY = log_signer().verifier_key()
OTHER_REGISTRY = NoteSigner("other.test/cdcer", seeded_key("other log").seed)

# Where `Story.full_story` puts each entry (checked by test_the_story_log_is_laid_out_as_these_tests_assume).
GENESIS, VERIFIER_KEY, OWNER_KEY, ORGANISER_KEY, BUYER_KEY = 0, 1, 2, 3, 4
METHODOLOGY, REPORT, VERIFICATION, ISSUANCE, TRANSFER = 5, 9, 10, 11, 12
EVENT, FOOTPRINT, RETIREMENT, CLAIM = 13, 14, 15, 16
RETIREMENT_ENTRIES = (GENESIS, VERIFIER_KEY, OWNER_KEY, ORGANISER_KEY, REPORT, VERIFICATION, ISSUANCE, RETIREMENT)
CLAIM_ENTRIES = (*RETIREMENT_ENTRIES[:-1], EVENT, FOOTPRINT, RETIREMENT, CLAIM)
BLOCK = "CDCER-P0001-2023-001-000001-000010"

Bundle = dict[str, Any]


# --- helpers --------------------------------------------------------------------------------------------


def build(ledger: Ledger, kind: str, record_id: str) -> bytes:
    with read_transaction(ledger.engine) as conn:
        certificate = build_certificate(conn, kind, record_id)  # type: ignore[arg-type]
    assert certificate is not None
    return certificate.to_bytes()


def encode(bundle: Bundle) -> bytes:
    return json.dumps(bundle).encode()


def entry_of(bundle: Bundle, index: int) -> dict[str, Any]:
    return next(item for item in bundle["entries"] if item["index"] == index)


def flip_b64(text: str, at: int) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[at] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def log_leaves(ledger: Ledger) -> list[bytes]:
    """The exact bytes of every entry in the log."""
    with read_transaction(ledger.engine) as conn:
        return [stored.data for stored in store.iter_entries(conn)]


def with_entry(bundle: Bundle, ledger: Ledger, index: int, role: str) -> Bundle:
    """The bundle with one more genuine entry of the log (its real bytes and proof), in index order."""
    leaves = log_leaves(ledger)
    with read_transaction(ledger.engine) as conn:
        proof = inclusion_proof(store.DbNodeReader(conn), index, len(leaves))
    item = {
        "index": index,
        "role": role,
        "leaf": base64.b64encode(leaves[index]).decode(),
        "inclusion_proof": [base64.b64encode(h).decode() for h in proof],
    }
    changed = copy.deepcopy(bundle)
    changed["entries"] = sorted([*changed["entries"], item], key=lambda e: e["index"])
    return changed


def reseal(bundle: Bundle, leaves: list[bytes], signer: NoteSigner | None = None) -> Bundle:
    """The bundle over a (forged) log: its entries' bytes and proofs from `leaves`, under a fresh checkpoint.

    This is what a registry that signs whatever it likes could hand out: the checkpoint verifies with
    its key, so only the certificate's own checks stand between the forgery and the reader.
    """
    nodes, frontier = MemoryNodeStore(), Frontier.empty()
    for data in leaves:
        nodes.put_nodes(frontier.append(leaf_hash(data)))
    note = sign_checkpoint(Checkpoint(ORIGIN, len(leaves), frontier.root()), signer or log_signer())
    forged = copy.deepcopy(bundle)
    forged["checkpoint"] = note.decode()
    for item in forged["entries"]:
        item["leaf"] = base64.b64encode(leaves[item["index"]]).decode()
        proof = inclusion_proof(nodes, item["index"], len(leaves))
        item["inclusion_proof"] = [base64.b64encode(h).decode() for h in proof]
    return forged


def forged_entry(
    leaves: list[bytes],
    index: int,
    who: str,
    payload: BaseModel,
    *,
    key: PrivateKey | None = None,
    origin: str = ORIGIN,
    at: datetime | None = None,
) -> bytes:
    """Entry `index` replaced by `payload` signed by `who` (with its own key unless `key` is given), accepted
    at its original time unless `at` is given."""
    original = decode_entry(leaves[index], index=index)
    accepted_at = at or original.accepted_at
    signing_key = key or seeded_key(who)
    body = make_body(
        origin=origin,
        actor=who,
        key=signing_key,
        payload=payload,
        nonce=f"forged-entry-{index:06d}",
        created_at=accepted_at,
    )
    tx = sign_transaction(body, signing_key)
    entry = Entry(index, accepted_at, original.prev_chain, signing_key.public_key.raw, tx.signature, tx.body_bytes)
    return entry.encode()


def payload_at(leaves: list[bytes], index: int) -> BaseModel:
    return decode_entry(leaves[index], index=index).body().payload


# --- fixtures -------------------------------------------------------------------------------------------


@pytest.fixture
def told(story: Story) -> Story:
    """The full story: a project, an issuance, a transfer, and an event whose claim rests on one retirement."""
    story.full_story()
    return story


@pytest.fixture
def retirement(told: Story) -> bytes:
    return build(told.ledger, "retirement", "RT000001")


@pytest.fixture
def claim(told: Story) -> bytes:
    return build(told.ledger, "claim", "CN0001")


# --- certificates that verify ---------------------------------------------------------------------------


def test_the_story_log_is_laid_out_as_these_tests_assume(told: Story) -> None:
    kinds = [decode_entry(data).body().kind for data in log_leaves(told.ledger)]
    assert kinds[GENESIS] == "registry.genesis"
    assert kinds[VERIFIER_KEY : BUYER_KEY + 1] == ["participant.register"] * 4
    assert kinds[METHODOLOGY] == "methodology.publish"
    assert kinds[REPORT : CLAIM + 1] == [
        "report.submit",
        "report.verify",
        "issuance.issue",
        "units.transfer",
        "event.register",
        "event.footprint",
        "units.retire",
        "claim.issue",
    ]


def test_a_retirement_certificate_verifies_offline_with_the_verifier_key_alone(told: Story, retirement: bytes) -> None:
    verified = verify_certificate(retirement, VKEY)

    recorded = told.ledger.state().retirements["RT000001"]
    assert (verified.kind, verified.id, verified.origin) == ("retirement", "RT000001", ORIGIN)
    assert verified.checkpoint_size == told.ledger.size()
    assert verified.key_id == f"{ORIGIN}+{log_signer().key_id.hex()}"
    assert verified.entries == RETIREMENT_ENTRIES
    statement = verified.statement
    assert isinstance(statement, RetirementStatement)
    assert (statement.holder, statement.quantity, statement.blocks) == ("organiser", 10, (BLOCK,))
    assert (statement.purpose, statement.event_id, statement.beneficiary) == ("event", "E0001", "Tianfu Green Forum")
    assert (statement.entry, statement.time) == (recorded.entry, recorded.retired_time)
    assert [(b.id, b.quantity, b.issuance_entry) for b in statement.batches] == [("P0001-2023-001", 1150, ISSUANCE)]
    assert any("RT000001 was by quantity" in limit for limit in verified.limits)


def test_a_claim_certificate_verifies_offline_with_the_verifier_key_alone(told: Story, claim: bytes) -> None:
    verified = verify_certificate(claim, VKEY)

    assert (verified.kind, verified.id) == ("claim", "CN0001")
    assert verified.entries == CLAIM_ENTRIES
    statement = verified.statement
    assert isinstance(statement, ClaimStatement)
    assert (statement.event.id, statement.event.organiser, statement.event.name) == (
        "E0001",
        "organiser",
        "Tianfu Green Forum",
    )
    assert statement.footprint_kg == 9600
    assert statement.footprint == {"catering": 600, "venue_energy": 9000}
    assert (statement.units, statement.blocks) == (10, (BLOCK,))
    assert [r.id for r in statement.retirements] == ["RT000001"]
    assert LIMIT_FOOTPRINT in verified.limits
    proven = "\n".join(verified.proven)
    assert f"from its registration at entry {EVENT}, which the claim's signed event_entry names" in proven
    assert f"from the final declaration at entry {FOOTPRINT}, signed by the organiser" in proven
    assert f"its verification by the engaged verifier (entry {VERIFICATION})" in proven


def test_roles_name_what_each_entry_is(claim: bytes) -> None:
    roles = {item["index"]: item["role"] for item in json.loads(claim)["entries"]}
    assert roles == {
        GENESIS: "genesis",
        VERIFIER_KEY: "key",
        OWNER_KEY: "key",
        ORGANISER_KEY: "key",
        REPORT: "report",
        VERIFICATION: "verification",
        ISSUANCE: "issuance",
        EVENT: "event",
        FOOTPRINT: "footprint",
        RETIREMENT: "retirement",
        CLAIM: "claim",
    }


def test_certificates_are_canonical_json_and_round_trip(told: Story, claim: bytes) -> None:
    assert build(told.ledger, "claim", "CN0001") == claim
    assert parse_certificate(claim).to_bytes() == claim
    assert json.dumps(json.loads(claim), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() == claim


def test_whitespace_and_key_order_do_not_matter(claim: bytes) -> None:
    bundle = json.loads(claim)
    pretty = json.dumps(dict(reversed(list(bundle.items()))), indent=2).encode()
    assert verify_certificate(pretty, VKEY).statement == verify_certificate(claim, VKEY).statement


def test_a_verifier_key_read_from_a_file_with_its_newline_is_accepted(retirement: bytes) -> None:
    assert verify_certificate(retirement, VKEY + "\n").id == "RT000001"


def test_unknown_ids_have_no_certificate(told: Story) -> None:
    with read_transaction(told.ledger.engine) as conn:
        assert build_certificate(conn, "retirement", "RT999999") is None
        assert build_certificate(conn, "claim", "CN9999") is None
        assert build_certificate(conn, "retirement", "CN0001") is None


def test_a_later_checkpoint_is_used_and_still_verifies(told: Story) -> None:
    told.world.transfer("owner", "buyer", 5)
    told.sync()
    verified = verify_certificate(build(told.ledger, "retirement", "RT000001"), VKEY)
    assert verified.checkpoint_size == CLAIM + 2


def test_provenance_through_a_second_authority_and_a_rotated_key(story: Story) -> None:
    """A deputy made an authority by set_roles issues; the owner retires explicit blocks with a rotated key."""
    world = story.world
    story.sync()  # the participants and the methodology of the story's founding
    world.register("deputy", [Role.VERIFIER])
    (deputy_register,) = (receipt.index for receipt in story.sync())
    deputy_roles = story.submit(
        "authority", ParticipantSetRoles(participant_id="deputy", roles=(Role.AUTHORITY, Role.VERIFIER))
    ).index
    project = world.registered_project()
    story.sync()
    report = story.submit(
        "owner",
        ReportSubmit(
            project_id=project,
            period_start=date(2024, 1, 1),
            period_end=date(2024, 12, 31),
            claimed=500,
            verifier="verifier",
        ),
    )
    verification = story.submit(
        "verifier", ReportVerify(report_id="MR0001", verified=400, opinion_sha256=SHA, statement="ok")
    )
    issuance = story.submit("deputy", Issue(report_id="MR0001"))
    new_key = seeded_key("owner, second key")
    rotation = story.submit(
        "deputy",
        KeyRotate(
            participant_id="owner",
            old_key_id=seeded_key("owner").key_id,
            new_public_key=new_key.public_key.b64(),
            reason="scheduled rotation",
        ),
    )
    world.signers["owner"] = TransactionSigner(ORIGIN, "owner", new_key)
    blocks = ("CDCER-P0001-2024-001-000301-000350", "CDCER-P0001-2024-001-000101-000120")
    retired = story.submit(
        "owner",
        Retire(
            selection=Selection(blocks=blocks),
            beneficiary="Pidu Solar Co.",
            purpose=RetirementPurpose.ORGANISATION,
            year=2024,
            reason="2024 operational footprint",
        ),
    )

    data = build(story.ledger, "retirement", "RT000001")
    verified = verify_certificate(data, VKEY)

    assert verified.entries == tuple(
        sorted(
            {
                GENESIS,
                VERIFIER_KEY,
                OWNER_KEY,
                deputy_register,
                deputy_roles,
                report.index,
                verification.index,
                issuance.index,
                rotation.index,
                retired.index,
            }
        )
    )
    roles = {item["index"]: item["role"] for item in json.loads(data)["entries"]}
    assert (roles[deputy_roles], roles[rotation.index]) == ("role", "key")
    statement = verified.statement
    assert isinstance(statement, RetirementStatement)
    assert (statement.quantity, statement.purpose, statement.year) == (70, "organisation", 2024)
    assert not any("by quantity" in limit for limit in verified.limits)

    # Explicit blocks were signed: a different block of the same size no longer agrees.
    bundle = json.loads(data)
    bundle["statement"]["blocks"] = ["CDCER-P0001-2024-001-000001-000050", blocks[1]]
    with pytest.raises(CertificateError, match=r"blocks is .*000001-000050.*, but entry \d+ signed .*000301-000350"):
        verify_certificate(encode(bundle), VKEY)

    # Without the set_roles entry, the deputy is only what its registration made it: a verifier.
    bundle = json.loads(data)
    bundle["entries"] = [item for item in bundle["entries"] if item["index"] != deputy_roles]
    with pytest.raises(
        CertificateError,
        match=rf"entry {issuance.index} \(issuance\): issuance.issue must be signed by an authority, "
        rf"but deputy is not one: entry {deputy_register} gives it the roles verifier",
    ):
        verify_certificate(encode(bundle), VKEY)

    # Without the rotation, the owner's new key comes from nowhere.
    bundle = json.loads(data)
    bundle["entries"] = [item for item in bundle["entries"] if item["index"] != rotation.index]
    with pytest.raises(CertificateError, match=rf"entry {retired.index} \(retirement\): signed with key .* of owner"):
        verify_certificate(encode(bundle), VKEY)


def test_a_by_quantity_retirements_serials_are_a_stated_limit(retirement: bytes) -> None:
    """Which serials a by-quantity retirement took is not in any signed entry: moving the block inside the
    batch still verifies offline, and the result says that only the full audit can settle it."""
    bundle = json.loads(retirement)
    bundle["statement"]["blocks"] = ["CDCER-P0001-2023-001-000501-000510"]
    verified = verify_certificate(encode(bundle), VKEY)
    assert any("decided by replaying the whole log" in limit for limit in verified.limits)


# --- tampering ------------------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        *parents, last = path.split(".")
        target: Any = bundle
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value

    return change


def _all(*changes: Callable[[Bundle], None]) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        for one in changes:
            one(bundle)

    return change


def _drop(index: int) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        bundle["entries"] = [item for item in bundle["entries"] if item["index"] != index]

    return change


def _flip_leaf(index: int) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        item = entry_of(bundle, index)
        item["leaf"] = flip_b64(item["leaf"], 200)

    return change


def _flip_proof(index: int) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        item = entry_of(bundle, index)
        item["inclusion_proof"][0] = flip_b64(item["inclusion_proof"][0], 5)

    return change


def _flip_checkpoint_signature(bundle: Bundle) -> None:
    text, _, line = bundle["checkpoint"].rstrip("\n").rpartition("\n")
    prefix, _, signature = line.rpartition(" ")
    bundle["checkpoint"] = f"{text}\n{prefix} {flip_b64(signature, 30)}\n"


def _move_leaf(source: int, target: int) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        entry_of(bundle, target)["leaf"] = entry_of(bundle, source)["leaf"]

    return change


RETIREMENT_TAMPERING: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "a byte of the retirement entry": (
        _flip_leaf(RETIREMENT),
        r"entry 15 \(retirement\): not in the checkpoint's tree",
    ),
    "a byte of the issuance entry": (_flip_leaf(ISSUANCE), r"entry 11 \(issuance\): not in the checkpoint's tree"),
    "a proof hash": (_flip_proof(ORGANISER_KEY), r"entry 3 \(key\): not in the checkpoint's tree: .*root mismatch"),
    "the checkpoint signature": (_flip_checkpoint_signature, r"checkpoint: invalid signature from known key"),
    "the checkpoint size": (
        lambda b: b.update(checkpoint=b["checkpoint"].replace("\n17\n", "\n18\n")),
        r"checkpoint: invalid signature",
    ),
    "another entry's bytes at an index": (_move_leaf(ORGANISER_KEY, OWNER_KEY), r"entry 2 \(key\): not in the"),
    "the role of an entry": (
        _set("entries.3.role", "genesis"),
        r"entry 3 \(genesis\): is a transaction of kind participant.register, whose role is 'key'",
    ),
    "the retirement entry dropped": (
        _drop(RETIREMENT),
        r"statement: names entry 15 as the retirement RT000001, but the certificate does not include entry 15",
    ),
    "the issuance dropped": (_drop(ISSUANCE), r"names entry 11 as the issuance of batch P0001-2023-001, but"),
    "the organiser's key dropped": (
        _drop(ORGANISER_KEY),
        r"entry 15 \(retirement\): signed with key [0-9a-f]{16} of organiser, which no earlier entry in the "
        r"certificate introduces",
    ),
    "the genesis dropped": (_drop(GENESIS), r"does not include entry 0, the registry's genesis"),
    "the quantity": (_set("statement.quantity", 11), r"its blocks hold 10 units, but its quantity is 11"),
    "the quantity and its block": (
        _all(_set("statement.quantity", 11), _set("statement.blocks", ["CDCER-P0001-2023-001-000001-000011"])),
        r"retirement RT000001: quantity is 11, but entry 15 signed 10",
    ),
    "a block beyond the batch": (
        _set("statement.blocks", ["CDCER-P0001-2023-001-001146-001155"]),
        r"block CDCER-P0001-2023-001-001146-001155 ends at serial 1155, but batch P0001-2023-001 issued only 1150",
    ),
    "a block of another batch": (
        _set("statement.blocks", ["CDCER-P0001-2023-002-000001-000010"]),
        r"comes from batch P0001-2023-002, which the statement's batches do not list",
    ),
    "a malformed block": (_set("statement.blocks", ["P0001-1-10"]), r"statement: retirement RT000001: block: serial"),
    "the holder": (_set("statement.holder", "owner"), r"holder is 'owner', but entry 15 signed 'organiser'"),
    "the beneficiary": (_set("statement.beneficiary", "Someone else"), r"beneficiary is 'Someone else', but entry 15"),
    "the purpose": (_set("statement.purpose", "voluntary"), r"purpose is 'voluntary', but entry 15 signed 'event'"),
    "the event": (_set("statement.event_id", "E0002"), r"event_id is 'E0002', but entry 15 signed 'E0001'"),
    "the time": (_set("statement.time", "2020-01-01T00:00:00.000000Z"), r"time is '2020-01-01T00:00:00.000000Z'"),
    "the batch quantity": (_set("statement.batches.0.quantity", 2000), r"quantity is 2000, but entry 10 signed 1150"),
    "the batch vintage": (_set("statement.batches.0.vintage", 2024), r"batch P0001-2023-001: a batch of project P0001"),
    "the batch's issuance entry": (
        _set("statement.batches.0.issuance_entry", REPORT),
        r"names entry 9 as the issuance of batch P0001-2023-001, which should be a transaction of kind "
        r"issuance.issue; entry 9 is of kind report.submit",
    ),
    "the retirement's entry": (
        _set("statement.entry", ISSUANCE),
        r"names entry 11 as the retirement RT000001, which should be a transaction of kind units.retire",
    ),
    "the certificate's vkey field": (_set("vkey", OTHER_REGISTRY.verifier_key()), r"it comes from another registry"),
    "the origin": (_set("origin", "other.test/cdcer"), r"checkpoint: checkpoint origin is 'registry.test/cdcer'"),
}


@pytest.mark.parametrize("change", RETIREMENT_TAMPERING.values(), ids=RETIREMENT_TAMPERING.keys())
def test_tampering_with_a_retirement_certificate_is_caught(
    retirement: bytes, change: tuple[Callable[[Bundle], None], str]
) -> None:
    mutate, message = change
    bundle = json.loads(retirement)
    mutate(bundle)
    with pytest.raises(CertificateError, match=message):
        verify_certificate(encode(bundle), VKEY)


CLAIM_TAMPERING: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "a byte of the footprint entry": (_flip_leaf(FOOTPRINT), r"entry 14 \(footprint\): not in the checkpoint's tree"),
    "the footprint entry dropped": (
        _drop(FOOTPRINT),
        r"names entry 14 as the final footprint of event E0001, but the certificate does not include entry 14",
    ),
    "the event registration dropped": (_drop(EVENT), r"names entry 13 as the registration of event E0001, but"),
    "the retirement dropped": (_drop(RETIREMENT), r"names entry 15 as the retirement RT000001, but"),
    "the footprint total": (
        _set("statement.footprint_kg", 9601),
        r"claim CN0001: footprint_kg is 9601, but entry 14 signed 9600",
    ),
    "a footprint source": (
        _set("statement.footprint", {"catering": 601, "venue_energy": 9000}),
        r"claim CN0001: footprint by source is \{'catering': 601, 'venue_energy': 9000\}, but entry 14 signed",
    ),
    "the units": (_set("statement.units", 11), r"units is 11, but its retirements retire 10"),
    "a claimed block": (
        _set("statement.blocks", ["CDCER-P0001-2023-001-000011-000020"]),
        r"blocks \['CDCER-P0001-2023-001-000011-000020'\] are not its retirements' blocks",
    ),
    "a retirement's quantity": (_set("statement.retirements.0.quantity", 9), r"its blocks hold 10 units, but its"),
    "the event's name": (_set("statement.event.name", "Another Forum"), r"event E0001: name is 'Another Forum'"),
    "the event's venue": (_set("statement.event.venue", "Elsewhere"), r"event E0001: venue is 'Elsewhere'"),
    "the event's dates": (_set("statement.event.end_date", "2099-01-01"), r"event E0001: end_date is '2099-01-01'"),
    "the organiser": (_set("statement.event.organiser", "owner"), r"organiser is 'owner', but entry 16 signed"),
    "the event id": (_set("statement.event.id", "E0002"), r"claim CN0001: event is 'E0002', but entry 16 signed"),
    "the footprint entry swapped for the registration": (
        _set("statement.footprint_entry", EVENT),
        r"names entry 13 as the final footprint of event E0001, which should be a transaction of kind "
        r"event.footprint; entry 13 is of kind event.register",
    ),
    "the retirement listed twice": (
        lambda b: b["statement"]["retirements"].append(b["statement"]["retirements"][0]),
        r"retirement RT000001 \(entry 15\) is listed twice",
    ),
}


@pytest.mark.parametrize("change", CLAIM_TAMPERING.values(), ids=CLAIM_TAMPERING.keys())
def test_tampering_with_a_claim_certificate_is_caught(
    claim: bytes, change: tuple[Callable[[Bundle], None], str]
) -> None:
    mutate, message = change
    bundle = json.loads(claim)
    mutate(bundle)
    with pytest.raises(CertificateError, match=message):
        verify_certificate(encode(bundle), VKEY)


def test_another_registrys_verifier_key_is_refused(retirement: bytes) -> None:
    with pytest.raises(CertificateError, match=r"it comes from another registry, or the key given is wrong"):
        verify_certificate(retirement, OTHER_REGISTRY.verifier_key())


def test_another_registrys_key_is_refused_even_when_the_bundle_names_it(retirement: bytes) -> None:
    bundle = json.loads(retirement)
    bundle["vkey"] = OTHER_REGISTRY.verifier_key()
    with pytest.raises(CertificateError, match=r"checkpoint: no signature from a known key"):
        verify_certificate(encode(bundle), OTHER_REGISTRY.verifier_key())


def test_a_key_with_the_same_name_but_other_bytes_is_refused(retirement: bytes) -> None:
    impostor = NoteSigner(ORIGIN, seeded_key("impostor log").seed).verifier_key()
    with pytest.raises(CertificateError, match=r"another registry, or the key given is wrong"):
        verify_certificate(retirement, impostor)


def test_a_genuine_entry_swapped_in_for_another_is_caught(told: Story, retirement: bytes) -> None:
    # The transfer that gave the organiser its units is a real entry with a valid proof, but no certificate role.
    bundle = with_entry(json.loads(retirement), told.ledger, TRANSFER, "retirement")
    bundle["entries"] = [item for item in bundle["entries"] if item["index"] != RETIREMENT]
    with pytest.raises(
        CertificateError, match=r"entry 12 \(retirement\): transactions of kind units.transfer have no place"
    ):
        verify_certificate(encode(bundle), VKEY)


def test_an_entry_under_another_index_is_caught(retirement: bytes) -> None:
    bundle = json.loads(retirement)
    entry_of(bundle, RETIREMENT)["index"] = CLAIM
    with pytest.raises(CertificateError, match=r"entry 16 \(retirement\): not in the checkpoint's tree"):
        verify_certificate(encode(bundle), VKEY)


def test_an_entry_nothing_rests_on_is_refused(told: Story, retirement: bytes) -> None:
    bundle = with_entry(json.loads(retirement), told.ledger, BUYER_KEY, "key")
    with pytest.raises(
        CertificateError, match=r"entry 4 \(key\): is in the certificate, but neither the statement nor any signer"
    ):
        verify_certificate(encode(bundle), VKEY)


def test_an_entry_of_a_kind_certificates_never_carry_is_refused(told: Story, retirement: bytes) -> None:
    bundle = with_entry(json.loads(retirement), told.ledger, METHODOLOGY, "key")
    with pytest.raises(
        CertificateError, match=r"entry 5 \(key\): transactions of kind methodology.publish have no place"
    ):
        verify_certificate(encode(bundle), VKEY)


# --- forged logs, signed with the registry's own checkpoint key -----------------------------------------


def test_a_faithful_reseal_still_verifies(told: Story, claim: bytes) -> None:
    """The forging helper itself changes nothing: every failure below comes from what was forged."""
    bundle = reseal(json.loads(claim), log_leaves(told.ledger))
    assert verify_certificate(encode(bundle), VKEY).entries == CLAIM_ENTRIES


def test_a_key_not_introduced_by_an_authority_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    leaves[ORGANISER_KEY] = forged_entry(leaves, ORGANISER_KEY, "owner", payload_at(leaves, ORGANISER_KEY))
    bundle = reseal(json.loads(retirement), leaves)
    with pytest.raises(
        CertificateError,
        match=r"entry 3 \(key\): participant.register must be signed by an authority, but owner is not one: "
        r"entry 2 gives it the roles project_owner",
    ):
        verify_certificate(encode(bundle), VKEY)


def test_a_retirement_signed_with_an_unregistered_key_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    mallory = seeded_key("mallory")
    leaves[RETIREMENT] = forged_entry(leaves, RETIREMENT, "organiser", payload_at(leaves, RETIREMENT), key=mallory)
    bundle = reseal(json.loads(retirement), leaves)
    with pytest.raises(
        CertificateError, match=rf"entry 15 \(retirement\): signed with key {mallory.key_id} of organiser, which no"
    ):
        verify_certificate(encode(bundle), VKEY)


def test_an_entry_whose_signature_does_not_verify_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    original = decode_entry(leaves[RETIREMENT], index=RETIREMENT)
    bad = bytes([original.signature[0] ^ 1]) + original.signature[1:]
    leaves[RETIREMENT] = Entry(
        RETIREMENT, original.accepted_at, original.prev_chain, original.public_key, bad, original.body_bytes
    ).encode()
    bundle = reseal(json.loads(retirement), leaves)
    with pytest.raises(CertificateError, match=r"entry 15 \(retirement\): signature does not verify for key"):
        verify_certificate(encode(bundle), VKEY)


def test_an_entry_for_another_registry_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    payload = payload_at(leaves, RETIREMENT)
    leaves[RETIREMENT] = forged_entry(leaves, RETIREMENT, "organiser", payload, origin="other.test/cdcer")
    bundle = reseal(json.loads(retirement), leaves)
    with pytest.raises(CertificateError, match=r"entry 15 \(retirement\): transaction is for registry 'other.test"):
        verify_certificate(encode(bundle), VKEY)


def test_a_genesis_naming_another_checkpoint_key_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    genesis = payload_at(leaves, GENESIS)
    assert isinstance(genesis, RegistryGenesis)
    forged = genesis.model_copy(update={"registry_vkey": OTHER_REGISTRY.verifier_key()})
    leaves[GENESIS] = forged_entry(leaves, GENESIS, "authority", forged)
    bundle = reseal(json.loads(retirement), leaves)
    with pytest.raises(CertificateError, match=r"entry 0 \(genesis\): founds the registry with verifier key"):
        verify_certificate(encode(bundle), VKEY)


def test_units_that_do_not_cover_the_footprint_are_refused(told: Story, claim: bytes) -> None:
    leaves = log_leaves(told.ledger)
    bigger = EventFootprint(
        event_id="E0001",
        stage=FootprintStage.FINAL,
        sources={FootprintSource.VENUE_ENERGY: 11_400, FootprintSource.CATERING: 600},
    )
    leaves[FOOTPRINT] = forged_entry(leaves, FOOTPRINT, "organiser", bigger)
    bundle = reseal(json.loads(claim), leaves)
    bundle["statement"]["footprint_kg"] = 12_000
    bundle["statement"]["footprint"] = {"catering": 600, "venue_energy": 11_400}
    with pytest.raises(
        CertificateError,
        match=r"a footprint of 12000 kgCO2e needs 12 retired units \(1 CDCER = 1000 kgCO2e\); its retirements "
        r"retire 10",
    ):
        verify_certificate(encode(bundle), VKEY)


def test_a_planned_footprint_does_not_stand_for_the_final_one(told: Story, claim: bytes) -> None:
    leaves = log_leaves(told.ledger)
    final = payload_at(leaves, FOOTPRINT)
    assert isinstance(final, EventFootprint)
    leaves[FOOTPRINT] = forged_entry(
        leaves, FOOTPRINT, "organiser", final.model_copy(update={"stage": FootprintStage.PLANNED})
    )
    bundle = reseal(json.loads(claim), leaves)
    with pytest.raises(
        CertificateError,
        match=r"entry 14 declares the planned footprint of event E0001; a claim rests on the final one",
    ):
        verify_certificate(encode(bundle), VKEY)


def test_a_claim_resting_on_a_retirement_for_another_purpose_is_refused(told: Story, claim: bytes) -> None:
    leaves = log_leaves(told.ledger)
    retire = payload_at(leaves, RETIREMENT)
    assert isinstance(retire, Retire)
    voluntary = retire.model_copy(update={"purpose": RetirementPurpose.VOLUNTARY, "event_id": None})
    leaves[RETIREMENT] = forged_entry(leaves, RETIREMENT, "organiser", voluntary)
    bundle = reseal(json.loads(claim), leaves)
    bundle["statement"]["retirements"][0].update(purpose="voluntary", event_id=None)
    with pytest.raises(
        CertificateError,
        match=r"retirement RT000001 is for purpose 'voluntary' \(event None\); a claim rests only on retirements for "
        r"its event \(E0001\)",
    ):
        verify_certificate(encode(bundle), VKEY)


def test_a_claim_resting_on_someone_elses_retirement_is_refused(told: Story, claim: bytes) -> None:
    leaves = log_leaves(told.ledger)
    leaves[RETIREMENT] = forged_entry(leaves, RETIREMENT, "owner", payload_at(leaves, RETIREMENT))
    bundle = reseal(json.loads(claim), leaves)
    bundle["statement"]["retirements"][0]["holder"] = "owner"
    with pytest.raises(CertificateError, match=r"retirement RT000001 was made by owner, not by the event's organiser"):
        verify_certificate(encode(bundle), VKEY)


def test_a_second_genesis_cannot_introduce_keys(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    leaves[ORGANISER_KEY] = forged_entry(leaves, ORGANISER_KEY, "authority", payload_at(leaves, GENESIS))
    bundle = reseal(json.loads(retirement), leaves)
    entry_of(bundle, ORGANISER_KEY)["role"] = "genesis"
    with pytest.raises(CertificateError, match=r"entry 3 \(genesis\): a registry.genesis is only valid as entry 0"):
        verify_certificate(encode(bundle), VKEY)


def test_an_entry_with_an_escaped_field_name_is_refused(told: Story, retirement: bytes) -> None:
    """JSON that parses to an entry but is not its canonical bytes, signed into a checkpoint by a hostile log."""
    leaves = log_leaves(told.ledger)
    leaves[RETIREMENT] = leaves[RETIREMENT].replace(b'"transaction":', b'"\\u0074ransaction":')
    bundle = reseal(json.loads(retirement), leaves)
    with pytest.raises(CertificateError, match=r"entry 15 \(retirement\): bytes are not the entry's canonical"):
        verify_certificate(encode(bundle), VKEY)


# --- malformed bundles ----------------------------------------------------------------------------------


MALFORMED_BYTES: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"certificate", r"certificate: not valid JSON"),
    "not UTF-8": (b'{"format": "\xff"}', r"certificate: not UTF-8"),
    "an array": (b"[]", r"certificate: expected a JSON object, found an array"),
    "empty": (b"", r"certificate: not valid JSON"),
    "a float": (b'{"format": 1.5}', r"non-integer number 1.5 is not allowed"),
    "a huge integer": (b'{"format": 9007199254740993}', r"outside the safe range"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, r"certificate: (JSON nested too deeply|not valid JSON)"),
}


@pytest.mark.parametrize("case", MALFORMED_BYTES.values(), ids=MALFORMED_BYTES.keys())
def test_malformed_bytes_are_refused(case: tuple[bytes, str]) -> None:
    data, message = case
    with pytest.raises(CertificateError, match=message):
        verify_certificate(data, VKEY)


def _delete(path: str) -> Callable[[Bundle], None]:
    def change(bundle: Bundle) -> None:
        *parents, last = path.split(".")
        target: Any = bundle
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        del target[last]

    return change


MALFORMED: dict[str, tuple[Callable[[Bundle], None], str]] = {
    "another format": (_set("format", "cdcer-certificate/2"), r"format is 'cdcer-certificate/2', expected"),
    "no format": (_delete("format"), r"format is None, expected 'cdcer-certificate/1'"),
    "another kind": (_set("kind", "cancellation"), r"kind is 'cancellation', expected 'retirement' or 'claim'"),
    "the other kind": (
        _set("kind", "claim"),
        r"certificate: statement.id: String should match pattern '\^CN.*; statement.event: Field required",
    ),
    "no statement": (_delete("statement"), r"certificate: statement: Field required"),
    "no entries": (_delete("entries"), r"certificate: entries: Field required"),
    "empty entries": (_set("entries", []), r"entries: .*at least 1 item"),
    "a statement field missing": (_delete("statement.quantity"), r"statement.quantity: Field required"),
    "an unknown field": (_set("signature", "trust me"), r"signature: Extra inputs are not permitted"),
    "an unknown statement field": (_set("statement.claim_id", "CN0001"), r"statement.claim_id: Extra inputs"),
    "an unknown entry field": (_set("entries.0.leaf_hash", "AAAA"), r"entries.0.leaf_hash: Extra inputs"),
    "an unknown role": (_set("entries.0.role", "witness"), r"entries.0.role: Input should be 'genesis'"),
    "a string index": (_set("entries.0.index", "0"), r"entries.0.index: Input should be a valid integer"),
    "a negative index": (_set("entries.0.index", -1), r"entries.0.index: Input should be greater than or equal to 0"),
    "a boolean quantity": (_set("statement.quantity", True), r"statement.quantity: Input should be a valid integer"),
    "a string quantity": (_set("statement.quantity", "10"), r"statement.quantity: Input should be a valid integer"),
    "a zero quantity": (_set("statement.quantity", 0), r"statement.quantity: Input should be greater than 0"),
    "a number as text": (_set("statement.beneficiary", 7), r"statement.beneficiary: Input should be a valid string"),
    "blocks as a string": (_set("statement.blocks", BLOCK), r"statement.blocks: Input should be a valid (array|tuple)"),
    "a null checkpoint": (_set("checkpoint", None), r"checkpoint: Input should be a valid string"),
    "a leaf that is not base64": (_set("entries.0.leaf", "%%%%"), r"entries\[0\].leaf: not valid base64"),
    "a proof hash that is not base64": (
        _set("entries.7.inclusion_proof.0", "not base64!"),
        r"entries\[7\].inclusion_proof\[0\]: not valid base64",
    ),
    "a short proof hash": (
        _set("entries.7.inclusion_proof.0", base64.b64encode(bytes(31)).decode()),
        r"entries\[7\].inclusion_proof\[0\]: expected 32 bytes, found 31",
    ),
    "entries out of order": (
        lambda b: b["entries"].reverse(),
        r"entries\[1\] is entry 11, after entry 15: entries must be in increasing index order",
    ),
    "an entry twice": (
        lambda b: b["entries"].insert(1, b["entries"][0]),
        r"entries\[1\] is entry 0, after entry 0",
    ),
    "a statement about another record": (_set("statement.id", "RT000002"), r"its statement is about 'RT000002'"),
    "a retirement id in another form": (
        _all(_set("id", "RT-1"), _set("statement.id", "RT-1")),
        r"statement.id: String should match pattern",
    ),
    "a batch id in another form": (_set("statement.batches.0.id", "batch 1"), r"statement.batches.0.id: String should"),
    "a checkpoint that is not a note": (_set("checkpoint", "registry.test/cdcer\n17\n"), r"checkpoint: note has no"),
}


@pytest.mark.parametrize("change", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_bundles_are_refused(retirement: bytes, change: tuple[Callable[[Bundle], None], str]) -> None:
    mutate, message = change
    bundle = json.loads(retirement)
    mutate(bundle)
    with pytest.raises(CertificateError, match=message):
        verify_certificate(encode(bundle), VKEY)


def test_an_oversized_bundle_is_refused_before_parsing() -> None:
    with pytest.raises(CertificateError, match=r"over the limit of 16777216"):
        verify_certificate(b" " * (16 * 1024 * 1024 + 1), VKEY)


def test_a_malformed_verifier_key_is_refused(retirement: bytes) -> None:
    with pytest.raises(CertificateError, match=r"the verifier key given: verifier key 'not a key' must have the form"):
        verify_certificate(retirement, "not a key")


# --- random mutations -----------------------------------------------------------------------------------

_INTERESTING = st.sampled_from(b'{}[]":,0123456789 \\-+/=AZaz\n')
_MUTATION = st.tuples(
    st.sampled_from(["replace", "insert", "delete"]),
    st.floats(min_value=0, max_value=1, exclude_max=True),
    st.one_of(_INTERESTING, st.integers(min_value=0, max_value=255)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutations=st.lists(_MUTATION, min_size=1, max_size=4))
def test_random_byte_mutations_raise_only_certificate_errors(
    claim: bytes, mutations: list[tuple[str, float, int]]
) -> None:
    data = bytearray(claim)
    for operation, where, value in mutations:
        at = int(where * len(data))
        if operation == "replace":
            data[at] = value
        elif operation == "insert":
            data.insert(at, value)
        else:
            del data[at]
    try:
        verified = verify_certificate(bytes(data), VKEY)
    except CertificateError:
        return
    # A mutation that verifies changed nothing that matters (e.g. whitespace, or unused base64 padding bits),
    # except perhaps the number of a retirement the claim lists: ids are assigned by counting in the full log,
    # a limit the result states.
    original = verify_certificate(claim, VKEY)
    assert LIMIT_IDS in verified.limits
    assert (_without_retirement_ids(verified.statement), verified.entries, verified.root_hash) == (
        _without_retirement_ids(original.statement),
        original.entries,
        original.root_hash,
    )


def _without_retirement_ids(statement: BaseModel) -> dict[str, Any]:
    facts = statement.model_dump(mode="json")
    for retirement in facts["retirements"]:
        retirement["id"] = "RT"
    return facts


# --- claims nobody can poison or forge (issue 14) -------------------------------------------------------


def test_another_events_registration_cannot_stand_in_for_the_claims_event(story: Story) -> None:
    # The organiser registered a decoy event first; the claim is for the second. A bundle that swaps the
    # decoy's genuine registration in (its real bytes and proof, every field restated) must not verify.
    world = story.world
    world.issued_batch(world.registered_project(), 2023, 1200, 1150)
    world.transfer("owner", "organiser", 300)
    decoy = EventRegister(
        name="Decoy Expo",
        event_kind=EventKind.EXHIBITION,
        venue="Elsewhere Hall",
        start_date=world.clock.date(),
        end_date=world.clock.date(),
        expected_attendees=5,
    )
    world.submit("organiser", decoy)
    claimed = world.event_with_claim()
    story.sync()
    assert claimed["event_id"] == "E0002"
    decoy_entry, real_entry = world.state.events["E0001"].registered_at, world.state.events["E0002"].registered_at
    bundle = with_entry(json.loads(build(story.ledger, "claim", "CN0001")), story.ledger, decoy_entry, "event")
    bundle["entries"] = [item for item in bundle["entries"] if item["index"] != real_entry]
    bundle["statement"]["event"].update(
        entry=decoy_entry,
        name=decoy.name,
        kind=decoy.event_kind.value,
        venue=decoy.venue,
        start_date=decoy.start_date.isoformat(),
        end_date=decoy.end_date.isoformat(),
        expected_attendees=decoy.expected_attendees,
    )
    with pytest.raises(
        CertificateError,
        match=rf"claim CN0001: event registration entry is {decoy_entry}, but entry \d+ signed {real_entry}",
    ):
        verify_certificate(encode(bundle), VKEY)


def test_a_claim_on_a_final_footprint_of_zero_is_refused(told: Story, claim: bytes) -> None:
    leaves = log_leaves(told.ledger)
    zero = EventFootprint(event_id="E0001", stage=FootprintStage.FINAL, sources={FootprintSource.VENUE_ENERGY: 0})
    leaves[FOOTPRINT] = forged_entry(leaves, FOOTPRINT, "organiser", zero)
    bundle = reseal(json.loads(claim), leaves)
    bundle["statement"].update(footprint_kg=0, footprint={"venue_energy": 0})
    with pytest.raises(CertificateError, match=r"claim CN0001: a footprint of 0 kgCO2e leaves nothing to neutralise"):
        verify_certificate(encode(bundle), VKEY)


def test_a_report_verified_by_another_verifier_than_it_engaged_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    submitted = payload_at(leaves, REPORT)
    assert isinstance(submitted, ReportSubmit)
    leaves[REPORT] = forged_entry(leaves, REPORT, "owner", submitted.model_copy(update={"verifier": "buyer"}))
    with pytest.raises(
        CertificateError,
        match=rf"entry {VERIFICATION} \(verification\): batch P0001-2023-001's report was verified by verifier, "
        rf"but its report \(entry {REPORT}\) engaged buyer",
    ):
        verify_certificate(encode(reseal(json.loads(retirement), leaves)), VKEY)


def test_a_report_accepted_before_its_period_ended_is_refused(told: Story, retirement: bytes) -> None:
    leaves = log_leaves(told.ledger)
    early = datetime(2023, 12, 1, 9, 0, tzinfo=UTC)
    leaves[REPORT] = forged_entry(leaves, REPORT, "owner", payload_at(leaves, REPORT), at=early)
    with pytest.raises(
        CertificateError,
        match=rf"entry {REPORT} \(report\): batch P0001-2023-001's monitoring period ends 2023-12-31, not before "
        r"the report was accepted on 2023-12-01",
    ):
        verify_certificate(encode(reseal(json.loads(retirement), leaves)), VKEY)


def test_the_offline_verifier_loads_no_storage_code() -> None:
    # An auditor's tool imports the verifier alone: no SQLAlchemy, no storage, no builder.
    script = (
        "import sys\n"
        "from ledger.certificate import verify_certificate, parse_certificate\n"
        "storage = ('sqlalchemy', 'ledger.storage', 'ledger.certificate.build')\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(storage))\n"
        "print(loaded)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
