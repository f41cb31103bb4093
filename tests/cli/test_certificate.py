"""`cdcer certificate verify|show` through Typer's CliRunner, over certificates built from a real ledger.

The certificates come from `build_certificate` over `Story.full_story()` on SQLite and PostgreSQL; the
command reads nothing but the file and the verifier key.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.console import printable
from cli.main import app
from ledger.certificate import LIMIT_FOOTPRINT, LIMIT_IDS, build_certificate
from ledger.checkpoint import CosignatureSigner
from ledger.note import NoteSigner, parse_note
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.transactions import Retire, RetirementPurpose, Selection
from tests.cli.test_console import UNSAFE
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key

VKEY = log_signer().verifier_key()
OTHER_REGISTRY_VKEY = NoteSigner("other.test/cdcer", seeded_key("other log").seed).verifier_key()
BLOCK = "CDCER-P0001-2023-001-000001-000010"


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(err: str, *fragments: str) -> None:
    assert err.startswith("error: "), err
    assert err.strip().count("\n") == 0, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def told(story: Story) -> Story:
    story.full_story()
    return story


def write_certificate(story: Story, kind: str, record_id: str, path: Path) -> Path:
    with read_transaction(story.ledger.engine) as conn:
        certificate = build_certificate(conn, kind, record_id)  # type: ignore[arg-type]
    assert certificate is not None
    path.write_bytes(certificate.to_bytes())
    return path


@pytest.fixture
def retirement(told: Story, tmp_path: Path) -> Path:
    return write_certificate(told, "retirement", "RT000001", tmp_path / "RT000001.json")


@pytest.fixture
def claim(told: Story, tmp_path: Path) -> Path:
    return write_certificate(told, "claim", "CN0001", tmp_path / "CN0001.json")


def rewrite(path: Path, change: dict[str, object] | None = None, **statement: object) -> Path:
    """A copy of the certificate with top-level fields and statement fields replaced."""
    bundle = json.loads(path.read_bytes())
    bundle.update(change or {})
    bundle["statement"].update(statement)
    changed = path.with_name("changed.json")
    changed.write_text(json.dumps(bundle))
    return changed


# --- verify ---------------------------------------------------------------------------------------


def test_a_retirement_certificate_verifies_with_json(told: Story, retirement: Path) -> None:
    code, out, err = run("certificate", "verify", str(retirement), "--vkey", VKEY, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["verified"], result["kind"], result["id"], result["origin"]) == (
        True,
        "retirement",
        "RT000001",
        ORIGIN,
    )
    assert result["checkpoint_size"] == told.ledger.size()
    assert result["key_id"] == f"{ORIGIN}+{log_signer().key_id.hex()}"
    statement = result["statement"]
    assert (statement["holder"], statement["quantity"], statement["blocks"]) == ("organiser", 10, [BLOCK])
    assert statement["beneficiary"] == "Tianfu Green Forum"
    assert LIMIT_IDS in result["limits"]
    assert any("RT000001 was by quantity" in limit for limit in result["limits"])
    assert err == ""


def test_a_retirement_certificate_verifies_for_a_person(told: Story, retirement: Path) -> None:
    code, out, err = run("certificate", "verify", str(retirement), "--vkey", VKEY)
    assert code == 0, err
    assert out.startswith("verified: retirement certificate RT000001\n")
    for fact in (f"size {told.ledger.size()}", log_signer().key_id.hex(), "organiser", "10 units", BLOCK):
        assert fact in out
    assert "Tianfu Green" in out
    assert "cannot prove" in out
    assert "was by quantity" in out
    assert "What the signed entries prove:" in out
    assert "retirement RT000001: holder organiser, quantity, beneficiary" in out


def test_a_claim_certificate_verifies(claim: Path) -> None:
    code, out, err = run("certificate", "verify", str(claim), "--vkey", VKEY, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["kind"], result["id"]) == ("claim", "CN0001")
    statement = result["statement"]
    assert (statement["event"]["id"], statement["footprint_kg"], statement["units"]) == ("E0001", 9600, 10)
    assert [r["id"] for r in statement["retirements"]] == ["RT000001"]
    assert LIMIT_FOOTPRINT in result["limits"]
    assert any("which the claim's signed event_entry names" in line for line in result["proven"])

    code, out, err = run("certificate", "verify", str(claim), "--vkey", VKEY)
    assert code == 0, err
    assert out.startswith("verified: claim certificate CN0001\n")
    assert "9,600 kgCO2e" in out
    assert "RT000001 (10)" in out


def test_the_verifier_key_can_come_from_a_file(retirement: Path, tmp_path: Path) -> None:
    vkey_file = tmp_path / "registry.vkey"
    vkey_file.write_text(VKEY + "\n")
    code, out, err = run("certificate", "verify", str(retirement), "--vkey", str(vkey_file), "--json")
    assert code == 0, err
    assert json.loads(out)["verified"] is True


@pytest.mark.parametrize(
    ("change", "statement", "reason"),
    [
        (None, {"quantity": 11}, "quantity"),
        (None, {"holder": "buyer"}, "holder"),
        (None, {"beneficiary": "Someone Else"}, "beneficiary"),
        ({"origin": "other.test/cdcer"}, {}, "checkpoint"),
    ],
)
def test_a_tampered_certificate_exits_1_with_the_reason(
    retirement: Path, change: dict[str, object] | None, statement: dict[str, object], reason: str
) -> None:
    changed = rewrite(retirement, change, **statement)
    code, out, err = run("certificate", "verify", str(changed), "--vkey", VKEY)
    assert code == 1
    assert out == ""
    assert_one_line_error(err, "does not verify", reason)

    code, out, err = run("certificate", "verify", str(changed), "--vkey", VKEY, "--json")
    assert code == 1
    result = json.loads(out)
    assert result["verified"] is False
    assert reason in result["reason"]
    assert_one_line_error(err, "does not verify")


def test_a_flipped_byte_in_an_entry_exits_1(retirement: Path) -> None:
    bundle = json.loads(retirement.read_bytes())
    leaf = bytearray(base64.b64decode(bundle["entries"][-1]["leaf"]))
    leaf[len(leaf) // 2] ^= 0x01
    bundle["entries"][-1]["leaf"] = base64.b64encode(bytes(leaf)).decode()
    changed = retirement.with_name("flipped.json")
    changed.write_text(json.dumps(bundle))
    code, _, err = run("certificate", "verify", str(changed), "--vkey", VKEY)
    assert code == 1
    assert_one_line_error(err, "does not verify", "not in the checkpoint's tree")


def test_another_registrys_key_exits_1(retirement: Path) -> None:
    code, _, err = run("certificate", "verify", str(retirement), "--vkey", OTHER_REGISTRY_VKEY)
    assert code == 1
    assert_one_line_error(err, "another registry")


@pytest.mark.parametrize(
    "vkey",
    [
        "not a key",
        VKEY.rsplit("+", 1)[0] + "+AAAA",
        f"{ORIGIN}+00000000+" + base64.b64encode(b"\x01" + seeded_key("stranger").public_key.raw).decode(),
        "",
    ],
)
def test_a_bad_vkey_exits_2(retirement: Path, vkey: str) -> None:
    code, out, err = run("certificate", "verify", str(retirement), "--vkey", vkey)
    assert code == 2
    assert out == ""
    assert_one_line_error(err, "--vkey")


def test_unreadable_files_exit_2_and_garbage_exits_1(tmp_path: Path) -> None:
    code, _, err = run("certificate", "verify", str(tmp_path / "missing.json"), "--vkey", VKEY)
    assert code == 2
    assert_one_line_error(err, "not found")

    code, _, err = run("certificate", "verify", str(tmp_path), "--vkey", VKEY)
    assert code == 2
    assert_one_line_error(err, "cannot read certificate")

    for content in (b"\x00\xff garbage", b"[]", b'{"format": "something else"}', b"{}" * 10):
        garbage = tmp_path / "garbage.json"
        garbage.write_bytes(content)
        code, out, err = run("certificate", "verify", str(garbage), "--vkey", VKEY)
        assert code == 1, content
        assert out == ""
        assert_one_line_error(err, "does not verify", "certificate")


# --- show -----------------------------------------------------------------------------------------


def test_show_prints_the_statement_and_says_it_did_not_verify(retirement: Path, claim: Path) -> None:
    code, out, err = run("certificate", "show", str(retirement))
    assert code == 0, err
    assert out.startswith("retirement certificate RT000001 (not verified)\n")
    for fact in ("organiser", "10 units", BLOCK, "Tianfu Green", VKEY[:20]):
        assert fact in out
    assert "NOT verified" in err

    code, out, err = run("certificate", "show", str(claim), "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["verified"], result["kind"], result["id"], result["vkey"]) == (False, "claim", "CN0001", VKEY)
    assert result["statement"]["footprint"] == {"catering": 600, "venue_energy": 9000}
    assert "NOT verified" in err


def test_show_shows_a_tampered_certificate_because_it_does_not_verify(retirement: Path) -> None:
    changed = rewrite(retirement, quantity=11)
    code, out, _ = run("certificate", "show", str(changed), "--json")
    assert code == 0
    assert json.loads(out)["statement"]["quantity"] == 11


def test_show_refuses_what_is_not_a_certificate(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    code, out, err = run("certificate", "show", str(garbage))
    assert code == 2
    assert out == ""
    assert_one_line_error(err, "not a readable certificate")

    code, _, err = run("certificate", "show", str(tmp_path / "missing.json"))
    assert code == 2
    assert_one_line_error(err, "not found")


# --- what the certificate says is printed as inert text ----------------------------------------------

BENEFICIARY = "Forum [/] [bold red]x\x1b[2K\r✓ verified: retirement certificate RT999999\nverified: ok"
REASON = "neutral\u202ekc\x9b31m\x7f [link=https://evil.example]here :smile:"
EVENT_NAME = "[/]Forum\r\nverified: claim certificate CN9999"
VENUE = "Hall \x1b]8;;https://evil.example\x07here\x1b]8;;\x07 [/]"


def assert_inert(out: str, *verdicts: str) -> None:
    """No control character reached the output, and the only verdict lines are the command's own."""
    assert not set(out) & (set(UNSAFE) - {"\n"}), out
    assert [line for line in out.splitlines() if line.lstrip().startswith(("verified", "✓"))] == list(verdicts)


