"""`cdcer demo` after `cdcer init`, through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.keys import read_key_file

ENVIRONMENT = (
    "CDCER_DATABASE_URL",
    "CDCER_LOG_KEY_FILE",
    "CDCER_LOG_KEY_PASSPHRASE",
    "CDCER_AUTHORITY_KEY_PASSPHRASE",
)


@pytest.fixture(autouse=True)
def _in_a_fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test runs in its own folder (the commands' defaults are data/ there), with no CDCER_ settings."""
    monkeypatch.chdir(tmp_path)
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def init(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    code, out, err = invoke("init", *args, "--json", env=env)
    assert code == 0, err
    result: dict[str, str] = json.loads(out)
    return result


def test_init_then_demo_gives_a_registry_that_verifies(database_url: str) -> None:
    registry = init("-d", database_url, "--plain-keys")
    code, out, err = invoke("demo", "-d", database_url, "--json")
    assert code == 0, err
    assert "Traceback" not in err
    summary = json.loads(out)
    assert summary["database"] == database_url
    assert summary["origin"] == registry["origin"]
    assert summary["log_size"] == summary["entries"] + 1
    assert sum(summary["kinds"].values()) == summary["entries"]
    assert {"issuance.issue", "units.transfer", "units.retire", "claim.issue"} <= set(summary["kinds"])
    assert summary["keys_folder"] == "data/demo-keys"
    for participant in summary["participants"]:
        key = read_key_file(Path(participant["key_file"]), passphrase=None)
        assert key.key_id == participant["key_id"]
    code, out, err = invoke("audit", "verify", "-d", database_url, "--vkey", registry["vkey"], "--json")
    assert code == 0, err
    assert json.loads(out)["entries"] == summary["log_size"]


def test_a_registry_founded_days_ago_gets_the_points_story(database_url: str) -> None:
    # As `make run` makes it: the points rules come out with the log, so the days since are attested.
    registry = init("-d", database_url, "--plain-keys", "--founded-days-ago", "30")
    code, out, err = invoke("demo", "-d", database_url, "--citizens", "200", "--json")
    assert code == 0, err
    kinds = json.loads(out)["kinds"]
    assert kinds["points.attest"] >= 7
    assert kinds["points.account_open"] == 200
    assert {"points.redeem", "redemption.fulfil", "scene.decide", "offer.publish"} <= set(kinds)
    code, out, err = invoke("audit", "verify", "-d", database_url, "--vkey", registry["vkey"], "--json")
    assert code == 0, err
    assert json.loads(out)["points_not_replayed"] == 0


def test_the_defaults_and_the_human_summary() -> None:
    init("--plain-keys")
    code, out, err = invoke("demo", "--entries", "400", "--seed", "3")
    assert code == 0, err
    assert out.startswith("demo appended ")
    assert "to cdcer.localhost/registry in sqlite:///data/registry.db" in out
    assert "units.transfer" in out
    assert "chengdu-bike-share" in out  # the points path's participants come first
    assert "pidu-solar" in out
    assert "data/demo-keys" in out
    assert err == ""  # no progress bar without a terminal
    assert Path("data/demo-keys/pidu-solar.key").is_file()


def test_a_filled_registry_is_refused_unless_asked_to_append() -> None:
    init("--plain-keys")
    code, out, err = invoke("demo", "--json")
    assert code == 0, err
    size = json.loads(out)["log_size"]
    code, out, err = invoke("demo", "--json")
    assert code == 2
    assert json.loads(out)["error"] == {"message": err.removeprefix("error: ").rstrip("\n"), "exit_code": 2}
    assert err.startswith(f"error: sqlite:///data/registry.db already holds {size:,} entries")
    assert "--force-append" in err
    assert err.count("\n") == 1
    code, out, err = invoke("demo", "--force-append", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["log_size"] == size + summary["entries"]
    assert all(p["id"].endswith("-2") for p in summary["participants"])


@pytest.mark.parametrize("missing", ["registry-log.key", "authority.key"])
def test_a_missing_key_file_is_one_line(missing: str) -> None:
    init("--plain-keys")
    Path("data", missing).unlink()
    code, out, err = invoke("demo")
    assert code == 2
    assert out == ""
    assert err == f"error: key file data/{missing} not found\n"


def test_encrypted_keys_are_read_with_the_passphrases_from_the_environment() -> None:
    env = {"CDCER_LOG_KEY_PASSPHRASE": "log secret", "CDCER_AUTHORITY_KEY_PASSPHRASE": "authority secret"}
    init(env=env)
    code, _, err = invoke("demo", env={**env, "CDCER_AUTHORITY_KEY_PASSPHRASE": "wrong"})
    assert code == 2
    assert err.startswith("error: wrong passphrase or corrupted key file data/authority.key")
    assert err.count("\n") == 1
    code, _, err = invoke("demo", env={"CDCER_LOG_KEY_PASSPHRASE": "log secret"})
    assert code == 2
    assert "data/authority.key is encrypted" in err
    assert "CDCER_AUTHORITY_KEY_PASSPHRASE" in err
    code, out, err = invoke("demo", "--json", env=env)
    assert code == 0, err
    assert json.loads(out)["entries"] >= 140


def test_another_registry_s_log_key_is_refused(tmp_path: Path) -> None:
    init("--plain-keys")
    init("-d", f"sqlite:///{tmp_path}/other.db", "--data-dir", "other", "--plain-keys")
    code, out, err = invoke("demo", "--log-key-file", "other/registry-log.key")
    assert code == 2
    assert (
        err
        == "error: other/registry-log.key is not the log signing key of the registry in sqlite:///data/registry.db\n"
    )


def test_no_database_is_an_operational_error() -> None:
    init("--plain-keys")
    code, _, err = invoke("demo", "-d", "sqlite:///nowhere/registry.db")
    assert code == 3
    assert err == "error: no ledger database at nowhere/registry.db\n"


def test_the_authority_key_must_be_the_registry_s(tmp_path: Path) -> None:
    init("--plain-keys")
    init("-d", f"sqlite:///{tmp_path}/other.db", "--data-dir", "other", "--plain-keys")
    code, _, err = invoke("demo", "--authority-key-file", "other/authority.key")
    assert code == 2
    assert err.startswith("error: key ")
    assert err.endswith(" is not a valid key of this registry\n")
    assert not Path("data/demo-keys").exists()
