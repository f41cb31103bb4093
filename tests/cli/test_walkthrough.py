"""The README's five-minute walkthrough runs as written, in bash, against a real `cdcer serve`.

The shell blocks of the walkthrough are taken from README.md itself, so the README cannot drift from what
works. The first block (init, then serve) runs as the "first terminal": its serve line gets a free port
instead of 8000, so tests can run side by side, and runs until the test ends. The other blocks run as the
"second terminal" in one bash with ``set -euo pipefail``: every command must succeed, with the port changed
the same way. The test runs in an empty folder whose ``.venv`` is this suite's virtual environment.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from tests.registry.live import REPO_ROOT, ServerError, free_port, wait_ready

README = REPO_ROOT / "README.md"
SECTION = "## A five-minute walkthrough"
DEFAULT_ADDRESS = "127.0.0.1:8000"


def walkthrough_blocks(section: str = SECTION) -> list[str]:
    """The ```sh blocks of a README section (by default the walkthrough), in order."""
    text = README.read_text(encoding="utf-8")
    start = text.index(section)
    end = text.find("\n## ", start + len(section))
    part = text[start : end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```$", part, flags=re.MULTILINE | re.DOTALL)


def test_the_readme_has_the_walkthrough_blocks() -> None:
    blocks = walkthrough_blocks()
    assert len(blocks) >= 2
    assert "cdcer serve" in blocks[0]
    assert "cdcer certificate verify" in "".join(blocks[1:])


@pytest.fixture
def first_terminal(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """Block 1 run in `tmp_path`, its server on a free port; yields the folder and the registry's URL."""
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    port = free_port()
    script = walkthrough_blocks()[0]
    serve_line = next(line for line in script.splitlines() if "cdcer serve" in line)
    script = script.replace(serve_line, f"exec {serve_line} --port {port}")
    output = tmp_path / "first-terminal.log"
    with output.open("wb") as log:
        server = _start(["bash", "-euo", "pipefail", "-c", script], tmp_path, log)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            served = wait_ready(server, url, 60)
        except ServerError as exc:
            exc.add_note(output.read_text(errors="replace"))
            raise
        if not served:
            pytest.fail(f"the first terminal's block stopped:\n{output.read_text(errors='replace')}")
        yield tmp_path, url
    finally:
        _stop(server)


def test_the_walkthrough_runs_as_written(first_terminal: tuple[Path, str]) -> None:
    folder, url = first_terminal
    script = "\n".join(walkthrough_blocks()[1:]).replace(DEFAULT_ADDRESS, url.removeprefix("http://"))
    done = _bash(script, folder)
    assert done.returncode == 0, f"the walkthrough failed:\n{done.stdout}\n{done.stderr}"
    assert "verified" in done.stdout.lower()
    # What the walkthrough says happened did happen, as the public registry tells it.
    claims = httpx.get(f"{url}/v1/claims").json()["items"]
    assert [(claim["id"], claim["event_id"], claim["footprint_kg"]) for claim in claims] == [("CN0001", "E0001", 9600)]
    certificate = json.loads((folder / "CN0001.json").read_text(encoding="utf-8"))
    assert (certificate["kind"], certificate["id"]) == ("claim", "CN0001")
    retirements = httpx.get(f"{url}/v1/retirements").json()["items"]
    assert [(retirement["quantity"], retirement["claim_id"]) for retirement in retirements] == [(10, "CN0001")]
    assert (folder / "registry.checkpoint").read_text(encoding="utf-8").startswith("registry.example/cdcer\n")


def _start(command: list[str], folder: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`command` in `folder`, in its own session (so `_stop` ends its children too), output to `log`."""
    return subprocess.Popen(
        command,
        cwd=folder,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _bash(script: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """`script` run in `folder` by ``bash -euo pipefail``: every command must succeed."""
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env=_environment(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _stop(server: subprocess.Popen[bytes]) -> None:
    """Stop a server started in its own session, and its children: SIGTERM, then SIGKILL if it lingers."""
    if server.poll() is None:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def _environment() -> dict[str, str]:
    """The test's environment without any CDCER_ setting but the cheap key-file profile."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("CDCER_")}
    environment["CDCER_KDF_PROFILE"] = os.environ.get("CDCER_KDF_PROFILE", "interactive")
    return environment


POINTS_SECTION = "## The public path in five minutes"


def test_the_points_walkthrough_runs_as_written_on_the_make_run_registry(tmp_path: Path) -> None:
    # The registry `make run` makes (its init and demo lines, taken from the Makefile), served on a free port.
    (tmp_path / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    makefile = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    setup = [
        re.sub(r"^.*\|\| \$\(BIN\)/", ".venv/bin/", line.strip())
        for line in makefile.splitlines()
        if "|| $(BIN)/cdcer" in line
    ]
    assert [line.split()[1] for line in setup] == ["init", "demo"], setup
    made = _bash("\n".join(setup), tmp_path)
    assert made.returncode == 0, f"make run's registry:\n{made.stdout}\n{made.stderr}"
    port = free_port()
    with (tmp_path / "serve.log").open("wb") as log:
        server = _start([".venv/bin/cdcer", "serve", "--port", str(port)], tmp_path, log)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_ready(server, url, 60), (tmp_path / "serve.log").read_text(errors="replace")
        (block,) = walkthrough_blocks(POINTS_SECTION)
        done = _bash(block.replace(DEFAULT_ADDRESS, url.removeprefix("http://")), tmp_path)
        assert done.returncode == 0, f"the points walkthrough failed:\n{done.stdout}\n{done.stderr}"
        assert "verified: record 0 of batch bike-" in done.stdout
        assert "points entries (attestations, redemptions, expiries, clawbacks) checked up to" in done.stderr
        # What it says happened did happen: the batch is public, the order fulfilled.
        (bundle,) = (tmp_path / "proofs").glob("*.json")
        batch = bundle.name.rsplit("-", 1)[0]
        public = httpx.get(f"{url}/v1/points/batches/{batch}").json()
        assert (public["count"], public["total_quantity"], public["points_awarded"]) == (1, 25, 2_000)
        assert "account_id" not in json.dumps(public)
        offer = httpx.get(f"{url}/v1/offers/peoples-park-teahouse-2").json()
        assert offer["price_points"] == 300
    finally:
        _stop(server)
