"""What a new user meets first (issue 16): the verifier key asked for, not guessed; failures as JSON under
--json; chained audits; progress only on a terminal; `cdcer serve` and `make run`; counts, hashes, widths."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from sqlalchemy import text
from typer.testing import CliRunner, Result

from cli import audit as audit_cli
from cli.console import json_mode, plural
from cli.main import app
from ledger.note import parse_note
from tests.cli.test_audit_remote import key_file
from tests.cli.test_certificate import write_certificate
from tests.cli.test_writes import Served, StoryIds, run_story, serve_registry
from tests.conftest import Databases, Story, log_signer
from tests.registry.live import REPO_ROOT, free_port, serve

VKEY = log_signer().verifier_key()


def cdcer(*args: str, env: dict[str, str | None] | None = None) -> Result:
    return CliRunner().invoke(app, list(args), env=env)


def error_line(result: Result, code: int) -> str:
    """The one stderr line of a failure (and no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


def json_error(result: Result, code: int) -> dict[str, Any]:
    """The one JSON object a failure under --json prints on stdout; its error's exit code is the exit status."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in result.stdout + result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    assert document["error"]["exit_code"] == code
    assert isinstance(document["error"]["message"], str)
    assert document["error"]["message"]
    return document


@pytest.fixture
def told(story: Story) -> Story:
    story.full_story()
    return story


@pytest.fixture
def registry_url(told: Story, database_url: str, tmp_path: Path) -> Iterator[str]:
    with serve(database_url, key_file(tmp_path)) as url:
        yield url


# --- 1. the verifier key is asked for, from --vkey or CDCER_VKEY ------------------------------------


def test_an_audit_over_url_without_a_vkey_is_a_usage_error_that_says_what_to_pass(registry_url: str) -> None:
    line = error_line(cdcer("audit", "verify", "--url", registry_url), 2)
    for hint in ("verifier key", "--vkey", "CDCER_VKEY", "out of band"):
        assert hint in line, line
    # the same registry, the key given: verified (so it was the missing key, not the registry)
    assert cdcer("audit", "verify", "--url", registry_url, "--vkey", VKEY).exit_code == 0


def test_an_export_without_a_vkey_is_a_usage_error(told: Story, database_url: str, tmp_path: Path) -> None:
    export = tmp_path / "log.jsonl"
    assert cdcer("audit", "export", "-d", database_url, str(export)).exit_code == 0
    assert "CDCER_VKEY" in error_line(cdcer("audit", "verify", "--export", str(export)), 2)
    assert cdcer("audit", "verify", "--export", str(export), env={"CDCER_VKEY": VKEY}).exit_code == 0


def test_every_audit_command_reads_cdcer_vkey(registry_url: str, tmp_path: Path) -> None:
    saved = tmp_path / "registry.checkpoint"
    commands = [
        ("audit", "verify", "--url", registry_url),
        ("audit", "checkpoint", "--url", registry_url, "--save", str(saved)),
        ("audit", "proof", "inclusion", "--url", registry_url, "--index", "1"),
        ("audit", "proof", "consistency", "--url", registry_url, "--old", "2"),
    ]
    for command in commands:
        assert "CDCER_VKEY" in error_line(cdcer(*command), 2), command
        pinned = cdcer(*command, env={"CDCER_VKEY": VKEY})
        assert pinned.exit_code == 0, (command, pinned.stderr)
        assert pinned.stdout.startswith(("verified", "checkpoint verified")), pinned.stdout
    assert (
        cdcer("audit", "verify", "--url", registry_url, "--since", str(saved), env={"CDCER_VKEY": VKEY}).exit_code == 0
    )


def test_certificate_verify_reads_cdcer_vkey(told: Story, tmp_path: Path) -> None:
    certificate = write_certificate(told, "retirement", "RT000001", tmp_path / "RT000001.json")
    assert "CDCER_VKEY" in error_line(cdcer("certificate", "verify", str(certificate)), 2)
    result = cdcer("certificate", "verify", str(certificate), env={"CDCER_VKEY": VKEY})
    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("verified: retirement certificate RT000001")


@pytest.fixture(scope="module")
def served(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_registry(databases, tmp_path_factory.mktemp("cli-first-use"))


@pytest.fixture(scope="module")
def served_story(served: Served) -> StoryIds:
    return run_story(served)


def test_a_write_without_a_pinned_key_warns_once_that_it_trusts_the_servers_key(
    served: Served, served_story: StoryIds
) -> None:
    unpinned = served.cdcer(
        "sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1", env={"CDCER_VKEY": None}
    )
    assert unpinned.exit_code == 0, unpinned.stderr
    (warning,) = unpinned.stderr.splitlines()
    assert warning.startswith("warning: no --vkey or CDCER_VKEY: trusting")
    assert "/v1/log/vkey" in warning
    assert "pin" in warning
    assert "entry" in unpinned.stdout  # the receipt, checked against the served key
    pinned = served.cdcer("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1")
    assert pinned.exit_code == 0, pinned.stderr
    assert pinned.stderr == ""


# --- 2. --json failures are one JSON object on stdout -------------------------------------------


def test_usage_errors_under_json_are_json(registry_url: str) -> None:
    ours = json_error(cdcer("audit", "verify", "--json"), 2)
    assert ours == {"error": {"message": "give exactly one of --database, --url, --export", "exit_code": 2}}
    no_vkey = json_error(cdcer("audit", "verify", "--url", registry_url, "--json"), 2)
    assert "CDCER_VKEY" in no_vkey["error"]["message"]
    unknown = json_error(cdcer("audit", "verify", "--bogus", "--json"), 2)  # the option parser's own error
    assert "--bogus" in unknown["error"]["message"]
    missing = json_error(cdcer("audit", "proof", "inclusion", "--url", registry_url, "--json", "--vkey", VKEY), 2)
    assert "--index" in missing["error"]["message"]
    bad_value = json_error(cdcer("audit", "verify", "--workers", "zero", "--json"), 2)
    assert "--workers" in bad_value["error"]["message"]
    # without --json, no JSON: the stdout stays empty
    assert cdcer("audit", "verify").stdout == ""
    assert cdcer("audit", "verify", "--bogus").stdout == ""


def test_an_operational_error_under_json_is_json() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    document = json_error(cdcer("audit", "verify", "--url", dead, "--vkey", VKEY, "--json"), 3)
    assert "cannot reach" in document["error"]["message"]


def test_an_integrity_failure_under_json_is_the_report_with_its_error(told: Story, database_url: str) -> None:
    engine = told.ledger.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER log_entries_no_update"))
        else:
            conn.execute(text("ALTER TABLE log_entries DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE log_entries SET leaf_hash = chain_hash WHERE idx = 5"))
    result = cdcer("audit", "verify", "-d", database_url, "--vkey", VKEY, "--json")
    report = json_error(result, 1)
    assert report["verified"] is False
    assert report["first_bad_index"] == 5
    assert report["error"]["message"].startswith("NOT verified: ")
    assert result.stderr.startswith("error: NOT verified: ")


def test_a_refused_write_under_json_carries_the_problem(served: Served, served_story: StoryIds) -> None:
    result = served.cdcer("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1000000", "--json")
    document = json_error(result, 2)
    problem = document["error"]["problem"]
    assert problem["status"] == 409
    assert problem["type"].endswith("insufficient_units") or "insufficient" in problem["type"]
    assert "1000000 requested" in problem["detail"]
    assert result.stderr.startswith("error: refused: ")


def test_the_json_mode_ends_with_its_command(registry_url: str) -> None:
    json_error(cdcer("audit", "verify", "--json"), 2)
    assert json_mode() is False
    assert cdcer("audit", "verify").stdout == ""  # the next command, without --json, prints no JSON


# --- 3. an auditor chains runs with --since and --save ------------------------------------------


def test_audit_verify_saves_the_checkpoint_it_verified_and_the_next_run_starts_from_it(
    told: Story, database_url: str, tmp_path: Path
) -> None:
    saved = tmp_path / "registry.checkpoint"
    audit = ("audit", "verify", "--vkey", VKEY)
    with serve(database_url, key_file(tmp_path)) as url:
        # a first, full audit saves its checkpoint
        first = cdcer(*audit, "--url", url, "--save", str(saved), "--json")
        assert first.exit_code == 0, first.stderr
        assert json.loads(first.stdout)["saved"] == str(saved)
        size_0 = told.ledger.size()
        assert parse_note(saved.read_bytes()).text.splitlines()[1] == str(size_0)

        for grown in (1, 2):  # the log grows; each run verifies only what is new and saves where it got to
            for _ in range(grown):
                told.world.transfer("owner", "organiser", 1)
            told.sync()
            before = told.ledger.size() - grown
            run = cdcer(*audit, "--url", url, "--since", str(saved), "--save", str(saved), "--json")
            assert run.exit_code == 0, run.stderr
            report = json.loads(run.stdout)
            assert report["since"]["old_size"] == before
            assert report["since"]["new_entries"] == grown
            assert report["entries"] == grown
            assert report["saved"] == str(saved)
            assert parse_note(saved.read_bytes()).text.splitlines()[1] == str(told.ledger.size())

        # nothing new: the chain holds, and a person is told where the checkpoint went
        again = cdcer(*audit, "--url", url, "--since", str(saved), "--save", str(saved))
        assert again.exit_code == 0, again.stderr
        assert "verified: 0 new entries" in again.stdout
        assert f"saved the checkpoint of {told.ledger.size()} entries to {saved}" in again.stderr


def test_save_needs_url(told: Story, database_url: str, tmp_path: Path) -> None:
    result = cdcer("audit", "verify", "-d", database_url, "--save", str(tmp_path / "x"))
    assert "--save needs --url" in error_line(result, 2)


def test_a_failed_audit_saves_nothing(told: Story, database_url: str, tmp_path: Path) -> None:
    saved = tmp_path / "registry.checkpoint"
    engine = told.ledger.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER log_entries_no_update"))
        else:
            conn.execute(text("ALTER TABLE log_entries DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE log_entries SET leaf_hash = chain_hash WHERE idx = 3"))
    with serve(database_url, key_file(tmp_path)) as url:
        result = cdcer("audit", "verify", "--url", url, "--vkey", VKEY, "--save", str(saved))
    assert result.exit_code == 1
    assert not saved.exists()


# --- 4. progress: a bar on a terminal, nothing otherwise -----------------------------------------


def test_no_progress_on_stderr_when_it_is_not_a_terminal(told: Story, database_url: str, registry_url: str) -> None:
    for source in (["-d", database_url], ["--url", registry_url]):
        result = cdcer("audit", "verify", *source, "--vkey", VKEY)
        assert result.exit_code == 0, result.stderr
        assert result.stderr == ""


def test_the_progress_callback_counts_against_the_total() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=True, color_system=None, width=100)
    with audit_cli.audit_progress(5000, enabled=True, console=console) as progress:
        assert progress is not None
        task = progress.bar.tasks[0]
        assert (task.total, task.completed) == (5000, 0)
        progress(2048)
        assert (task.total, task.completed) == (5000, 2048)
        progress.bar.refresh()
        assert "2048/5000 entries" in buffer.getvalue()
        progress(5000)
        assert task.finished
    with audit_cli.audit_progress(5000, enabled=False) as nothing:
        assert nothing is None


def test_the_audit_reports_progress_against_the_logs_size(
    told: Story, database_url: str, registry_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    totals: list[tuple[int | None, list[int]]] = []

    class Recorder:
        def __init__(self, total: int | None) -> None:
            self.seen: list[int] = []
            totals.append((total, self.seen))

        def __call__(self, done: int) -> None:
            self.seen.append(done)

    @contextmanager
    def recording(total: int | None, *, enabled: bool, console: Console | None = None) -> Iterator[Recorder | None]:
        yield Recorder(total) if enabled else None

    monkeypatch.setattr(audit_cli, "audit_progress", recording)
    monkeypatch.setattr(audit_cli, "_stderr_is_terminal", lambda: True)
    size = told.ledger.size()
    for source in (["-d", database_url], ["--url", registry_url]):
        assert cdcer("audit", "verify", *source, "--vkey", VKEY).exit_code == 0
    assert totals == [(size, [size]), (size, [size])]
    # even on a terminal, --json shows no progress
    totals.clear()
    assert cdcer("audit", "verify", "-d", database_url, "--vkey", VKEY, "--json").exit_code == 0
    assert totals == []


# --- 5. cdcer serve and make run -------------------------------------------------------------------

_SERVE_ENV = ("CDCER_DATABASE_URL", "CDCER_LOG_KEY_FILE", "CDCER_REQUEST_TIMEOUT", "CDCER_PUBLIC_BASE_URL")


@pytest.fixture
def serve_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cdcer serve` hands its settings to its workers in os.environ: undo that after the test.

    Setting each variable first makes monkeypatch remember it (absent, or as it was), so that what serve
    writes there is undone too; a bare delenv of an absent variable would record nothing."""
    for name in (*_SERVE_ENV, "CDCER_APPEND_PROCESS"):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)


