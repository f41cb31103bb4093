"""Crash safety: SIGKILL the server at random moments under load, start it again, and check nothing was lost.

On each engine one ``cdcer serve`` (in its own process group: with ``--workers 2`` uvicorn's supervisor and
both workers) takes pre-signed transfers among overlapping accounts from three client processes, the
clients of test_load.py (`run_client`): each retries a request that failed in transport with the
identical signed transaction, every 50 ms, at whatever URL the test last published, and the registry
answers a transaction it already appended with the original receipt. At seeded random moments under load
(once the clients have recorded a random amount of further answers) the test SIGKILLs the whole process
group, so a batch dies wherever it is: in the sequencer's queue, inside its database transaction, or
between the commit and the responses. Then, with no server process left:

- every transaction acknowledged so far is in the log exactly once, at its receipt's index, with its
  leaf hash, and its receipt's checkpoint is the one stored (`check_receipts`); the log after the setup
  holds only transactions that were sent;
- nothing half-written remains (`read_log`): the log is contiguous, its size is the latest checkpoint's,
  no Merkle node or unit movement lies beyond it, and every checkpoint is consistent with the latest;
- ``cdcer audit verify`` exits 0: chain, tree, checkpoints, signatures, roles, the replay of every rule
  and invariant, and the projection tables and unit movements equal to the replay;

and the server, started again on the same database, answers ``/healthz`` and appends a new transfer
(201, from an account no client uses). After the last kill and restart the clients are stopped and
test_load.py's `check_registry` runs: every answer a receipt or an ``insufficient_units`` refusal (never
a 5xx), every acknowledged transaction exactly once in the log, nothing else there, the balances what
the acknowledged transfers moved, none negative, and the audit.

`test_crash` (slow): 10 kills per engine, two workers (two appending processes, killed together).
`test_crash_fast` (default suite): 2 kills per engine, one worker (quicker to start).
Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from tests.conftest import Story
from tests.registry.live import REPO_ROOT, ServerError, free_port
from tests.registry.test_load import (
    HOLDERS,
    PROBER,
    START_TIMEOUT,
    Answer,
    Clients,
    audit_passes,
    check_receipts,
    check_registry,
    client_transfers,
    clients,
    found_holders,
    plan,
    read_log,
    report,
    signed_transfer,
    write_log_key,
    write_urls,
)

CLIENTS = 3


class KillableServer:
    """``cdcer serve`` on one database, in its own process group, killed and started at will."""

    def __init__(self, database_url: str, log_key_file: Path, directory: Path, *, workers: int) -> None:
        self.database_url = database_url
        self.workers = workers
        self.log_key_file = log_key_file
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.url = ""
        self.env = dict(os.environ)
        for name in ("CDCER_LOG_KEY_PASSPHRASE", "CDCER_ORIGIN"):  # a clear key file; the origin from the database
            self.env.pop(name, None)

    @property
    def output_file(self) -> Path:
        return self.directory / f"serve-{self.starts}.log"

    def output(self) -> str:
        return self.output_file.read_text(errors="replace")[-10000:]

    def start(self) -> str:
        """Start a server on a free port and wait until it answers ``/healthz``; its URL."""
        for _ in range(3):
            self.starts += 1
            port = free_port()
            command = [sys.executable, "-m", "cli", "serve", "--database", self.database_url]
            command += ["--log-key-file", str(self.log_key_file), "--host", "127.0.0.1", "--port", str(port)]
            command += ["--workers", str(self.workers)]
            with self.output_file.open("wb") as output:
                self.process = subprocess.Popen(
                    command,
                    cwd=REPO_ROOT,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, which `kill` addresses
                )
            self.url = f"http://127.0.0.1:{port}"
            if self._ready():
                return self.url
            if "already in use" not in self.output().lower():  # else another process took the port: again
                break
        raise ServerError(f"cdcer serve did not start:\n{self.output()}")

    def _ready(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    return False
                try:
                    if http.get(f"{self.url}/healthz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise ServerError(f"cdcer serve did not answer /healthz within {START_TIMEOUT:.0f} s:\n{self.output()}")

    def kill(self) -> None:
        """SIGKILL the whole process group at once; return when none of its processes runs any more."""
        process = self.process
        assert process is not None
        if process.poll() is not None:
            raise ServerError(f"cdcer serve died before the kill ({process.returncode}):\n{self.output()}")
        os.killpg(process.pid, signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
        deadline = time.monotonic() + 30.0
        while group_members(process.pid):
            assert time.monotonic() < deadline, f"processes of group {process.pid} outlived SIGKILL"
            time.sleep(0.01)
        self.process = None

    def stop(self) -> None:
        """Stop the server as an operator would (SIGTERM), then SIGKILL what is left of its group."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15.0)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
        self.process = None


