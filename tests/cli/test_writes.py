"""`cdcer` writes against a real registry (`cdcer serve` on a loopback port), signed from key files.

The story of the registry API issue (issue 4) runs entirely with `cdcer` commands: the authority registers a
verifier, a project owner and an organiser and publishes a methodology; the project is submitted, validated
and registered; its report verified and issued; 300 units transferred; the forum registered, its final
footprint declared, 10 units retired for it and the claim issued. Then each way a write can go wrong is one
line on stderr and the right exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli.main import app
from ledger.keys import write_key_file
from ledger.ledger import Ledger, found_registry
from ledger.note import NoteSigner
from ledger.storage import schema
from ledger.storage.engine import make_engine
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, log_signer
from tests.ledger.scenario import ORIGIN, SHA, seeded_key
from tests.registry.live import free_port, serve

PASSPHRASE = "correct horse battery staple"
VKEY = log_signer().verifier_key()
PARTICIPANTS = ("authority", "tianfu-verify", "sunpower-pidu", "forum-org")


@dataclass(frozen=True)
class Served:
    """A served, founded registry and the participants' (encrypted) key files."""

    url: str
    keys: Path

    def key(self, who: str) -> Path:
        return self.keys / f"{who}.key"

    def cdcer(self, who: str | None, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        """Run ``cdcer ARGS`` as `who` (with its key file) against this registry, its verifier key pinned."""
        environment = {
            "CDCER_REGISTRY_URL": self.url,
            "CDCER_KEY_PASSPHRASE": PASSPHRASE,
            "CDCER_VKEY": VKEY,
            **(env or {}),
        }
        identity = [] if who is None else ["--as", who, "--key", str(self.key(who))]
        return CliRunner().invoke(app, [*args, *identity], env=environment)

    def write(self, who: str, *args: str) -> dict[str, Any]:
        """A write that must succeed: its JSON receipt."""
        result = self.cdcer(who, *args, "--json")
        assert result.exit_code == 0, result.stderr + result.stdout
        receipt: dict[str, Any] = json.loads(result.stdout)
        return receipt


def serve_registry(databases: Databases, directory: Path) -> Iterator[Served]:
    """Found a registry in a new database, write every participant's key file, and serve it."""
    url = databases.create(directory=directory)
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        found_registry(
            Ledger(engine, log_signer()),
            authority_id=AUTHORITY,
            authority_name=AUTHORITY_NAME,
            authority_key=seeded_key(AUTHORITY),
        )
    finally:
        engine.dispose()
    log_key = directory / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    for who in PARTICIPANTS:
        write_key_file(directory / f"{who}.key", seeded_key(who), passphrase=PASSPHRASE, label=who)
    try:
        with serve(url, log_key) as base:
            yield Served(base, directory)
    finally:
        databases.drop(url)


@dataclass(frozen=True)
class StoryIds:
    project: str
    report: str
    batch: str
    event: str
    claim: str
    retirement: dict[str, Any]


def run_story(served: Served) -> StoryIds:
    """Issue 4's story, every step a `cdcer` command."""
    for who, name, role in (
        ("tianfu-verify", "Tianfu Verification Centre", "verifier"),
        ("sunpower-pidu", "Sunpower Pidu", "project_owner"),
        ("forum-org", "Tianfu Green Forum Secretariat", "event_organiser"),
    ):
        # The public key given as the participant's key file (its clear header holds it).
        served.write(
            "authority", "participant", "register", who, "--name", name, "--role", role,
            "--public-key", str(served.key(who)),
        )  # fmt: skip
    served.write(
        "authority", "methodology", "publish", "CDCER-PV", "1.0", "--title", "Distributed photovoltaic power",
        "--sector", "energy", "--document-sha256", SHA,
    )  # fmt: skip
    project = served.write(
        "sunpower-pidu", "project", "submit", "--methodology", "CDCER-PV", "--methodology-version", "1.0",
        "--title", "Pidu rooftop distributed PV", "--district", "Pidu", "--description", "2 MW rooftop PV",
        "--crediting-start", "2022-01-01", "--crediting-end", "2031-12-31", "--estimated-annual-reductions", "1500",
    )["outcome"]["project_id"]  # fmt: skip
    served.write(
        "tianfu-verify", "project", "validate", project, "--opinion", "positive", "--opinion-sha256", SHA,
        "--statement", "conforms",
    )  # fmt: skip
    served.write("authority", "project", "decide", project, "--decision", "register", "--reason", "validated")
    report = served.write(
        "sunpower-pidu", "report", "submit", project, "--period-start", "2023-01-01", "--period-end", "2023-12-31",
        "--claimed", "1200", "--verifier", "tianfu-verify",
    )["outcome"]["report_id"]  # fmt: skip
    served.write(
        "tianfu-verify", "report", "verify", report, "--verified", "1150", "--opinion-sha256", SHA,
        "--statement", "verified",
    )  # fmt: skip
    issued = served.write("authority", "issue", report)["outcome"]
    assert issued["quantity"] == 1150
    served.write("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "300")
    start = datetime.now(UTC).date() - timedelta(days=20)
    event = served.write(
        "forum-org", "event", "register", "--name", "Tianfu Green Low-Carbon Forum", "--kind", "forum",
        "--venue", "Chengdu Century City", "--start-date", start.isoformat(),
        "--end-date", (start + timedelta(days=1)).isoformat(), "--expected-attendees", "800",
    )["outcome"]["event_id"]  # fmt: skip
    served.write(
        "forum-org", "event", "footprint", event, "--stage", "final", "--source", "venue_energy=4200",
        "--source", "attendee_transport=3600", "--source", "accommodation=1200", "--source", "catering=600",
    )  # fmt: skip
    retirement = served.write(
        "forum-org", "retire", "--quantity", "10", "--beneficiary", "Tianfu Green Low-Carbon Forum",
        "--purpose", "event", "--event", event, "--reason", "carbon-neutral forum",
    )["outcome"]  # fmt: skip
    claim = served.write("forum-org", "claim", "issue", event)["outcome"]["claim_id"]
    return StoryIds(project, report, issued["batch_id"], event, claim, retirement)


@pytest.fixture(scope="module")
def served(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_registry(databases, tmp_path_factory.mktemp("cli-writes"))


@pytest.fixture(scope="module")
def story(served: Served) -> StoryIds:
    return run_story(served)


def test_the_whole_story_with_cdcer_commands(served: Served, story: StoryIds) -> None:
    assert (story.project, story.report, story.event) == ("P0001", "MR0001", "E0001")
    assert story.retirement["quantity"] == 10
    # The registry's public pages agree with what the commands did.
    shown = json.loads(served.cdcer(None, "event", "show", story.event, "--json").stdout)
    assert shown["event"]["claim_id"] == story.claim
    assert (shown["claim"]["footprint_kg"], shown["claim"]["units"]) == (9600, 10)


def test_a_receipt_prints_as_a_table_by_default(served: Served, story: StoryIds) -> None:
    result = served.cdcer("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1", "--memo", "table")
    assert result.exit_code == 0, result.stderr
    assert "entry" in result.stdout
    assert "tree size" in result.stdout
    assert "units.transfer" in result.stdout


def test_a_receipt_that_does_not_verify_under_the_pinned_vkey_exits_1(served: Served, story: StoryIds) -> None:
    other = NoteSigner(ORIGIN, seeded_key("not-the-log").seed).verifier_key()
    result = served.cdcer("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1", "--vkey", other)
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: the registry's receipt does not verify")


def _one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.stderr + result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in result.stderr


def test_a_refused_transaction_is_a_usage_error_with_the_registrys_reason(served: Served, story: StoryIds) -> None:
    result = served.cdcer("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1000000")
    _one_line_error(result, 2, "refused: ", "1000000 requested", "(409 insufficient_units)")


def test_an_unreachable_registry_is_operational(served: Served) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    result = served.cdcer("sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1", "--registry", dead)
    _one_line_error(result, 3, "cannot reach the registry", dead)


def test_a_missing_key_file_is_a_usage_error(served: Served, tmp_path: Path) -> None:
    missing = tmp_path / "nobody.key"
    result = CliRunner().invoke(
        app,
        ["transfer", "--to", "forum-org", "--quantity", "1", "--as", "sunpower-pidu", "--key", str(missing)],
        env={"CDCER_REGISTRY_URL": served.url, "CDCER_KEY_PASSPHRASE": PASSPHRASE},
    )
    _one_line_error(result, 2, "not found", str(missing))


def test_a_wrong_passphrase_is_a_usage_error(served: Served) -> None:
    result = served.cdcer(
        "sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1", env={"CDCER_KEY_PASSPHRASE": "wrong"}
    )
    _one_line_error(result, 2, "wrong passphrase")


def test_no_passphrase_for_an_encrypted_key_file_says_which_variable(served: Served) -> None:
    result = served.cdcer(
        "sunpower-pidu", "transfer", "--to", "forum-org", "--quantity", "1", env={"CDCER_KEY_PASSPHRASE": ""}
    )
    _one_line_error(result, 2, "CDCER_KEY_PASSPHRASE")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["participant", "register", "Not An Id", "--name", "x", "--role", "verifier", "--public-key", "A" * 43 + "="],
         "--participant-id"),
        (["transfer", "--to", "forum-org", "--quantity", "0"], "--quantity"),
        (["transfer", "--to", "forum-org"], "exactly one of --quantity"),
        (["retire", "--quantity", "1", "--beneficiary", "x", "--purpose", "event", "--reason", "r"], "event_id"),
        (["event", "footprint", "E0001", "--stage", "final", "--source", "lasers=5"], "--source 'lasers=5'"),
        (["event", "footprint", "E0001", "--stage", "final", "--source", "catering=-5"], "--source: "),
        (["retire", "--quantity", "1", "--beneficiary", "x", "--purpose", "voluntary", "--reason", ""], "--reason: "),
        (["project", "submit", "--methodology", "pv", "--methodology-version", "1.0", "--title", "t",
          "--district", "d", "--crediting-start", "2022-01-01", "--crediting-end", "2031-12-31",
          "--estimated-annual-reductions", "5"], "--methodology: "),
        (["methodology", "publish", "CDCER-PV", "1.0", "--title", "t", "--sector", "s"], "--document-sha256"),
    ],
)  # fmt: skip
def test_a_bad_value_is_refused_locally_naming_the_option(args: list[str], fragment: str, tmp_path: Path) -> None:
    # Nothing is read or sent: the registry URL is unreachable and the key file does not exist.
    result = CliRunner().invoke(
        app,
        [*args, "--as", "authority", "--key", str(tmp_path / "absent.key")],
        env={"CDCER_REGISTRY_URL": f"http://127.0.0.1:{free_port()}"},
    )
    _one_line_error(result, 2, fragment)