@pytest.fixture
def hostile(story: Story, tmp_path: Path) -> Path:
    """A real retirement whose signed beneficiary and reason carry markup and control characters."""
    project = story.world.registered_project()
    story.world.issued_batch(project, 2023, 1200, 1150)
    retire = Retire(
        selection=Selection(quantity=10),
        beneficiary=BENEFICIARY,
        purpose=RetirementPurpose.VOLUNTARY,
        reason=REASON,
    )
    story.world.submit("owner", retire)
    story.sync()
    return write_certificate(story, "retirement", "RT000001", tmp_path / "hostile.json")


def test_a_verified_certificates_strings_print_literally_and_cannot_forge_a_verdict(hostile: Path) -> None:
    code, out, err = run("certificate", "verify", str(hostile), "--vkey", VKEY)
    assert code == 0, err
    assert printable(BENEFICIARY) in out
    assert printable(REASON) in out
    assert_inert(out, "verified: retirement certificate RT000001")

    code, out, err = run("certificate", "show", str(hostile))
    assert code == 0, err
    assert printable(BENEFICIARY) in out
    assert_inert(out)


def test_json_output_stays_the_exact_strings(hostile: Path) -> None:
    for command in ("verify", "show"):
        args = ["--vkey", VKEY] if command == "verify" else []
        code, out, err = run("certificate", command, str(hostile), *args, "--json")
        assert code == 0, err
        statement = json.loads(out)["statement"]
        assert (statement["beneficiary"], statement["reason"]) == (BENEFICIARY, REASON)
        assert not set(out) & (set(UNSAFE) - {"\n"})  # escaped in the JSON, not raw


