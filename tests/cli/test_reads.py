"""`cdcer` reads against a real registry after issue 4's story: holdings and history (signed, RFC 9421),
a project, a serial's history, an event with its claim; as JSON and as tables; and their errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import Result

from cli import reads
from cli.console import printable
from ledger.serials import parse_block
from tests.cli.test_console import UNSAFE
from tests.cli.test_writes import Served, StoryIds, run_story, serve_registry
from tests.conftest import Databases


@pytest.fixture(scope="module")
def served(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve_registry(databases, tmp_path_factory.mktemp("cli-reads"))


@pytest.fixture(scope="module")
def story(served: Served) -> StoryIds:
    return run_story(served)


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.stderr + result.stdout
    return json.loads(result.stdout)


def _one_line_error(result: Result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.stderr + result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    for fragment in fragments:
        assert fragment in result.stderr


def test_my_holdings_are_signed_with_my_key(served: Served, story: StoryIds) -> None:
    holdings = _json(served.cdcer("forum-org", "holdings", "--json"))
    assert (holdings["account"], holdings["balance"], holdings["frozen"]) == ("forum-org", 290, False)
    assert sum(block["quantity"] for block in holdings["blocks"]) == 290
    table = served.cdcer("forum-org", "holdings")
    assert table.exit_code == 0
    assert "forum-org: 290 units" in table.stdout


def test_the_authority_reads_any_account(served: Served, story: StoryIds) -> None:
    holdings = _json(served.cdcer("authority", "holdings", "sunpower-pidu", "--json"))
    assert holdings["balance"] == 1150 - 300


def test_another_participants_account_is_refused(served: Served, story: StoryIds) -> None:
    _one_line_error(served.cdcer("forum-org", "holdings", "sunpower-pidu"), 2, "refused: ", "403")


def test_my_history(served: Served, story: StoryIds) -> None:
    history = _json(served.cdcer("sunpower-pidu", "history", "--json"))
    assert [(item["action"], item["direction"]) for item in history["items"]] == [
        ("issued", "in"),
        ("transferred", "out"),
    ]
    table = served.cdcer("sunpower-pidu", "history").stdout
    assert "1150" in table
    assert "300" in table


def test_a_project(served: Served, story: StoryIds) -> None:
    project = _json(served.cdcer(None, "project", "show", story.project, "--json"))
    assert (project["state"], project["owner"]) == ("registered", "sunpower-pidu")
    assert [(r["id"], r["verified"]) for r in project["reports"]] == [(story.report, 1150)]
    table = served.cdcer(None, "project", "show", story.project)
    assert table.exit_code == 0
    assert "Pidu rooftop distributed PV" in table.stdout


def test_a_retired_serials_history(served: Served, story: StoryIds) -> None:
    block = parse_block(story.retirement["blocks"][0])
    serial = f"CDCER-{block.batch_id}-{block.first:06d}"
    found = _json(served.cdcer(None, "serial", serial, "--json"))
    assert [m["action"] for m in found["history"]][:3] == ["issued", "transferred", "retired"]
    assert found["history"][2]["ref"] == story.retirement["retirement_id"]
    assert "retired" in served.cdcer(None, "serial", serial).stdout


def test_an_event_with_its_claim(served: Served, story: StoryIds) -> None:
    shown = _json(served.cdcer(None, "event", "show", story.event, "--json"))
    assert shown["event"]["id"] == story.event
    assert (shown["claim"]["id"], shown["claim"]["units"]) == (story.claim, 10)
    table = served.cdcer(None, "event", "show", story.event)
    assert table.exit_code == 0
    assert story.claim in table.stdout


def test_an_unknown_project_is_one_line(served: Served) -> None:
    _one_line_error(served.cdcer(None, "project", "show", "P9999"), 2, "404")


def test_holdings_need_a_key_file(served: Served, story: StoryIds, tmp_path: Path) -> None:
    result = served.cdcer(None, "holdings", "forum-org", "--key", str(tmp_path / "absent.key"))
    _one_line_error(result, 2, "not found")


# --- what the registry says is printed as inert text ---------------------------------------------------

EVENT_NAME = "Forum [/] [bold red]x\x1b[2K\r✓ verified\nverified: ok"
VENUE = "Hall \x1b]8;;https://evil.example\x07here\x1b]8;;\x07\u202ekc\x9b31m :smile:"
TITLE = "[/]PV\r\n✓ verified"


def assert_inert(out: str) -> None:
    """No control character reached the output, and no line reads as a verdict."""
    assert not set(out) & (set(UNSAFE) - {"\n"}), out
    assert not [line for line in out.splitlines() if line.lstrip(" │┃|").startswith(("verified", "✓"))], out


def test_an_events_strings_print_literally(served: Served, story: StoryIds) -> None:
    today = datetime.now(UTC).date().isoformat()
    registered = served.write(
        "forum-org", "event", "register", "--name", EVENT_NAME, "--kind", "forum", "--venue", VENUE,
        "--start-date", today, "--end-date", today, "--expected-attendees", "10",
    )  # fmt: skip
    event_id = registered["outcome"]["event_id"]
    table = served.cdcer(None, "event", "show", event_id)
    assert table.exit_code == 0, table.stderr + table.stdout
    assert printable(EVENT_NAME) in table.stdout
    assert printable(VENUE) in table.stdout
    assert_inert(table.stdout)
    shown = json.loads(served.cdcer(None, "event", "show", event_id, "--json").stdout)
    assert (shown["event"]["name"], shown["event"]["venue"]) == (EVENT_NAME, VENUE)


def test_a_projects_strings_print_literally(served: Served, story: StoryIds) -> None:
    submitted = served.write(
        "sunpower-pidu", "project", "submit", "--methodology", "CDCER-PV", "--methodology-version", "1.0",
        "--title", TITLE, "--district", "Pidu", "--description", VENUE,
        "--crediting-start", "2022-01-01", "--crediting-end", "2031-12-31", "--estimated-annual-reductions", "5",
    )  # fmt: skip
    project_id = submitted["outcome"]["project_id"]
    table = served.cdcer(None, "project", "show", project_id)
    assert table.exit_code == 0, table.stderr + table.stdout
    assert printable(TITLE) in table.stdout
    assert_inert(table.stdout)
    json_output = served.cdcer(None, "project", "show", project_id, "--json").stdout
    assert json.loads(json_output)["title"] == TITLE
    assert not set(json_output) & (set(UNSAFE) - {"\n"})


# --- a serial's history, page after page -----------------------------------------------------------------


def test_a_serials_history_is_followed_across_pages(
    served: Served, story: StoryIds, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = f"CDCER-{story.batch}-000001-001150"
    pages = []
    params: dict[str, Any] = {"limit": 1}
    while True:
        page = httpx.get(f"{served.url}/v1/serials/{whole}", params=params).json()
        pages.append(page["history"])
        if page["next_cursor"] is None:
            break
        params = {"limit": 1, "cursor": page["next_cursor"]}
    assert len(pages) >= 4  # the registry pages this history one movement a page
    monkeypatch.setattr(reads, "SERIAL_PAGE", 1)
    found = _json(served.cdcer(None, "serial", whole, "--json"))
    assert found["history"] == [move for page in pages for move in page]
    assert [m["action"] for m in found["history"]][:4] == ["issued", "transferred", "retired", "claimed"]
    assert "next_cursor" not in found
    table = served.cdcer(None, "serial", whole)
    assert table.exit_code == 0, table.stderr + table.stdout
    assert "claimed" in table.stdout
