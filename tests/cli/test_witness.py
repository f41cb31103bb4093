"""`cdcer witness` against a real `cdcer serve`: two witnesses cosign as the log grows; a rollback is caught."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from cli.main import app
from ledger.checkpoint import Checkpoint, CosignatureSigner, open_checkpoint, sign_checkpoint, verify_cosignatures
from ledger.keys import write_key_file
from ledger.ledger import Ledger, Receipt
from ledger.note import NoteVerifier
from ledger.storage.engine import make_engine
from ledger.transactions import ParticipantRegister, Role, TransactionSigner, WitnessRegister
from tests.conftest import log_signer, postgres_base_url
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.registry.live import free_port, serve

VKEY = log_signer().verifier_key()
WITNESSES = ("witness.test/w1", "witness.test/w2")


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def authority_signs(payload: Any) -> dict[str, Any]:
    tx = TransactionSigner(ORIGIN, "authority", seeded_key("authority")).sign(payload, at=datetime.now(UTC))
    body: dict[str, Any] = tx.to_json()
    return body


def grow(base: str, first: int, count: int) -> None:
    """Append `count` participant registrations through the served API."""
    with httpx.Client(base_url=base, timeout=30) as http:
        for n in range(first, first + count):
            payload = ParticipantRegister(
                participant_id=f"holder-{n}",
                name=f"Holder {n}",
                roles=(Role.ACCOUNT_HOLDER,),
                public_keys=(seeded_key(f"holder-{n}").public_key.b64(),),
            )
            response = http.post("/v1/transactions", json=authority_signs(payload))
            assert response.status_code == 201, response.text


def cosign(base: str, label: str, tmp_path: Path) -> tuple[int, str, str]:
    return invoke(
        "witness",
        "cosign",
        "--url",
        base,
        "--vkey",
        VKEY,
        "--key",
        str(tmp_path / f"{label}.key"),
        "--name",
        f"witness.test/{label}",
        "--state-dir",
        str(tmp_path / f"state-{label}"),
        "--json",
    )


def snapshot(url: str, tmp_path: Path) -> str:
    """A copy of the stopped registry's database (SQLite: the file; PostgreSQL: a database from it)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = make_engine(url)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the file copied
        engine.dispose()
        assert parsed.database is not None
        copy = tmp_path / "registry-copy.db"
        shutil.copyfile(parsed.database, copy)
        return str(copy)
    name = f"{parsed.database}_copy"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{parsed.database}"')
    return name


