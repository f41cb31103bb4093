"""Run `cdcer serve` (or any server command) for a benchmark, on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
SERVERS: dict[str, int] = {}
"""The process group of each running `server`, by its base URL."""


def group_cpu_seconds(base: str) -> float:
    """CPU seconds (user and system) used so far by the processes of a running server's group, workers included."""
    group = SERVERS[base]
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        if int(fields[2]) == group:  # the process group id
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def server(command: list[str], port: int, env: dict[str, str]) -> Iterator[str]:
    """Run a server command in its own process group until the block ends; yield its base URL."""
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    output.seek(0)
                    raise SystemExit(f"bench: the server stopped:\n{output.read().decode(errors='replace')}")
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("bench: the server did not answer within 60 s")
                time.sleep(0.2)
            SERVERS[base] = process.pid
            yield base
        finally:
            SERVERS.pop(base, None)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
