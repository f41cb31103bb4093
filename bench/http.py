"""HTTP load benchmark: concurrent clients submit pre-signed transfers to `cdcer serve` over loopback.

    python -m bench.http --engine sqlite --clients 32 --transfers 20000
    python -m bench.http --engine postgres --clients 32 --transfers 20000 --workers 2

The registry is built fresh (64 accounts holding 1,000,000 units each), every transfer is signed before
the clock starts (so the load generator measures the server, not its own signing), and the server runs
exactly as an operator starts it (``cdcer serve``, in its own process). The clients are asyncio tasks
over keep-alive connections in one process, on the same 2-core machine as the server: the load generator
is included in the figures, as the targets require.

Printed figures: accepted transfers per second and the p50 / p99 latency of a full receipt (entry,
signed checkpoint and inclusion proof), beside raw limits measured in the same run: PyNaCl verifications
per second per core, plain inserts per second on the same database, and an empty FastAPI endpoint's
requests per second through the same client. Nothing here asserts a timing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bench.ledger import ORIGIN, World, key_for, presign_transfers, raw_sqlite_insert_rate, raw_verify_rate, setup
from bench.serve import free_port, group_cpu_seconds, server
from ledger.keys import write_key_file
from ledger.ledger import Ledger
from ledger.note import NoteSigner
from ledger.storage.engine import make_engine
from ledger.storage.schema import upgrade

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the database -------------------------------------------------------------------------------------


def fresh_database(engine_kind: str, folder: Path, postgres_url: str) -> str:
    """An empty database of the kind asked for: a new SQLite file, or a recreated PostgreSQL database."""
    if engine_kind == "sqlite":
        path = folder / "http-bench.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return f"sqlite:///{path}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text('DROP DATABASE IF EXISTS "cdcer_bench_http" WITH (FORCE)'))
        conn.execute(text('CREATE DATABASE "cdcer_bench_http"'))
    admin.dispose()
    return make_url(postgres_url).set(database="cdcer_bench_http").render_as_string(hide_password=False)


def raw_postgres_insert_rate(url: str, rows: int = 100_000, batch: int = 1000) -> float:
    """Plain inserts per second into an unlogged-free, ordinary PostgreSQL table, one commit per batch."""
    engine = create_engine(url)
    payload, digest = os.urandom(700), os.urandom(32)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE IF EXISTS raw_inserts"))
        conn.execute(text("CREATE TABLE raw_inserts (idx BIGINT PRIMARY KEY, data BYTEA NOT NULL, h BYTEA NOT NULL)"))
    start = time.perf_counter()
    for first in range(0, rows, batch):
        with engine.begin() as conn:
            conn.execute(
                text("INSERT INTO raw_inserts VALUES (:i, :d, :h)"),
                [{"i": i, "d": payload, "h": digest} for i in range(first, first + batch)],
            )
    rate = rows / (time.perf_counter() - start)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE raw_inserts"))
    engine.dispose()
    return rate


# --- servers ---------------------------------------------------------------------------------------------


EMPTY_APP = """
from fastapi import FastAPI
app = FastAPI()

@app.post("/empty")
async def empty() -> dict[str, int]:
    return {"ok": 1}

@app.get("/healthz")
async def healthz() -> dict[str, int]:
    return {"ok": 1}