def restore(url: str, copy: str) -> None:
    """Put the copy back in place of the registry's database (the registry must be stopped)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        assert parsed.database is not None
        for suffix in ("-wal", "-shm"):
            Path(parsed.database + suffix).unlink(missing_ok=True)
        shutil.copyfile(copy, parsed.database)
        return
    _admin(f'DROP DATABASE "{parsed.database}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{parsed.database}" TEMPLATE "{copy}"')
    _admin(f'DROP DATABASE "{copy}"')


def _admin(statement: str) -> None:
    admin = create_engine(postgres_base_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture
def witnessed(ledger: Ledger, tmp_path: Path) -> Ledger:
    """The founded ledger with witnesses w1 and w2 registered by the authority; their key files written."""
    register_witnesses(ledger, tmp_path)
    return ledger


def register_witnesses(ledger: Ledger, tmp_path: Path) -> None:
    """Register witnesses w1 and w2 in `ledger` (by the authority) and write their key files in `tmp_path`."""
    for label in ("w1", "w2"):
        key = seeded_key(f"witness-{label}")
        write_key_file(tmp_path / f"{label}.key", key, passphrase=None)
        code, out, err = invoke(
            "witness", "vkey", "--key", str(tmp_path / f"{label}.key"), "--name", f"witness.test/{label}"
        )
        assert code == 0, err
        assert out.strip() == CosignatureSigner(f"witness.test/{label}", key.seed).verifier_key()
        tx = TransactionSigner(ORIGIN, "authority", seeded_key("authority")).sign(
            WitnessRegister(vkey=out.strip()), at=datetime.now(UTC)
        )
        (receipt,) = ledger.submit([tx])
        assert isinstance(receipt, Receipt)


def served_cosigners(base: str) -> dict[str, int]:
    """The witnesses whose cosignatures the served checkpoint carries, and its size."""
    note = httpx.get(f"{base}/v1/log/checkpoint", timeout=30).content
    signed = open_checkpoint(note, NoteVerifier.from_vkey(VKEY), origin=ORIGIN)
    verifiers = [CosignatureSigner(name, seeded_key(f"witness-{name[-2:]}").seed).verifier() for name in WITNESSES]
    return {c.name: signed.checkpoint.size for c in verify_cosignatures(signed, verifiers)}


def fork_of(base: str, tmp_path: Path, size: int) -> tuple[int, str]:
    """w2 remembers a registry-signed checkpoint of `size` with another root: the witness must cry fork."""
    state = tmp_path / "state-w2" / "registry.test%2Fcdcer.checkpoint"
    state.write_bytes(sign_checkpoint(Checkpoint(ORIGIN, size, bytes(32)), log_signer()))
    code, _, err = cosign(base, "w2", tmp_path)
    assert state.read_bytes() == sign_checkpoint(Checkpoint(ORIGIN, size, bytes(32)), log_signer())
    return code, err


def test_two_witnesses_cosign_as_the_log_grows_and_catch_a_rollback(witnessed: Ledger, tmp_path: Path) -> None:
    log_key = tmp_path / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    url = witnessed.engine.url.render_as_string(hide_password=False)
    witnessed.engine.dispose()  # the served registry is the only user of the database from here on
    sizes: list[int] = []
    with serve(url, log_key) as base:
        for round_number in range(3):
            grow(base, 10 * round_number, 2 + round_number)
            for label in ("w1", "w2"):
                code, out, err = cosign(base, label, tmp_path)
                assert code == 0, err
                result = json.loads(out)
                assert result["cosigned"] == "accepted"
                assert result["witness"] == f"witness.test/{label}"
                assert result["previous_size"] == (sizes[-1] if sizes else None)
            sizes.append(result["size"])
            assert served_cosigners(base) == dict.fromkeys(WITNESSES, result["size"])
        # Nothing new: the witness checks again and finds its cosignature already there.
        code, out, err = cosign(base, "w1", tmp_path)
        assert code == 0, err
        again = json.loads(out)
        assert (again["size"], again["previous_size"], again["cosigned"]) == (sizes[-1], sizes[-1], "already")
    assert sizes == sorted(set(sizes))

    copy = snapshot(url, tmp_path)
    with serve(url, log_key) as base:
        grow(base, 100, 3)
        code, out, err = cosign(base, "w1", tmp_path)
        assert code == 0, err
        cosigned_size = json.loads(out)["size"]
        assert cosigned_size == sizes[-1] + 3
    saved = (tmp_path / "state-w1" / "registry.test%2Fcdcer.checkpoint").read_bytes()

    restore(url, copy)  # the operator puts back an earlier copy of the database
    with serve(url, log_key) as base:
        code, out, err = cosign(base, "w1", tmp_path)
        forks = [fork_of(base, tmp_path, size) for size in (sizes[-1], sizes[0])]
    assert code == 1
    assert err.count("\n") == 1
    assert err.startswith("error: rollback: the registry now shows")
    assert f"{sizes[-1]} entries after {cosigned_size} were seen" in err
    (evidence,) = (tmp_path / "state-w1").glob("evidence-*")
    verdict = json.loads(out)
    assert verdict.pop("error")["exit_code"] == 1
    assert verdict == {"verdict": "rollback", "evidence": str(evidence)}
    assert str(evidence) in err
    verifier = NoteVerifier.from_vkey(VKEY)
    old = open_checkpoint((evidence / "old.checkpoint").read_bytes(), verifier, origin=ORIGIN)
    new = open_checkpoint((evidence / "new.checkpoint").read_bytes(), verifier, origin=ORIGIN)
    assert (old.checkpoint.size, new.checkpoint.size) == (cosigned_size, sizes[-1])
    # The witness still holds the checkpoint it cosigned, not the rolled-back one.
    assert (tmp_path / "state-w1" / "registry.test%2Fcdcer.checkpoint").read_bytes() == saved
    # A remembered tree of the same size with another root, or one the new tree does not extend: a fork.
    (same_size, unproven) = forks
    assert same_size[0] == unproven[0] == 1
    assert same_size[1].startswith(f"error: fork: two different trees of size {sizes[-1]} were signed")
    assert unproven[1].startswith(
        f"error: fork: the tree of size {sizes[-1]} does not extend the tree of size {sizes[0]}"
    )
    assert len(list((tmp_path / "state-w2").glob("evidence-*"))) == 2


def test_errors_are_one_line_with_the_right_exit_code(tmp_path: Path) -> None:
    key = tmp_path / "w1.key"
    write_key_file(key, seeded_key("witness-w1"), passphrase=None)
    common = ["--key", str(key), "--name", "witness.test/w1", "--state-dir", str(tmp_path / "state")]
    unreachable = f"http://127.0.0.1:{free_port()}"
    cases = [
        (["--url", unreachable, "--vkey", VKEY, *common], 3, "cannot reach"),
        (["--url", unreachable, "--vkey", "not-a-key", *common], 2, "--vkey"),
        (
            ["--url", unreachable, "--vkey", VKEY, *common[:1], str(tmp_path / "missing.key"), *common[2:]],
            2,
            "not found",
        ),
    ]
    for args, status, words in cases:
        code, out, err = invoke("witness", "cosign", *args)
        assert (code, out) == (status, ""), err
        assert err.startswith("error: "), err
        assert err.count("\n") == 1, err
        assert words in err, err
    code, _, err = invoke("witness", "vkey", "--key", str(key), "--name", "bad+name")
    assert code == 2
    assert err.startswith("error: --name: ")
    assert err.count("\n") == 1


# --- a registry that errors on the consistency proof: evidence, no cosignature -------------------------

STATE_FILE = "registry.test%2Fcdcer.checkpoint"
SAVED = sign_checkpoint(Checkpoint(ORIGIN, 2, hashlib.sha256(b"tree 2").digest()), log_signer())
SERVED = sign_checkpoint(Checkpoint(ORIGIN, 5, hashlib.sha256(b"tree 5").digest()), log_signer())


@dataclass
class FakeRegistry:
    """What the fake registry answers to the consistency proof request (None: it hangs up), and what it got."""

    status: int
    body: bytes | None
    posts: list[bytes] = field(default_factory=list)


@contextmanager
def fake_registry(registry: FakeRegistry) -> Iterator[str]:
    """A registry serving the signed checkpoint `SERVED` and `registry`'s answer to every consistency proof."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v1/log/checkpoint":
                self._answer(200, "text/plain; charset=utf-8", SERVED)
            elif self.path.startswith("/v1/log/proof/consistency?"):
                if registry.body is None:
                    self.close_connection = True  # no answer at all
                    return
                self._answer(registry.status, "application/json", registry.body)
            else:
                self._answer(404, "application/json", b"{}")

        def do_POST(self) -> None:
            registry.posts.append(self.rfile.read(int(self.headers["Content-Length"])))
            self._answer(201, "application/json", b"{}")

        def _answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


