"""`cdcer init` and `cdcer serve`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from cli.main import app
from ledger.keys import PrivateKey, read_key_file
from ledger.log import decode_entry
from ledger.note import NoteVerifier
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from ledger.transactions import ParticipantRegister, Role, TransactionSigner


@pytest.fixture(autouse=True)
def _serve_leaves_no_settings_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """`cdcer serve` hands its settings to the server processes in the environment; undo that after each test.

    Setting each variable first makes monkeypatch remember it as absent (or as it was), so a serve run in
    process cannot leak its database or key file into a later test of the same worker.
    """
    for name in (
        "CDCER_DATABASE_URL",
        "CDCER_LOG_KEY_FILE",
        "CDCER_REQUEST_TIMEOUT",
        "CDCER_PUBLIC_BASE_URL",
        "CDCER_APPEND_PROCESS",
    ):
        monkeypatch.setenv(name, os.environ.get(name, ""))
        monkeypatch.delenv(name)


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_init_creates_a_registry_that_verifies(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/registry.db"
    code, out, err = invoke(
        "init",
        "-d",
        db,
        "--data-dir",
        str(tmp_path / "keys"),
        "--origin",
        "test.example/cdcer",
        "--plain-keys",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["origin"] == "test.example/cdcer"
    assert NoteVerifier.from_vkey(result["vkey"]).name == "test.example/cdcer"
    authority = read_key_file(Path(result["authority_key_file"]), passphrase=None)
    assert authority.key_id == result["authority_key_id"]
    code, out, err = invoke("audit", "verify", "-d", db, "--vkey", result["vkey"])
    assert code == 0, err
    assert out.startswith("verified: 1 entry, 1 checkpoint\n")


def test_a_development_registry_may_be_founded_days_ago(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/registry.db"
    args = ["init", "-d", db, "--data-dir", str(tmp_path / "keys"), "--founded-days-ago", "30"]
    code, _, err = invoke(*args)  # only beside plain keys: a real registry is founded now
    assert (code, err) == (2, "error: --founded-days-ago is for development registries: use it with --plain-keys\n")
    assert not (tmp_path / "keys").exists()
    code, out, err = invoke(*args, "--plain-keys", "--json")
    assert code == 0, err
    engine = make_engine(db)
    with read_transaction(engine) as conn:
        (stored,) = store.read_entries(conn, 0, 1)
    engine.dispose()
    founded = decode_entry(stored.data, index=0).accepted_at
    assert timedelta(days=30) <= datetime.now(UTC) - founded < timedelta(days=30, minutes=5)
    code, out, err = invoke("audit", "verify", "-d", db, "--vkey", json.loads(out)["vkey"])
    assert code == 0, err


def test_init_encrypts_keys_with_the_passphrases_from_the_environment(tmp_path: Path) -> None:
    env = {"CDCER_LOG_KEY_PASSPHRASE": "log secret", "CDCER_AUTHORITY_KEY_PASSPHRASE": "authority secret"}
    code, out, err = invoke("init", "-d", f"sqlite:///{tmp_path}/r.db", "--data-dir", str(tmp_path), "--json", env=env)
    assert code == 0, err
    result = json.loads(out)
    assert read_key_file(Path(result["authority_key_file"]), passphrase="authority secret")
    assert read_key_file(Path(result["log_key_file"]), passphrase="log secret")


def test_init_refuses_an_existing_registry(tmp_path: Path) -> None:
    args = ["init", "-d", f"sqlite:///{tmp_path}/r.db", "--data-dir", str(tmp_path / "a"), "--plain-keys"]
    assert invoke(*args)[0] == 0
    code, out, err = invoke(*args)
    assert code == 2
    assert err.startswith("error: ")
    assert "already" in err
    assert err.count("\n") == 1
    other_keys = ["init", "-d", f"sqlite:///{tmp_path}/r.db", "--data-dir", str(tmp_path / "b"), "--plain-keys"]
    code, _, err = invoke(*other_keys)
    assert code == 2
    assert "already holds a registry" in err


def test_init_without_a_passphrase_and_no_terminal_is_a_usage_error(tmp_path: Path) -> None:
    code, _, err = invoke("init", "-d", f"sqlite:///{tmp_path}/r.db", "--data-dir", str(tmp_path))
    assert code == 2
    assert "CDCER_LOG_KEY_PASSPHRASE" in err
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("origin", ["has space", "a+b", ""])
def test_init_refuses_a_bad_origin(tmp_path: Path, origin: str) -> None:
    code, _, err = invoke("init", "-d", f"sqlite:///{tmp_path}/r.db", "--origin", origin, "--plain-keys")
    assert code == 2
    assert "--origin" in err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_answers_over_http(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/registry.db"
    code, out, err = invoke("init", "-d", db, "--data-dir", str(tmp_path / "data"), "--plain-keys", "--json")
    assert code == 0, err
    vkey = json.loads(out)["vkey"]
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cli",
            "serve",
            "-d",
            db,
            "--port",
            str(port),
            "--log-key-file",
            str(tmp_path / "data" / "registry-log.key"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ},
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read().decode() if server.stderr else ""
                assert time.monotonic() < deadline, "cdcer serve did not answer within 30 s"
                time.sleep(0.2)
        assert health.json() == {"status": "ok", "log_size": 1}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/log/vkey").text.strip() == vkey
        # A signed write over real HTTP: the authority registers a participant.
        authority = read_key_file(tmp_path / "data" / "authority.key", passphrase=None)
        signer = TransactionSigner("cdcer.localhost/registry", "authority", authority)
        payload = ParticipantRegister(
            participant_id="sunpower",
            name="Sunpower Pidu",
            roles=(Role.PROJECT_OWNER,),
            public_keys=(PrivateKey.generate().public_key.b64(),),
        )
        tx = signer.sign(payload, at=datetime.now(UTC))
        answer = httpx.post(f"http://127.0.0.1:{port}/v1/transactions", json=tx.to_json(), timeout=10)
        assert answer.status_code == 201, answer.text
        assert answer.json()["index"] == 1
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_serve_refuses_a_missing_database_in_one_line(tmp_path: Path) -> None:
    code, _, err = invoke("serve", "-d", f"sqlite:///{tmp_path}/none.db")
    assert code == 3
    assert err == f"error: no ledger database at {tmp_path}/none.db\n"


def test_serve_refuses_an_unreadable_log_key_in_one_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path}/r.db"
    assert invoke("init", "-d", db, "--data-dir", str(tmp_path / "k"), "--plain-keys")[0] == 0
    code, _, err = invoke("serve", "-d", db, "--log-key-file", str(tmp_path / "missing.key"))
    assert code == 2
    assert err.startswith("error: key file ")
    assert err.count("\n") == 1
