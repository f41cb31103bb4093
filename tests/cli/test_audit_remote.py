"""The auditor's tools: `cdcer audit verify|export|checkpoint|proof` with only a registry's URL and its vkey."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner, Result

from cli.main import app
from ledger.checkpoint import Checkpoint, CosignatureSigner, sign_checkpoint
from ledger.encoding import b64encode
from ledger.keys import write_key_file
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import make_engine
from tests.cli.test_witness import cosign, grow, register_witnesses
from tests.conftest import Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_audit import drop_triggers, points_story
from tests.registry.live import free_port, serve

VKEY = log_signer().verifier_key()
WRONG_VKEY = NoteSigner(ORIGIN, seeded_key("impostor").seed).verifier_key()


def cdcer(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def report_of(result: Result) -> Any:
    assert "Traceback" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def one_error_line(result: Result, code: int) -> str:
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "registry-log.key"
    write_key_file(path, seeded_key("log"), passphrase=None)
    return path


def test_an_auditor_with_the_url_and_the_vkey(story: Story, database_url: str, tmp_path: Path) -> None:
    project = story.world.registered_project()
    story.sync()
    saved = tmp_path / "checkpoint.note"
    with serve(database_url, key_file(tmp_path)) as url:
        # the whole log, from the URL alone
        first = cdcer("audit", "verify", "--url", url, "--vkey", VKEY, "--json")
        assert first.exit_code == 0, first.stderr
        report = report_of(first)
        assert report["verified"] is True
        assert report["entries"] == story.ledger.size() > 1
        assert report["checkpoints"] == 1
        assert report["signatures_checked"] == report["entries"]
        # save the checkpoint
        saving = cdcer("audit", "checkpoint", "--url", url, "--vkey", VKEY, "--save", str(saved), "--json")
        assert saving.exit_code == 0, saving.stderr
        old_size = report_of(saving)["size"]
        assert old_size == story.ledger.size()
        assert saved.read_bytes().startswith(ORIGIN.encode())

        # the log grows
        story.world.issued_batch(project, 2023, 1200, 1150)
        story.world.transfer("owner", "organiser", 300)
        story.sync()
        new_size = story.ledger.size()
        assert new_size > old_size

        since = cdcer("audit", "verify", "--url", url, "--vkey", VKEY, "--since", str(saved), "--json")
        assert since.exit_code == 0, since.stderr
        report = report_of(since)
        assert report["verified"] is True
        assert report["entries"] == report["signatures_checked"] == new_size - old_size  # only the new part
        limits = report["since"].pop("limits")
        assert report["since"] == {
            "old_size": old_size,
            "new_size": new_size,
            "new_entries": new_size - old_size,
            "consistent": True,
        }
        assert any("full audit" in limit for limit in limits)
        assert f"consistent: {old_size:,} -> {new_size:,}" in since.stderr
        human = cdcer("audit", "verify", "--url", url, "--vkey", VKEY, "--since", str(saved))
        assert human.exit_code == 0
        assert f"verified: {new_size - old_size:,} new entries ({old_size:,} -> {new_size:,})" in human.stdout
        first_saved = saved.read_bytes()

        # a saved checkpoint that the registry's log does not extend: exit 1
        forged = tmp_path / "forged.note"
        forged_root = bytes(32)
        forged.write_bytes(log_signer_note(old_size, forged_root))
        forked = cdcer("audit", "verify", "--url", url, "--vkey", VKEY, "--since", str(forged))
        assert "is not consistent" in one_error_line(forked, 1)
        refused = cdcer("audit", "checkpoint", "--url", url, "--vkey", VKEY, "--save", str(forged))
        assert "is not consistent" in one_error_line(refused, 1)
        assert forged.read_bytes() == log_signer_note(old_size, forged_root)  # not replaced

        # the saved checkpoint is replaced by a consistent newer one
        update = cdcer("audit", "checkpoint", "--url", url, "--vkey", VKEY, "--save", str(saved), "--json")
        assert update.exit_code == 0, update.stderr
        assert report_of(update)["previous_size"] == old_size
        assert report_of(update)["size"] == new_size

        # proofs against the signed checkpoint
        for args in (["--index", "1"], ["--index", "1", "--size", str(old_size)], ["--index", str(new_size - 1)]):
            proof = cdcer("audit", "proof", "inclusion", "--url", url, "--vkey", VKEY, *args, "--json")
            assert proof.exit_code == 0, proof.stderr
            assert report_of(proof)["verified"] is True
        assert one_error_line(
            cdcer("audit", "proof", "inclusion", "--url", url, "--vkey", VKEY, "--index", str(new_size)), 2
        )
        consistency = cdcer("audit", "proof", "consistency", "--url", url, "--vkey", VKEY, "--old", "2", "--json")
        assert consistency.exit_code == 0, consistency.stderr
        assert report_of(consistency)["new"] == new_size
        wrong_root = cdcer(
            "audit",
            "proof",
            "consistency",
            "--url",
            url,
            "--vkey",
            VKEY,
            "--old",
            "2",
            "--old-root",
            b64encode(bytes(32)),
        )
        assert "is not consistent" in one_error_line(wrong_root, 1)

        # a new entry altered in the database behind the registry: --since finds it at its index
        altered = (old_size + new_size) // 2
        drop_triggers(story.ledger.engine)
        with story.ledger.engine.begin() as conn:
            data = conn.execute(text("SELECT data FROM log_entries WHERE idx = :i"), {"i": altered}).scalar_one()
            changed = bytes(data).replace(b'"v":1}', b'"v":7}')
            conn.execute(text("UPDATE log_entries SET data = :d WHERE idx = :i"), {"d": changed, "i": altered})
        old_note = tmp_path / "old.note"
        old_note.write_bytes(first_saved)
        caught = cdcer("audit", "verify", "--url", url, "--vkey", VKEY, "--since", str(old_note), "--json")
        assert caught.exit_code == 1, caught.stderr
        assert report_of(caught)["first_bad_index"] == altered
        with story.ledger.engine.begin() as conn:  # put it back for what follows
            conn.execute(text("UPDATE log_entries SET data = :d WHERE idx = :i"), {"d": bytes(data), "i": altered})

        # the same raw log from the URL and from the database
        by_url, by_db = tmp_path / "url.jsonl", tmp_path / "db.jsonl"
        assert cdcer("audit", "export", "--url", url, str(by_url)).exit_code == 0
        assert cdcer("audit", "export", "--database", database_url, str(by_db)).exit_code == 0
        assert by_url.read_bytes() == by_db.read_bytes()
        assert len(by_url.read_bytes().splitlines()) == new_size + 1
        offline = cdcer("audit", "verify", "--export", str(by_url), "--vkey", VKEY, "--json")
        assert offline.exit_code == 0
        assert report_of(offline)["entries"] == new_size

        # a wrong (well-formed) vkey is an integrity failure: exit 1; a malformed one a usage error: exit 2
        wrong = cdcer("audit", "verify", "--url", url, "--vkey", WRONG_VKEY, "--json")
        assert wrong.exit_code == 1
        assert "checkpoint" in report_of(wrong)["first_finding"]
        assert "does not verify" in one_error_line(cdcer("audit", "checkpoint", "--url", url, "--vkey", WRONG_VKEY), 1)
        assert "--vkey" in one_error_line(cdcer("audit", "verify", "--url", url, "--vkey", "not-a-key"), 2)


def log_signer_note(size: int, root: bytes) -> bytes:
    """A checkpoint signed with the registry's real key but naming a root the log never had (a fork)."""
    return sign_checkpoint(Checkpoint(ORIGIN, size, root), log_signer())