def group_members(pgid: int) -> list[int]:
    """The processes of process group `pgid` that still run (zombies hold no locks, files or sockets)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state not in ("Z", "X"):
            members.append(int(stat.parent.name))
    return members


def probe(url: str) -> Answer:
    """The server answers ``/healthz`` and appends a new transfer (from the prober, whom no client uses)."""
    sent = signed_transfer(PROBER, HOLDERS[0], 1)
    with httpx.Client(timeout=60.0) as http:
        assert http.get(f"{url}/healthz").status_code == 200
        response = http.post(f"{url}/v1/transactions", json=sent.tx.to_json())
    assert response.status_code == 201, response.text
    return Answer(-1, sent, False, 201, response.json(), 0, False, None)


def check_after_kill(
    engine: Engine, database_url: str, answers: list[Answer], signed: set[bytes], start_size: int
) -> tuple[int, int]:
    """With no server running: every acknowledged transaction is where its receipt says, the log is whole and
    the audit passes. How many acknowledged transactions were checked, and how many in the log are not
    acknowledged yet (appended, but the kill came before their client had the receipt: it sends them again).
    """
    view = read_log(engine, start_size)
    checked = check_receipts(view, answers)
    assert set(view.after_setup) <= signed, "the log holds a transaction the test never signed"
    audit_passes(database_url, view.size)
    acknowledged = {answer.sent.identity for answer in answers if answer.acknowledged}
    return checked, len(set(view.after_setup) - acknowledged)


def under_load(group: Clients, rng: random.Random) -> None:
    """Wait a random moment under load: until the clients have recorded 1 to 150 kB more answers (about 1 to
    120 transfers), then up to 0.2 s more. Tied to the clients' progress rather than the clock, so the server
    is busy when it is killed however fast the machine is."""
    target = group.progress() + rng.randint(1_000, 150_000)
    deadline = time.monotonic() + 60.0
    while group.progress() < target and group.running() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(rng.uniform(0.0, 0.2))


def run_crashes(
    story: Story, database_url: str, tmp_path: Path, *, kills: int, workers: int, each: int, seed: int
) -> None:
    before = found_holders(story)
    start_size = story.ledger.size()
    engine = story.ledger.engine
    log_key_file = write_log_key(tmp_path)
    rng = random.Random(seed)
    transfers = [client_transfers(c, each, rng) for c in range(CLIENTS)]
    work = [(group, plan(each, client=c, resend_every=10 if c == 0 else 0)) for c, group in enumerate(transfers)]
    signed = {sent.identity for group in transfers for sent in group}
    urls_file = tmp_path / "urls.json"
    server = KillableServer(database_url, log_key_file, tmp_path, workers=workers)
    probes: list[Answer] = []
    checked = in_flight = 0
    started = time.monotonic()
    try:
        with clients(tmp_path / "clients", work, urls_file, give_up_after=120.0) as group:
            write_urls(urls_file, [server.start()])  # while the clients start
            group.wait_ready()
            group.go()
            for _ in range(kills):
                under_load(group, rng)
                group.check_alive()
                server.kill()
                acknowledged, unacknowledged = check_after_kill(
                    engine, database_url, group.answers() + probes, signed, start_size
                )
                checked += acknowledged
                in_flight += unacknowledged
                url = server.start()
                probes.append(probe(url))
                signed.add(probes[-1].sent.identity)
                write_urls(urls_file, [url])
            assert group.running(), "the clients ran out of transfers: give them more"
            group.stop()
            group.join()
            answers = group.answers()
        tally = check_registry(engine, database_url, answers + probes, before=before, start_size=start_size)
    finally:
        server.stop()
    wall = time.monotonic() - started
    report(
        f"crash {engine.dialect.name}",
        tally,
        client_processes=CLIENTS,
        server_processes=f"1 server with {workers} worker{'s' if workers > 1 else ''}",
        kills_survived=kills,
        restarts_probed=len(probes),
        acknowledged_checked_after_kills=checked,
        appended_unacknowledged_at_kills=in_flight,
        wall_s=f"{wall:.1f}",
    )


@pytest.mark.slow
def test_crash(story: Story, database_url: str, tmp_path: Path) -> None:
    run_crashes(story, database_url, tmp_path, kills=10, workers=2, each=1500, seed=10)


def test_crash_fast(story: Story, database_url: str, tmp_path: Path) -> None:
    run_crashes(story, database_url, tmp_path, kills=2, workers=1, each=300, seed=2)
