"""Interop with Go's golang.org/x/mod/sumdb/note and sumdb/tlog, unchanged (SPEC section 4).

A small Go program (tests/ledger/go/) is built once per session, offline, against Debian's
golang-go and golang-golang-x-mod-dev, and run once with every case as one JSON request:

- our signed checkpoints open with ``note.Open`` / ``note.NewVerifier``, tampered ones do not, and
  ``note.Sign`` with the same key produces our bytes exactly;
- tlog, storing the same leaves its own way, computes our root for every tree size;
- our inclusion proofs pass ``tlog.CheckRecord`` and our consistency proofs ``tlog.CheckTree`` for
  every index and every pair of sizes up to 70 and for random cases in a tree of 10,000 leaves,
  and equal the proofs tlog builds itself; tampered proofs are refused.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.checkpoint import Checkpoint, CosignatureSigner, add_cosignature, sign_checkpoint
from ledger.merkle import (
    Frontier,
    Hash,
    MemoryNodeStore,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    root_at,
)
from ledger.note import NoteSigner

pytestmark = pytest.mark.go

GO_SOURCE = Path(__file__).parent / "go"
DEFAULT_XMOD = Path("/usr/share/gocode/src/golang.org/x/mod")
XMOD = Path(os.environ.get("CDCER_GO_XMOD", str(DEFAULT_XMOD)))
DEBIAN_PACKAGES = "golang-go and golang-golang-x-mod-dev"

SMALL_SIZES = 70
BIG_TREE = 10_000
ORIGIN = "registry.cdcer.example/log"
SEED = bytes(range(32))


def _missing(reason: str) -> None:
    message = (
        f"Go interop test needs the Debian packages {DEBIAN_PACKAGES} "
        f"(apt-get install golang-go golang-golang-x-mod-dev): {reason}"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _go_env(workdir: Path) -> dict[str, str]:
    # Offline and hermetic: no proxy, no checksum database, caches inside the test's tmp dir.
    return {
        **os.environ,
        "GO111MODULE": "on",
        "GOFLAGS": "-mod=mod",
        "GOPROXY": "off",
        "GOSUMDB": "off",
        "GOTOOLCHAIN": "local",
        "GOTELEMETRY": "off",
        "GOWORK": "off",
        "CGO_ENABLED": "0",
        "GOCACHE": str(workdir / "gocache"),
        "GOPATH": str(workdir / "gopath"),
    }


@pytest.fixture(scope="module")
def go_checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build tests/ledger/go once for this module; skip (or fail under CI=true) without Go."""
    go = shutil.which("go")
    if go is None:
        _missing("`go` is not on PATH")
    for package in ("sumdb/note/note.go", "sumdb/tlog/tlog.go"):
        if not (XMOD / package).is_file():
            _missing(f"{XMOD / package} does not exist (golang.org/x/mod source)")
    assert go is not None
    workdir = tmp_path_factory.mktemp("go-interop")
    source = workdir / "src"
    shutil.copytree(GO_SOURCE, source)
    go_mod = source / "go.mod"
    go_mod.write_text(go_mod.read_text().replace(str(DEFAULT_XMOD), str(XMOD)))
    binary = workdir / "gointerop"
    built = subprocess.run(
        [go, "build", "-o", str(binary), "."],
        cwd=source,
        env=_go_env(workdir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if built.returncode != 0:
        pytest.fail(f"go build of {GO_SOURCE} failed (offline, x/mod at {XMOD}):\n{built.stderr}")
    return binary


# --- the request ---------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass
class Tree:
    leaves: list[bytes]
    store: MemoryNodeStore
    roots: list[Hash]  # roots[size], from the frontier as it grew


def _build_tree(count: int) -> Tree:
    store, frontier = MemoryNodeStore(), Frontier.empty()
    leaves = [f"entry {i}: {'x' * (i % 7)}".encode() for i in range(count)]
    roots = [frontier.root()]
    for data in leaves:
        store.put_nodes(frontier.append(leaf_hash(data)))
        roots.append(frontier.root())
    return Tree(leaves=leaves, store=store, roots=roots)


def _tamper(proof: list[str], rng: random.Random) -> list[str]:
    """A base64 proof changed in one way: a flipped bit, a dropped hash or an extra hash."""
    hashes = [base64.b64decode(h) for h in proof]
    kind = rng.choice(["flip", "drop", "extra"] if hashes else ["extra"])
    if kind == "flip":
        i = rng.randrange(len(hashes))
        hashes[i] = bytes([hashes[i][0] ^ 1]) + hashes[i][1:]
    elif kind == "drop":
        hashes.pop()
    else:
        hashes.append(bytes(32))
    return [_b64(h) for h in hashes]


def _proof_cases(tree: Tree) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rng = random.Random(6962)
    records: list[tuple[int, int]] = []  # (size, index)
    trees: list[tuple[int, int]] = []  # (new size, old size)
    for size in range(1, SMALL_SIZES + 1):
        records += [(size, index) for index in range(size)]
        trees += [(size, old) for old in range(1, size + 1)]
    big_sizes = {1023, 1024, 1025, 4097, BIG_TREE - 1, BIG_TREE} | {rng.randrange(71, BIG_TREE) for _ in range(6)}
    for size in sorted(big_sizes):
        indexes = {0, size - 1, size // 2} | {rng.randrange(size) for _ in range(8)}
        records += [(size, index) for index in sorted(indexes)]
        olds = {1, size - 1 or 1, size, SMALL_SIZES} | {rng.randrange(1, size + 1) for _ in range(8)}
        trees += [(size, old) for old in sorted(olds) if old <= size]

    record_cases: list[dict[str, Any]] = []
    for size, index in records:
        proof = inclusion_proof(tree.store, index, size)
        record_cases.append({"t": size, "n": index, "proof": [_b64(h) for h in proof], "want_ok": True})
    tree_cases: list[dict[str, Any]] = []
    for size, old in trees:
        proof = consistency_proof(tree.store, old, size)
        tree_cases.append({"t": size, "n": old, "proof": [_b64(h) for h in proof], "want_ok": True})

    # Tampered copies of some cases, which tlog must refuse (so the check is known to bite). A
    # consistency proof between equal sizes is empty and cannot be tampered by flipping or dropping.
    for cases in (record_cases, tree_cases):
        for case in rng.sample(cases, 40):
            cases.append({**case, "proof": _tamper(case["proof"], rng), "want_ok": False})
    return record_cases, tree_cases


def _note_cases(tree: Tree) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    registry = NoteSigner(ORIGIN, SEED)
    vkey = registry.verifier_key()
    # Go's signer key format: PRIVATE+KEY+<name>+<key id>+<base64(0x01 || seed)>.
    skey = f"PRIVATE+KEY+{ORIGIN}+{registry.key_id.hex()}+" + _b64(bytes([0x01]) + SEED)
    notes: list[dict[str, Any]] = []
    signs: list[dict[str, Any]] = []

    def add(label: str, cp: Checkpoint, data: bytes, *, want_ok: bool = True, key: str = vkey) -> None:
        notes.append(
            {
                "label": label,
                "vkey": key,
                "msg": _b64(data),
                "origin": cp.origin,
                "size": cp.size,
                "root": _b64(cp.root_hash),
                "want_ok": want_ok,
            }
        )

    for size in (0, 1, 2, 3, 7, 64, 65, BIG_TREE):
        cp = Checkpoint(origin=ORIGIN, size=size, root_hash=tree.roots[size])
        data = sign_checkpoint(cp, registry)
        add(f"size {size}", cp, data)
        signs.append({"label": f"size {size}", "skey": skey, "text": cp.body(), "want": _b64(data)})

    cp = Checkpoint(origin=ORIGIN, size=5, root_hash=tree.roots[5], extensions=("extension line", "\u78b3"))
    add("with extensions", cp, sign_checkpoint(cp, registry))
    signs.append(
        {
            "label": "with extensions",
            "skey": skey,
            "text": cp.body(),
            "want": _b64(sign_checkpoint(cp, registry)),
        }
    )

    cp = Checkpoint(origin=ORIGIN, size=6, root_hash=tree.roots[6])
    data = sign_checkpoint(cp, registry)
    for i in range(3):
        witness = CosignatureSigner(f"witness{i}.example/w", bytes([i + 100]) * 32)
        data = add_cosignature(data, witness.cosign(cp.body(), 1_700_000_000 + i), witness.verifier())
    add("cosigned by three witnesses", cp, data)

    cp = Checkpoint(origin=ORIGIN, size=8, root_hash=tree.roots[8])
    data = sign_checkpoint(cp, registry)
    add("tampered size", cp, data.replace(b"\n8\n", b"\n9\n", 1), want_ok=False)
    other = NoteSigner(ORIGIN, bytes(32))
    add("signed by another key", cp, sign_checkpoint(cp, other), want_ok=False)
    add("verified with another key", cp, data, want_ok=False, key=other.verifier_key())
    return notes, signs


@pytest.fixture(scope="module")
def tree() -> Tree:
    return _build_tree(BIG_TREE)


@pytest.fixture(scope="module")
def request_and_report(go_checker: Path, tree: Tree) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the Go checker once, with every case, and share its report with the tests below."""
    notes, signs = _note_cases(tree)
    records, trees = _proof_cases(tree)
    request = {
        "notes": notes,
        "sign": signs,
        "leaves": [_b64(data) for data in tree.leaves],
        "roots": [_b64(root) for root in tree.roots],
        "records": records,
        "trees": trees,
    }
    ran = subprocess.run(
        [str(go_checker)],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert ran.returncode == 0, f"Go checker failed: {ran.stderr}"
    return request, json.loads(ran.stdout)


def _failures(report: dict[str, Any], prefix: tuple[str, ...]) -> list[str]:
    return [f for f in report["failures"] if f.startswith(prefix)]


# --- the tests -----------------------------------------------------------------------------------


def test_root_at_agrees_with_the_frontier(tree: Tree) -> None:
    for size in [*range(1, SMALL_SIZES + 1), 1024, 4097, BIG_TREE]:
        assert root_at(tree.store, size) == tree.roots[size]


def test_checkpoints_open_with_go_note(request_and_report: tuple[dict[str, Any], dict[str, Any]]) -> None:
    request, report = request_and_report
    assert report["notes_checked"] == len(request["notes"])
    assert _failures(report, ("note ",)) == []


def test_go_note_sign_produces_our_bytes(request_and_report: tuple[dict[str, Any], dict[str, Any]]) -> None:
    request, report = request_and_report
    assert report["sign_checked"] == len(request["sign"])
    assert _failures(report, ("sign ",)) == []


def test_tlog_computes_our_roots(request_and_report: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, report = request_and_report
    assert report["roots_checked"] == BIG_TREE
    assert _failures(report, ("root ", "tlog.", "request ")) == []


def test_inclusion_proofs_pass_tlog_check_record(
    request_and_report: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    request, report = request_and_report
    assert report["records_checked"] == len(request["records"])
    assert len(request["records"]) > SMALL_SIZES * (SMALL_SIZES + 1) // 2
    assert _failures(report, ("CheckRecord", "ProveRecord", "inclusion proof", "record case")) == []


def test_consistency_proofs_pass_tlog_check_tree(
    request_and_report: tuple[dict[str, Any], dict[str, Any]],
) -> None:
    request, report = request_and_report
    assert report["trees_checked"] == len(request["trees"])
    assert _failures(report, ("CheckTree", "ProveTree", "consistency proof", "tree case")) == []


def test_our_proofs_equal_tlogs(request_and_report: tuple[dict[str, Any], dict[str, Any]]) -> None:
    request, report = request_and_report
    good = sum(case["want_ok"] for case in request["records"] + request["trees"])
    assert report["proofs_equal"] == good
    assert report["failures"] == []