def test_a_claims_event_strings_print_literally(claim: Path) -> None:
    bundle = json.loads(claim.read_bytes())
    bundle["statement"]["event"].update(name=EVENT_NAME, venue=VENUE)
    changed = claim.with_name("hostile-claim.json")
    changed.write_text(json.dumps(bundle))
    code, out, err = run("certificate", "show", str(changed))
    assert code == 0, err
    assert repr(EVENT_NAME) in out
    assert printable(VENUE) in out
    assert_inert(out)
    # It does not verify (entry signed another name); the reason quoting it is one inert line.
    code, out, err = run("certificate", "verify", str(changed), "--vkey", VKEY)
    assert (code, out) == (1, "")
    assert_one_line_error(err, "does not verify")
    assert_inert(err)


# --- --witness: the certificate's checkpoint must be cosigned ----------------------------------------

W1, W2 = (CosignatureSigner(f"witness.test/w{n}", seeded_key(f"witness-w{n}").seed) for n in (1, 2))
W1_KEY, W2_KEY = W1.verifier_key(), W2.verifier_key()
W1_LABEL, W2_LABEL = (f"{w.name}+{w.key_id.hex()}" for w in (W1, W2))


def store_cosignature(story: Story, witness: CosignatureSigner, *, of_size: int | None = None) -> int:
    """Store `witness`'s cosignature line for the latest checkpoint, made over the text of the checkpoint
    of `of_size` (default: the latest's own); the latest size."""
    with story.ledger.engine.begin() as conn:
        latest = store.latest_checkpoint(conn)
        assert latest is not None
        source = latest if of_size is None else store.checkpoint_at(conn, of_size)
        assert source is not None
        line = witness.cosign(parse_note(source.note).text, 1_700_000_000).line()
        store.insert_cosignature(conn, latest.size, witness.name, line, 1_700_000_000)
    return latest.size