PROBLEM = b'{"type": "about:blank", "title": "Internal Server Error", "status": 500, "detail": "boom"}'


@pytest.mark.parametrize(
    ("status", "body", "code", "says"),
    [
        (500, PROBLEM, 3, "(HTTP 500: boom)"),
        (503, b"<html>maintenance</html>", 3, "(HTTP 503)"),
        (None, None, 3, "no answer"),
        (200, b"<html>not json</html>", 1, "its answer is not a consistency proof"),
        (200, b"[1, 2]", 1, "its answer is not a consistency proof"),
        (200, b'{"hashes": "!!!"}', 1, "its answer is not a consistency proof"),
        (200, b'{"hashes": [1, 2]}', 1, "its answer is not a consistency proof"),
    ],
    ids=["500", "503-html", "hang-up", "not-json", "list", "not-base64", "not-strings"],
)
def test_a_registry_that_errors_on_the_consistency_proof_is_not_cosigned_and_evidence_is_kept(
    tmp_path: Path, status: int | None, body: bytes | None, code: int, says: str
) -> None:
    write_key_file(tmp_path / "w1.key", seeded_key("witness-w1"), passphrase=None)
    state = tmp_path / "state-w1"
    state.mkdir()
    (state / STATE_FILE).write_bytes(SAVED)
    registry = FakeRegistry(status or 0, body)
    with fake_registry(registry) as base:
        exit_code, out, err = cosign(base, "w1", tmp_path)
    assert exit_code == code, err
    (evidence,) = state.glob("evidence-*")
    verdict = json.loads(out)
    assert verdict.pop("error")["exit_code"] == code
    assert verdict == {"verdict": "unproven", "evidence": str(evidence)}
    assert err.count("\n") == 1, err
    assert err.startswith(
        "error: unproven: the registry signed a tree of size 5 but did not prove it extends the tree of size 2"
    ), err
    assert says in err
    assert err.rstrip().endswith(f"evidence in {evidence}")
    assert (evidence / "old.checkpoint").read_bytes() == SAVED
    assert (evidence / "new.checkpoint").read_bytes() == SERVED
    answer = (evidence / "consistency-proof.http").read_bytes()
    assert answer.startswith(f"GET {base}/v1/log/proof/consistency?old=2&new=5\n".encode())
    if body is None:
        assert b"no answer: " in answer
    else:
        assert answer.startswith(f"GET {base}/v1/log/proof/consistency?old=2&new=5\nHTTP {status} ".encode())
        assert answer.endswith(b"\n\n" + body)
    # Not cosigned, and the witness still remembers the checkpoint it had.
    assert registry.posts == []
    assert (state / STATE_FILE).read_bytes() == SAVED