def test_an_unreachable_registry_is_one_line_and_exit_3(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (
        ["audit", "verify", "--url", url, "--vkey", VKEY],
        ["audit", "checkpoint", "--url", url, "--vkey", VKEY],
        ["audit", "export", "--url", url, str(tmp_path / "out.jsonl")],
        ["audit", "proof", "consistency", "--url", url, "--vkey", VKEY, "--old", "1"],
    ):
        assert "cannot reach" in one_error_line(cdcer(*args), 3)
    assert not (tmp_path / "out.jsonl").exists()


def test_exactly_one_source(database_url: str, tmp_path: Path) -> None:
    one_error_line(cdcer("audit", "verify", "--vkey", VKEY), 2)
    one_error_line(cdcer("audit", "verify", "-d", database_url, "--export", str(tmp_path / "x")), 2)
    one_error_line(cdcer("audit", "verify", "-d", database_url, "--since", str(tmp_path / "x"), "--vkey", VKEY), 2)


def test_any_changed_byte_of_an_export_is_found_at_its_entry(story: Story, database_url: str, tmp_path: Path) -> None:
    story.full_story()
    export = tmp_path / "log.jsonl"
    assert cdcer("audit", "export", "-d", database_url, str(export)).exit_code == 0
    original = export.read_bytes()
    assert cdcer("audit", "verify", "--export", str(export), "--vkey", VKEY).exit_code == 0
    line_starts = [0] + [i + 1 for i, byte in enumerate(original) if byte == ord("\n")][:-1]
    rng = random.Random(7)
    for _ in range(30):
        position = rng.randrange(line_starts[1], len(original))
        entry = max(n for n, start in enumerate(line_starts) if start <= position) - 1
        changed = bytearray(original)
        changed[position] = rng.choice([b for b in range(256) if b != original[position]])
        export.write_bytes(bytes(changed))
        result = cdcer("audit", "verify", "--export", str(export), "--vkey", VKEY, "--json")
        where = (position, entry, chr(original[position]), changed[position])
        assert result.exit_code == 1, (where, result.stdout, result.stderr)
        report = report_of(result)  # under --json a failure is JSON too: the audit's report, or only its error
        assert report["error"]["exit_code"] == 1
        if "first_bad_index" in report:
            assert report["first_bad_index"] == entry, (where, report["findings"][:3])
        else:
            assert f"line {entry + 2} (entry {entry})" in report["error"]["message"], where
            assert f"line {entry + 2} (entry {entry})" in one_error_line(result, 1), where
    for _ in range(5):  # the checkpoint line: its signature or its form fails
        position = rng.randrange(0, line_starts[1])
        changed = bytearray(original)
        changed[position] ^= 1 << rng.randrange(8)
        export.write_bytes(bytes(changed))
        assert cdcer("audit", "verify", "--export", str(export), "--vkey", VKEY).exit_code == 1, position


def test_a_malformed_export_names_the_line(story: Story, database_url: str, tmp_path: Path) -> None:
    story.full_story()
    export = tmp_path / "log.jsonl"
    assert cdcer("audit", "export", "-d", database_url, str(export)).exit_code == 0
    lines = export.read_bytes().splitlines(keepends=True)
    export.write_bytes(b"".join([*lines[:3], b'{"index": 2, "leaf": "AAAA"}\n', *lines[4:]]))
    offline = ("audit", "verify", "--vkey", VKEY, "--export")
    assert "line 4 (entry 2)" in one_error_line(cdcer(*offline, str(export)), 1)
    export.write_bytes(b"not json\n" + b"".join(lines[1:]))
    assert "line 1 (the checkpoint)" in one_error_line(cdcer(*offline, str(export)), 1)
    export.write_bytes(b"".join(lines[:1] + lines[1:] + lines[-1:]))
    assert "covers only" in one_error_line(cdcer(*offline, str(export)), 1)
    missing = tmp_path / "missing.jsonl"
    assert "cannot read" in one_error_line(cdcer(*offline, str(missing)), 3)


# --- --witness: the registry's checkpoint must be cosigned -------------------------------------------

W1, W2 = (CosignatureSigner(f"witness.test/w{n}", seeded_key(f"witness-w{n}").seed) for n in (1, 2))
W1_KEY, W2_KEY = W1.verifier_key(), W2.verifier_key()
W1_LABEL, W2_LABEL = (f"{w.name}+{w.key_id.hex()}" for w in (W1, W2))


def test_an_auditor_can_require_witness_cosignatures(ledger: Ledger, tmp_path: Path) -> None:
    register_witnesses(ledger, tmp_path)
    database = ledger.engine.url.render_as_string(hide_password=False)
    ledger.engine.dispose()
    both = ["--witness", W1_KEY, "--witness", W2_KEY]
    with serve(database, key_file(tmp_path)) as url:

        def audit(*options: str) -> Result:
            return cdcer("audit", "verify", "--url", url, "--vkey", VKEY, *options)

        # Nobody has cosigned the registry's checkpoint yet.
        bare = audit("--witness", W1_KEY, "--json")
        assert "lacks witness cosignatures" in one_error_line(bare, 1)
        assert report_of(bare)["verified"] is False
        assert report_of(bare)["witnesses"]["missing"] == [W1_LABEL]

        # w1 checks the log and cosigns: the served checkpoint carries its cosignature.
        code, _, err = cosign(url, "w1", tmp_path)
        assert code == 0, err
        passed = audit("--witness", W1_KEY, "--json")
        assert passed.exit_code == 0, passed.stderr
        report = report_of(passed)
        assert report["verified"] is True
        assert [c["witness"] for c in report["witnesses"]["cosigned"]] == [W1_LABEL]
        human = audit("--witness", W1_KEY)
        assert human.exit_code == 0, human.stderr
        assert f"witnesses: the checkpoint is cosigned by {W1_LABEL} (1 required)" in human.stdout
        assert "verified: " in human.stdout

        # Both required (by default, or --min-witnesses 2): w2 has not cosigned. One of the two will do.
        for extra in ([], ["--min-witnesses", "2"]):
            line = one_error_line(audit(*both, *extra), 1)
            assert "1 valid witness cosignature(s), 2 required" in line
            assert f"none from {W2_LABEL}" in line
        assert audit(*both, "--min-witnesses", "1").exit_code == 0

        # The same check with --since: the registry's current checkpoint is the one cosigned.
        saved = tmp_path / "saved.note"
        assert cdcer("audit", "checkpoint", "--url", url, "--vkey", VKEY, "--save", str(saved)).exit_code == 0
        assert audit("--since", str(saved), "--witness", W1_KEY).exit_code == 0
        assert "none from" in one_error_line(audit("--since", str(saved), *both), 1)

        # Usage errors: a bad key, the registry's own key, an unreachable minimum, no --vkey, no --url.
        for options in (
            ["--witness", "not-a-key"],
            ["--witness", VKEY],
            [*both, "--min-witnesses", "3"],
            ["--min-witnesses", "1"],
        ):
            assert one_error_line(audit(*options), 2)
        assert "--witness needs" in one_error_line(cdcer("audit", "verify", "--url", url, "--witness", W1_KEY), 2)
        no_url = cdcer("audit", "verify", "-d", database, "--vkey", VKEY, "--witness", W1_KEY)
        assert "--witness needs" in one_error_line(no_url, 2)

        # The log grows; the registry serves w1's cosignature of the old checkpoint with the new one.
        grow(url, 0, 1)
        engine = make_engine(database)
        try:
            with engine.begin() as conn:
                latest = store.latest_checkpoint(conn)
                assert latest is not None
                (old_line,) = store.cosignature_lines(conn, latest.size - 1)
                store.insert_cosignature(conn, latest.size, W1.name, old_line, 1)
        finally:
            engine.dispose()
        stale = audit("--witness", W1_KEY, "--json")
        assert f"an invalid one from {W1_LABEL}" in one_error_line(stale, 1)
        assert report_of(stale)["witnesses"]["invalid"] == [W1_LABEL]


def test_an_outside_auditor_verifies_a_points_log_without_its_private_records(
    story: Story, database_url: str, tmp_path: Path
) -> None:
    # The export (like the registry over HTTP) carries no points batch's records: the audit verifies every
    # entry's chain, tree, key, role and signature, replays all but the point balances, and says so.
    points_story(story)
    export = tmp_path / "log.jsonl"
    assert cdcer("audit", "export", "-d", database_url, str(export)).exit_code == 0
    result = cdcer("audit", "verify", "--export", str(export), "--vkey", VKEY)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    assert result.stdout.startswith(f"verified: {story.ledger.size()} entries")
    assert "note: 3 points entries (attestations, redemptions, expiries, clawbacks) checked up to" in result.stderr
    report = report_of(cdcer("audit", "verify", "--export", str(export), "--vkey", VKEY, "--json"))
    assert (report["verified"], report["points_not_replayed"]) == (True, 3)
    # With the database, the same log replays in full.
    full = report_of(cdcer("audit", "verify", "--database", database_url, "--vkey", VKEY, "--json"))
    assert (full["verified"], full["points_not_replayed"], full["projections_checked"]) == (True, 0, True)