def test_serve_reports_a_port_already_taken_in_one_line(
    told: Story, database_url: str, tmp_path: Path, serve_env: None
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cdcer("serve", "-d", database_url, "--log-key-file", str(key_file(tmp_path)), "--port", str(port))
    line = error_line(result, 3)
    assert f"port {port} on 127.0.0.1 is already taken" in line
    assert "serving" not in result.stderr + result.stdout


def test_serve_prints_the_verifier_key_at_each_start(
    told: Story, database_url: str, tmp_path: Path, serve_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    runs: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: runs.append(options))
    log_key = str(key_file(tmp_path))
    for _ in range(2):
        result = cdcer("serve", "-d", database_url, "--log-key-file", log_key, "--port", str(free_port()))
        assert result.exit_code == 0, result.stderr
        lines = result.stderr.splitlines()
        (vkey_line,) = [line for line in lines if line.startswith("verifier key")]
        assert vkey_line.endswith(f": {VKEY}")
        assert "--vkey" in vkey_line
        assert "CDCER_VKEY" in vkey_line
        assert lines.index(vkey_line) < next(i for i, line in enumerate(lines) if line.startswith("serving"))
    assert len(runs) == 2


def _make_dry_run(target: str, tmp_path: Path) -> str:
    venv = tmp_path / "venv"
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout


def test_make_run_installs_the_runtime_dependencies_only(tmp_path: Path) -> None:
    run = _make_dry_run("run", tmp_path)
    assert 'pip install --quiet -e ".[postgres]"' in run
    assert "--group dev" not in run
    assert "cdcer serve" in run
    assert "--group dev" in _make_dry_run("install", tmp_path)  # `make test` still installs the dev tools


# --- 6. counts, hashes and widths --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "noun", "shown"),
    [
        (0, "entry", "0 entries"),
        (1, "entry", "1 entry"),
        (2, "entry", "2 entries"),
        (1, "unit", "1 unit"),
        (1200, "unit", "1,200 units"),
        (1, "block", "1 block"),
        (3, "proof hash", "3 proof hashes"),
        (1, "key", "1 key"),
        (2, "key", "2 keys"),
    ],
)
def test_plural(count: int, noun: str, shown: str) -> None:
    assert plural(count, noun) == shown


