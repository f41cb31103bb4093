"""Proofs, checkpoints and reads on a large log: in process and over HTTP through `cdcer serve`.

    python -m bench.ledger --entries 1000000            # build the log first (bench-data/ledger.db)
    python -m bench.reads --db bench-data/ledger.db     # then measure

Prints, for the log as it is: inclusion and consistency proof latency computed in process from the stored
tree, checkpoint signing latency (each beside its raw unit: one stored node read by primary key, one Ed25519
signature), and over HTTP (one keep-alive client, sequential requests, so latency is
the server's): an inclusion proof, a consistency proof, the signed checkpoint, a project, a serial's
history, and an account's holdings (signed with RFC 9421), each as mean / p50 / p99 in ms, beside the
same client's latency on ``/healthz`` (the HTTP stack's floor) measured in the same run. Nothing here
asserts a timing.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import nacl.signing
from sqlalchemy import text

from bench.ledger import ACCOUNTS, ORIGIN, key_for
from bench.serve import free_port, server
from ledger.checkpoint import Checkpoint, sign_checkpoint
from ledger.keys import write_key_file
from ledger.merkle import consistency_proof, inclusion_proof, root_at
from ledger.note import NoteSigner
from ledger.storage import store
from ledger.storage.engine import make_engine, read_transaction
from registry.accounts.signatures import sign_request


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def timed(samples: int, call: Callable[[int], object]) -> dict[str, float]:
    """Latency of `call(i)` over `samples` calls, in ms: mean, p50, p99."""
    times = []
    for i in range(samples):
        t0 = time.perf_counter()
        call(i)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {
        "mean": statistics.mean(times) * 1000,
        "p50": times[len(times) // 2] * 1000,
        "p99": times[min(len(times) - 1, int(len(times) * 0.99))] * 1000,
    }


def in_process(db: Path, samples: int) -> tuple[int, dict[str, dict[str, float]]]:
    engine = make_engine(f"sqlite:///{db}")
    rng = random.Random(3)
    signer = NoteSigner(ORIGIN, key_for("log").seed)
    with read_transaction(engine) as conn:
        size = store.log_size(conn)
        reader = store.DbNodeReader(conn)
        # The raw limit beside the proofs: one stored node read by its primary key, the unit a proof is made of.
        node = text("SELECT hash FROM merkle_nodes WHERE level = 1 AND idx = :i")
        figures = {
            "one node by primary key (raw)": timed(
                samples, lambda _: conn.execute(node, {"i": rng.randrange(size // 2)}).scalar_one()
            ),
            "inclusion proof": timed(samples, lambda _: inclusion_proof(reader, rng.randrange(size), size)),
            "consistency proof": timed(samples, lambda _: consistency_proof(reader, rng.randint(1, size), size)),
        }
        root = root_at(reader, size)
    raw_key = nacl.signing.SigningKey(key_for("log").seed)
    message = Checkpoint(ORIGIN, size, root).body().encode()
    figures["one Ed25519 signature (raw)"] = timed(samples, lambda _: raw_key.sign(message))
    figures["checkpoint signing"] = timed(samples, lambda _: sign_checkpoint(Checkpoint(ORIGIN, size, root), signer))
    engine.dispose()
    return size, figures


# Each in-process figure's ratio is to the raw operation measured just before it.
RAW_OF = {
    "inclusion proof": "one node by primary key (raw)",
    "consistency proof": "one node by primary key (raw)",
    "checkpoint signing": "one Ed25519 signature (raw)",
}


def over_http(db: Path, size: int, samples: int) -> dict[str, dict[str, float]]:
    rng = random.Random(4)
    with tempfile.TemporaryDirectory() as scratch:
        key_file = Path(scratch) / "log.key"
        write_key_file(key_file, key_for("log"), passphrase=None)
        port = free_port()
        command = [sys.executable, "-m", "cli", "serve", "--database", f"sqlite:///{db}"]
        command += ["--log-key-file", str(key_file), "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDCER_")}
        with server(command, port, env) as base, httpx.Client(base_url=base, timeout=60) as client:
            account = key_for("acct000")

            def holdings(_: int) -> None:
                request = client.build_request("GET", "/v1/accounts/acct000/holdings")
                sign_request(request, account)
                client.send(request).raise_for_status()

            def get(path: Callable[[], str]) -> Callable[[int], object]:
                return lambda _: client.get(path()).raise_for_status()

            serial = "CDCER-P0001-2023-001-000001"  # moved by every transfer its holders make: the longest history
            moves = len(client.get(f"/v1/serials/{serial}").json()["history"])
            get(lambda: "/healthz")(0)  # warm
            return {
                "GET /healthz (floor)": timed(samples, get(lambda: "/healthz")),
                "GET inclusion proof": timed(
                    samples, get(lambda: f"/v1/log/proof/inclusion?index={rng.randrange(size)}&size={size}")
                ),
                "GET consistency proof": timed(
                    samples,
                    get(lambda: f"/v1/log/proof/consistency?old={rng.choice(checkpoint_sizes(db))}&new={size}"),
                ),
                "GET signed checkpoint": timed(samples, get(lambda: "/v1/log/checkpoint")),
                "GET a project": timed(samples, get(lambda: f"/v1/projects/P{rng.randint(1, ACCOUNTS):04d}")),
                "GET a random serial's history": timed(
                    samples,
                    get(
                        lambda: (
                            f"/v1/serials/CDCER-P{rng.randint(1, ACCOUNTS):04d}-2023-001-{rng.randint(1, 10**6):06d}"
                        )
                    ),
                ),
                f"GET the most-moved serial ({moves:,} moves)": timed(
                    max(samples // 10, 10), get(lambda: f"/v1/serials/{serial}")
                ),
                "GET an account's holdings (signed)": timed(samples, holdings),
            }


_SIZES: dict[Path, list[int]] = {}


def checkpoint_sizes(db: Path) -> list[int]:
    """The sizes of the stored checkpoints (a consistency proof is served between signed sizes)."""
    if db not in _SIZES:
        engine = make_engine(f"sqlite:///{db}")
        with read_transaction(engine) as conn:
            _SIZES[db] = [cp.size for cp in store.iter_checkpoints(conn)][:-1] or [1]
        engine.dispose()
    return _SIZES[db]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reads")
    parser.add_argument("--db", type=Path, default=Path("bench-data/ledger.db"))
    parser.add_argument("--samples", type=int, default=1000)
    args = parser.parse_args()
    if not args.db.exists():
        raise SystemExit(f"bench: no log at {args.db}; build one with python -m bench.ledger --entries N")
    log("in process: proofs and checkpoint signing")
    size, local = in_process(args.db, args.samples)
    log("over HTTP through cdcer serve")
    remote = over_http(args.db, size, args.samples)
    floor = remote["GET /healthz (floor)"]["p50"]
    print(f"\ncdcer reads benchmark: {size:,} entries in {args.db}, {args.samples} samples each")
    print(f"{'':<40} {'mean ms':>9} {'p50 ms':>9} {'p99 ms':>9}   ratio")
    for name, figures in [*local.items(), *remote.items()]:
        ratio = ""
        if name.startswith("GET"):
            ratio = f"p50 = {figures['p50'] / floor:.1f} x /healthz"
        elif name in RAW_OF:
            ratio = f"p50 = {figures['p50'] / local[RAW_OF[name]]['p50']:.1f} x {RAW_OF[name].removesuffix(' (raw)')}"
        print(f"{name:<40} {figures['mean']:>9.3f} {figures['p50']:>9.3f} {figures['p99']:>9.3f}   {ratio}")


if __name__ == "__main__":
    main()