def test_witness_requires_a_cosigned_checkpoint(told: Story, retirement: Path) -> None:
    code, out, err = run("certificate", "verify", str(retirement), "--vkey", VKEY, "--witness", W1_KEY)
    assert (code, out) == (1, "")
    assert_one_line_error(err, "lacks witness cosignatures", f"none from {W1_LABEL}")
    code, out, _ = run("certificate", "verify", str(retirement), "--vkey", VKEY, "--witness", W1_KEY, "--json")
    assert code == 1
    result = json.loads(out)
    assert result["verified"] is False
    assert result["witnesses"] == {
        "required": 1,
        "satisfied": False,
        "cosigned": [],
        "missing": [W1_LABEL],
        "invalid": [],
    }


def test_witness_cosignatures_count_for_their_checkpoint_only(told: Story, tmp_path: Path) -> None:
    store_cosignature(told, W1)
    cosigned = write_certificate(told, "retirement", "RT000001", tmp_path / "cosigned.json")
    both = ["--witness", W1_KEY, "--witness", W2_KEY]

    code, out, err = run("certificate", "verify", str(cosigned), "--vkey", VKEY, "--witness", W1_KEY, "--json")
    assert code == 0, err
    witnesses = json.loads(out)["witnesses"]
    assert witnesses["cosigned"] == [{"witness": W1_LABEL, "timestamp": 1_700_000_000}]
    assert (witnesses["required"], witnesses["satisfied"]) == (1, True)
    code, out, err = run("certificate", "verify", str(cosigned), "--vkey", VKEY, "--witness", W1_KEY)
    assert code == 0, err
    assert f"cosigned by  {W1_LABEL}" in out

    # Both required (the default, and --min-witnesses 2): w2 has not cosigned.
    for extra in ([], ["--min-witnesses", "2"]):
        code, out, err = run("certificate", "verify", str(cosigned), "--vkey", VKEY, *both, *extra)
        assert (code, out) == (1, "")
        assert_one_line_error(err, "1 valid witness cosignature(s), 2 required", f"none from {W2_LABEL}")
    code, _, err = run("certificate", "verify", str(cosigned), "--vkey", VKEY, *both, "--min-witnesses", "1")
    assert code == 0, err

    # w2's cosignature of an earlier checkpoint, served with the latest one, does not count.
    size = store_cosignature(told, W2, of_size=2)
    stale = write_certificate(told, "retirement", "RT000001", tmp_path / "stale.json")
    assert W2.name in json.loads(stale.read_bytes())["checkpoint"]
    code, out, err = run("certificate", "verify", str(stale), "--vkey", VKEY, *both, "--json")
    assert code == 1
    result = json.loads(out)["witnesses"]
    assert (result["missing"], result["invalid"]) == ([], [W2_LABEL])
    assert_one_line_error(err, f"(size {size:,})", f"an invalid one from {W2_LABEL}")


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--witness", "not a key"], "--witness"),
        (["--witness", VKEY], "--witness"),  # the registry's own key is no witness key
        (["--witness", W1_KEY, "--witness", W2_KEY, "--min-witnesses", "3"], "--min-witnesses 3"),
        (["--witness", W1_KEY, "--witness", W1_KEY, "--min-witnesses", "2"], "only 1 distinct"),
        (["--min-witnesses", "1"], "--min-witnesses 1"),
    ],
)
def test_a_bad_witness_option_exits_2(retirement: Path, options: list[str], fragment: str) -> None:
    code, out, err = run("certificate", "verify", str(retirement), "--vkey", VKEY, *options)
    assert (code, out) == (2, "")
    assert_one_line_error(err, fragment)