def test_counts_of_one_are_singular(served: Served, served_story: StoryIds, tmp_path: Path) -> None:
    retire = ("retire", "--quantity", "1", "--beneficiary", "a cup of tea", "--purpose", "voluntary", "--reason", "1")
    receipt = served.write("forum-org", *retire)
    retirement = receipt["outcome"]["retirement_id"]
    certificate = tmp_path / "one.json"
    certificate.write_bytes(httpx.get(f"{served.url}/v1/retirements/{retirement}/certificate").content)
    shown = served.cdcer(None, "certificate", "verify", str(certificate))
    assert shown.exit_code == 0, shown.stderr
    assert any(line.split() == ["quantity", "1", "unit"] for line in shown.stdout.splitlines()), shown.stdout
    proof = served.cdcer(None, "audit", "proof", "consistency", "--url", served.url, "--old", "1")
    assert proof.exit_code == 0, proof.stderr
    assert proof.stdout.startswith("verified: the tree of 1 entry is a prefix")


def test_root_hashes_are_base64_everywhere_as_in_the_api(told: Story, registry_url: str, tmp_path: Path) -> None:
    note = httpx.get(f"{registry_url}/v1/log/checkpoint").text
    root = note.splitlines()[2]  # C2SP: origin, size, base64 root
    certificate = write_certificate(told, "retirement", "RT000001", tmp_path / "RT000001.json")
    checked = cdcer("certificate", "verify", str(certificate), "--vkey", VKEY, "--json")
    checkpoint = cdcer("audit", "checkpoint", "--url", registry_url, "--vkey", VKEY, "--json")
    full = cdcer("audit", "verify", "--url", registry_url, "--vkey", VKEY, "--json")
    assert json.loads(checked.stdout)["root_hash"] == root
    assert json.loads(checkpoint.stdout)["root_hash"] == root
    assert json.loads(full.stdout)["root_hash"] == root
    person = cdcer("certificate", "verify", str(certificate), "--vkey", VKEY)
    assert f"root {root}" in person.stdout
    assert "base64" in cdcer("--help").stdout