def test_no_actor_is_a_usage_error(served: Served) -> None:
    result = CliRunner().invoke(
        app,
        ["transfer", "--to", "forum-org", "--quantity", "1", "--key", str(served.key("sunpower-pidu"))],
        env={"CDCER_REGISTRY_URL": served.url, "CDCER_KEY_PASSPHRASE": PASSPHRASE, "CDCER_ACTOR": ""},
    )
    _one_line_error(result, 2, "--as")


def test_the_authoritys_other_writes(served: Served, story: StoryIds, tmp_path: Path) -> None:
    spare = tmp_path / "spare.key"
    write_key_file(spare, seeded_key("spare"), passphrase=None)
    newer = seeded_key("newer")
    done = [
        served.write("authority", "participant", "set-roles", "forum-org", "--role", "event_organiser",
                     "--role", "account_holder"),
        served.write("authority", "key", "add", "forum-org", "--public-key", str(spare)),
        served.write("authority", "key", "rotate", "forum-org", "--old-key-id", seeded_key("spare").key_id,
                     "--new-public-key", newer.public_key.b64(), "--reason", "rotation"),
        served.write("authority", "key", "revoke", "forum-org", "--key-id", newer.key_id, "--reason", "lost"),
        served.write("authority", "freeze", "account", "forum-org", "--reason", "inquiry"),
        served.write("authority", "unfreeze", "account", "forum-org", "--reason", "cleared"),
        served.write("authority", "cancel", "--holder", "sunpower-pidu", "--quantity", "1",
                     "--reason-code", "correction", "--reason", "double counted"),
        served.write("authority", "project", "suspend", story.project, "--reason", "audit"),
        served.write("authority", "project", "reinstate", story.project, "--reason", "audit passed"),
        served.write("authority", "participant", "suspend", "tianfu-verify", "--reason", "audit"),
        served.write("authority", "participant", "reinstate", "tianfu-verify", "--reason", "audit passed"),
    ]  # fmt: skip
    assert [receipt["outcome"]["kind"] for receipt in done] == [
        "participant.set_roles",
        "key.add",
        "key.rotate",
        "key.revoke",
        "freeze.set",
        "freeze.lift",
        "units.cancel",
        "project.suspend",
        "project.reinstate",
        "participant.suspend",
        "participant.reinstate",
    ]
    indexes = [receipt["index"] for receipt in done]
    assert indexes == sorted(indexes)
