"""Any single changed byte in the database behind a registry makes `cdcer audit verify` exit 1 and name it."""

from __future__ import annotations

import json
import random

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import Story, log_signer
from tests.ledger.test_audit import drop_triggers

COLUMNS = ("data", "leaf_hash", "chain_hash")


@pytest.mark.parametrize("seed", range(12))
def test_one_changed_byte_anywhere_is_found_at_its_entry(story: Story, database_url: str, seed: int) -> None:
    story.full_story()
    rng = random.Random(seed)
    index = rng.randrange(1, story.ledger.size())
    column = rng.choice(COLUMNS)
    engine = story.ledger.engine
    drop_triggers(engine)
    with engine.begin() as conn:
        value = bytearray(
            conn.execute(text(f"SELECT {column} FROM log_entries WHERE idx = :i"), {"i": index}).scalar_one()
        )
        position = rng.randrange(len(value))
        value[position] ^= 1 << rng.randrange(8)
        conn.execute(text(f"UPDATE log_entries SET {column} = :v WHERE idx = :i"), {"v": bytes(value), "i": index})
    vkey = log_signer().verifier_key()
    result = CliRunner().invoke(app, ["audit", "verify", "-d", database_url, "--vkey", vkey, "--json"])
    assert result.exit_code == 1, (column, index, position, result.stderr)
    report = json.loads(result.stdout)
    assert report["verified"] is False
    assert report["first_bad_index"] == index, (column, position, report["findings"][:3])
    assert report["first_finding"].startswith(f"entry {index}: ")
    human = CliRunner().invoke(app, ["audit", "verify", "-d", database_url, "--vkey", vkey])
    assert human.exit_code == 1
    assert f"entry {index}:" in human.stdout
    assert "Traceback" not in human.stderr