def test_tables_fit_80_columns_and_wrap_long_ids_instead_of_cutting_them(
    served: Served, served_story: StoryIds, tmp_path: Path
) -> None:
    narrow = {"COLUMNS": "80"}
    commands: list[tuple[str | None, tuple[str, ...]]] = [
        ("forum-org", ("holdings",)),
        ("sunpower-pidu", ("history",)),
        (None, ("project", "show", served_story.project)),
        (None, ("event", "show", served_story.event)),
        (None, ("serial", f"CDCER-{served_story.batch}-000001")),
        ("sunpower-pidu", ("transfer", "--to", "forum-org", "--quantity", "1", "--memo", "x" * 150)),
    ]
    certificate = tmp_path / "CN.json"
    certificate.write_bytes(httpx.get(f"{served.url}/v1/claims/{served_story.claim}/certificate").content)
    for who, args in commands:
        result = served.cdcer(who, *args, env=narrow)
        assert result.exit_code == 0, (args, result.stderr)
        _fits(result.stdout, args)
    result = served.cdcer(None, "certificate", "verify", str(certificate), env=narrow)
    assert result.exit_code == 0, result.stderr
    table_part = result.stdout.split("What the signed entries prove:")[0]
    _fits(table_part, ("certificate", "verify"))
    # the serial blocks, cut over lines, are all there
    serials = "".join(line.strip(" │") for line in result.stdout.splitlines())
    for block in json.loads(served.cdcer(None, "certificate", "verify", str(certificate), "--json").stdout)[
        "statement"
    ]["blocks"]:
        assert block in serials.replace(" ", ""), block


def _fits(out: str, what: tuple[str, ...]) -> None:
    assert out.strip(), what
    assert "…" not in out, (what, out)  # nothing cut short
    too_wide = [line for line in out.splitlines() if len(line) > 80]
    assert not too_wide, (what, too_wide)


def test_the_console_width_is_the_terminals_or_columns_and_whole_lines_when_piped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cli.console import stdout

    assert stdout().width == 1000  # piped: long values stay on one line
    monkeypatch.setenv("COLUMNS", "80")
    assert stdout().width == 80