"""
"""The raw limit of the HTTP stack: async endpoints (as the write path's is), on the HTTP parser and event
loop `cdcer serve` uses (httptools, uvloop)."""


# --- the load ---------------------------------------------------------------------------------------------


async def _load(url: str, bodies: list[bytes], clients: int, expect: int) -> tuple[float, list[float], int, int]:
    """POST every body with `clients` concurrent tasks; (seconds, latencies of accepted, accepted, other)."""
    queue = iter(bodies)
    latencies: list[float] = []
    other = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def worker() -> None:
            nonlocal other
            for body in queue:
                t0 = time.perf_counter()
                response = await client.post(url, content=body, headers=headers)
                elapsed = time.perf_counter() - t0
                if response.status_code == expect:
                    latencies.append(elapsed)
                else:
                    other += 1
                    if other <= 3:
                        log(f"  unexpected {response.status_code}: {response.text[:200]}")

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        seconds = time.perf_counter() - start
    return seconds, latencies, len(latencies), other


def load(url: str, bodies: list[bytes], clients: int, expect: int) -> dict[str, float]:
    seconds, latencies, accepted, other = asyncio.run(_load(url, bodies, clients, expect))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000 if latencies else float("nan")

    return {
        "seconds": seconds,
        "accepted": accepted,
        "other": other,
        "rate": accepted / seconds,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.mean(latencies) * 1000 if latencies else float("nan"),
    }


WRK_SCRIPT = """
local bodies, next_body, path = {}, 0, "/"
local threads = {}
init = function(args)
  path = args[2]
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  created, other, wrapped = 0, 0, 0
end
request = function()
  next_body = next_body + 1
  if next_body > #bodies then next_body = 1; wrapped = wrapped + 1 end
  return wrk.format("POST", path, {["Content-Type"] = "application/json"}, bodies[next_body])
end
response = function(status, headers, body)
  if status == 201 or (path == "/empty" and status == 200) then created = created + 1 else other = other + 1 end
end
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  local c, o, w = 0, 0, 0
  for _, t in ipairs(threads) do c = c + t:get("created"); o = o + t:get("other"); w = w + t:get("wrapped") end
  io.write(string.format('RESULT {"created": %d, "other": %d, "wrapped": %d, '
    .. '"seconds": %f, "p50_ms": %f, "p90_ms": %f, "p99_ms": %f, "max_ms": %f}\\n', c, o, w,
    summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def wrk_load(base: str, path: str, bodies_file: Path, clients: int, seconds: int) -> dict[str, float]:
    """Drive `path` with wrk (one thread, `clients` connections) for `seconds`, cycling through the bodies."""
    with tempfile.TemporaryDirectory() as scratch:
        script = Path(scratch) / "bodies.lua"
        script.write_text(WRK_SCRIPT)
        out = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{clients}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(script),
                base,
                "--",
                str(bodies_file),
                path,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
    line = next(row for row in out.stdout.splitlines() if row.startswith("RESULT "))
    result: dict[str, float] = json.loads(line.removeprefix("RESULT "))
    if path != "/empty" and result["wrapped"]:
        log("  note: wrk ran out of pre-signed transfers and re-sent some (answered 200, not counted)")
    result["rate"] = result["created"] / result["seconds"]
    return result


# --- the run ------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.http")
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--transfers", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=1, help="server processes (uvicorn workers)")
    parser.add_argument(
        "--append-thread",
        action="store_true",
        help="append in a thread of each server process instead of a child process of its own",
    )
    parser.add_argument("--postgres-url", default=os.environ.get("CDCER_BENCH_POSTGRES_URL", DEFAULT_POSTGRES))
    parser.add_argument("--folder", type=Path, default=Path("bench-data"))
    parser.add_argument(
        "--generator",
        choices=["wrk", "python"],
        default="wrk" if shutil.which("wrk") else "python",
        help="wrk (Debian's, C: the default when installed) or asyncio httpx clients",
    )
    parser.add_argument("--seconds", type=int, default=15, help="measured seconds (wrk)")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    cores = os.cpu_count() or 1
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDCER_")}

    log("raw limits: signature verifications, plain inserts, an empty endpoint")
    verify_rate = raw_verify_rate()
    url = fresh_database(args.engine, args.folder, args.postgres_url)
    if args.engine == "sqlite":
        with tempfile.TemporaryDirectory(dir=args.folder) as scratch:
            insert_rate = raw_sqlite_insert_rate(Path(scratch))
    else:
        insert_rate = raw_postgres_insert_rate(url)
    empty_port = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "empty_app.py").write_text(EMPTY_APP)
        empty_cmd = [sys.executable, "-m", "uvicorn", "--app-dir", scratch, "empty_app:app", "--port", str(empty_port)]
        empty_cmd += ["--workers", str(args.workers), "--log-level", "warning", "--no-access-log"]
        empty_cmd += ["--http", "httptools", "--loop", "uvloop"]
        with server(empty_cmd, empty_port, env) as base:
            if args.generator == "wrk":
                (Path(scratch) / "empty.jsonl").write_text("{}\n")
                empty = wrk_load(base, "/empty", Path(scratch) / "empty.jsonl", args.clients, min(args.seconds, 8))
            else:
                empty = load(f"{base}/empty", [b"{}"] * min(args.transfers, 20_000), args.clients, 200)

    log(f"building the registry on {args.engine} and signing {args.transfers:,} transfers")
    engine = make_engine(url)
    upgrade(engine)
    ledger = Ledger(engine, NoteSigner(ORIGIN, key_for("log").seed))
    world: World = setup(ledger)
    engine.dispose()
    rng = random.Random(1)
    bodies = [json.dumps(tx.to_json()).encode() for tx in presign_transfers(world, args.transfers, rng)]
    key_file = args.folder / "http-bench-log.key"
    key_file.unlink(missing_ok=True)
    write_key_file(key_file, key_for("log"), passphrase=None)

    port = free_port()
    command = [sys.executable, "-m", "cli", "serve", "--database", url, "--log-key-file", str(key_file)]
    command += ["--port", str(port), "--workers", str(args.workers)]
    command += ["--append-thread" if args.append_thread else "--append-process"]
    appends = "a thread" if args.append_thread else "a child process"
    log(f"serving with {args.workers} process(es), appending in {appends} of each; {args.clients} clients sending")
    with server(command, port, env) as base:
        warm = max(200, args.transfers // 20)
        load(f"{base}/v1/transactions", bodies[:warm], min(args.clients, 8), 201)
        cpu = group_cpu_seconds(base)
        if args.generator == "wrk":
            bodies_file = args.folder / "http-bench-transfers.jsonl"
            bodies_file.write_bytes(b"\n".join(bodies[warm:]) + b"\n")
            result = wrk_load(base, "/v1/transactions", bodies_file, args.clients, args.seconds)
        else:
            result = load(f"{base}/v1/transactions", bodies[warm:], args.clients, 201)
        cpu = group_cpu_seconds(base) - cpu

    def row(name: str, value: str, ratio: str = "") -> None:
        print(f"{name:<52} {value:>14}   {ratio}")

    print(
        f"\ncdcer HTTP benchmark: {args.engine}, {args.workers} server process(es) appending in {appends}, "
        f"{args.clients} clients "
        f"({args.generator}), {cores} cores (load generator on the same machine)"
    )
    row("raw: PyNaCl verifications/s per core", f"{verify_rate:,.0f}")
    row(f"raw: plain {args.engine} inserts/s (commit per 1,000)", f"{insert_rate:,.0f}")
    row("raw: empty FastAPI endpoint, requests/s", f"{empty['rate']:,.0f}", f"p99 {empty['p99_ms']:.1f} ms")
    row(
        "accepted signed transfers/s",
        f"{result['rate']:,.0f}",
        f"{result['rate'] / empty['rate']:.2f} x empty endpoint, {result['rate'] / verify_rate:.2f} x one core's"
        f" verifications, {result['rate'] / insert_rate:.3f} x plain inserts",
    )
    for name, key in [("p50", "p50_ms"), ("p90", "p90_ms"), ("p99", "p99_ms"), ("max", "max_ms")]:
        if key in result:
            ratio = f"{result[key] / empty[key]:.1f} x the empty endpoint's" if empty.get(key) else ""
            row(f"receipt latency {name} (ms)", f"{result[key]:.1f}", ratio)
    row("answered otherwise (refused, re-sent or failed)", f"{result['other']:,.0f}")
    accepted = result["rate"] * result["seconds"]
    row(
        "server CPU per accepted transfer (ms)",
        f"{cpu / max(accepted, 1) * 1000:.3f}",
        f"server processes used {cpu / result['seconds']:.2f} of {cores} cores",
    )


if __name__ == "__main__":
    main()
