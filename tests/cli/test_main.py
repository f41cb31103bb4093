"""`cdcer audit verify` against real ledgers, on SQLite and PostgreSQL, through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import Story, log_signer


@pytest.fixture
def told(story: Story) -> Story:
    story.full_story()
    return story


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_a_pristine_ledger_verifies(told: Story, database_url: str) -> None:
    code, out, err = run("audit", "verify", "--database", database_url, "--vkey", log_signer().verifier_key())
    assert code == 0, err
    assert out.startswith(f"verified: {told.ledger.size()} entries")
    assert "Traceback" not in err


def test_json_report(told: Story, database_url: str) -> None:
    code, out, _ = run("audit", "verify", "-d", database_url, "--vkey", log_signer().verifier_key(), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["verified"] is True
    assert report["entries"] == told.ledger.size()
    assert report["first_bad_index"] is None


def test_a_tampered_entry_exits_1_and_names_it(told: Story, database_url: str) -> None:
    engine = told.ledger.engine
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("DROP TRIGGER log_entries_no_update"))
        else:
            conn.execute(text("ALTER TABLE log_entries DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE log_entries SET leaf_hash = chain_hash WHERE idx = 5"))
    code, out, err = run("audit", "verify", "-d", database_url, "--vkey", log_signer().verifier_key(), "--json")
    assert code == 1, err
    report = json.loads(out)
    assert report["verified"] is False
    assert report["first_bad_index"] == 5
    assert report["first_finding"].startswith("entry 5: encoding: stored leaf hash does not match")


def test_a_wrong_vkey_is_a_usage_error(told: Story, database_url: str) -> None:
    code, out, err = run("audit", "verify", "-d", database_url, "--vkey", "not-a-key")
    assert code == 2
    assert out == ""
    assert err.startswith("error: --vkey: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:////nonexistent/registry.db", "error: no ledger database at /nonexistent/registry.db"),
        ("postgresql://postgres@127.0.0.1:1/none", "error: cannot open the database"),
        ("mysql://x@y/z", "error: unsupported database 'mysql'"),
    ],
)
def test_an_unusable_database_is_an_operational_error(url: str, message: str) -> None:
    code, out, err = run("audit", "verify", "-d", url)
    assert code == 3
    assert out == ""
    assert err.startswith(message)
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_a_missing_option_is_a_usage_error() -> None:
    code, _, err = run("audit", "verify")
    assert code == 2
    assert "--database" in err
