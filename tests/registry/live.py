"""The real registry server (`cdcer serve`) as a subprocess on a free loopback port, for end-to-end tests.

    with serve(database_url, log_key_file, workers=2) as base_url:
        httpx.get(f"{base_url}/healthz")

The server runs exactly as an operator would start it (``python -m cli serve``), in its own process
group, with the test's environment (so ``CDCER_KDF_PROFILE`` and the like carry over). `serve` waits
until ``GET /healthz`` answers, and on exit stops the server (SIGTERM, then SIGKILL to its process
group if it lingers) and reaps it. If the server dies, the failure carries its output.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
_BIND_ATTEMPTS = 3


class ServerError(AssertionError):
    """The server did not start, or died while the test used it (the message holds its output)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(
    database_url: str,
    log_key_file: Path,
    *,
    workers: int = 1,
    env: Mapping[str, str | None] | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[str]:
    """Run ``cdcer serve`` on `database_url` (a founded registry) signing with `log_key_file`; yield its URL.

    ``env`` adds variables to the server's environment (None removes one). Raises `ServerError` if the
    server does not answer ``/healthz`` within `timeout` seconds, or died before the block ended.
    """
    environment = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    with tempfile.TemporaryFile() as output:
        process, base_url = _start_ready(database_url, log_key_file, workers, environment, output, timeout)
        try:
            yield base_url
        except BaseException as exc:
            if process.poll() is not None:
                exc.add_note(f"cdcer serve died ({_describe(process)}):\n{_read(output)}")
            raise
        finally:
            died = process.poll() is not None
            _stop(process)
        if died:
            raise ServerError(f"cdcer serve died while in use ({_describe(process)}):\n{_read(output)}")


def _start_ready(
    database_url: str, log_key_file: Path, workers: int, env: dict[str, str], output: IO[bytes], timeout: float
) -> tuple[subprocess.Popen[bytes], str]:
    """A started server that answers, and its base URL."""
    for attempt in range(1, _BIND_ATTEMPTS + 1):
        port = free_port()
        process = _start(database_url, log_key_file, port=port, workers=workers, env=env, output=output)
        base_url = f"http://127.0.0.1:{port}"
        try:
            ready = wait_ready(process, base_url, timeout)
        except BaseException as exc:
            _stop(process)
            exc.add_note(f"cdcer serve's output:\n{_read(output)}")
            raise
        if ready:
            return process, base_url
        _stop(process)
        # Another process may have taken the port between free_port() and the server's bind: try another.
        if "already in use" not in _read(output).lower() or attempt == _BIND_ATTEMPTS:
            raise ServerError(f"cdcer serve did not start ({_describe(process)}):\n{_read(output)}")
    raise AssertionError("unreachable")


def _start(
    database_url: str, log_key_file: Path, *, port: int, workers: int, env: dict[str, str], output: IO[bytes]
) -> subprocess.Popen[bytes]:
    output.seek(0)
    output.truncate()
    command = [
        sys.executable,
        "-m",
        "cli",
        "serve",
        "--database",
        database_url,
        "--log-key-file",
        str(log_key_file),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    return subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the workers go with it
    )


def wait_ready(process: subprocess.Popen[bytes], base_url: str, timeout: float) -> bool:
    """True once ``/healthz`` answers 200; False if the process exits first; ServerError on timeout."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return False
            try:
                if client.get(f"{base_url}/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.1)
    raise ServerError(f"cdcer serve did not answer {base_url}/healthz within {timeout:.0f} s")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server (uvicorn stops its workers), then SIGKILL whatever of its group is left; reap it."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the group is the server's own (start_new_session)
    except ProcessLookupError:
        pass  # nothing left of it
    process.wait()


def _describe(process: subprocess.Popen[bytes]) -> str:
    return "still running" if process.returncode is None else f"exit status {process.returncode}"


def _read(output: IO[bytes]) -> str:
    output.flush()
    output.seek(0)
    return output.read().decode("utf-8", errors="replace")
