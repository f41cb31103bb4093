"""Exports: every file parses, holds exactly the projection's rows, never mixes retirement and cancellation."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from ledger.ledger import Ledger
from ledger.serials import SerialRange
from ledger.state import State
from ledger.transactions import (
    Cancel,
    CancellationReason,
    MethodologyPublish,
    Opinion,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectSubmit,
    ProjectValidate,
    Retire,
    RetirementPurpose,
    Selection,
)
from registry.app import create_app
from registry.exports import service
from registry.public import repository
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN, SHA

PROBLEM = "application/problem+json"
FORMULA = '=HYPERLINK("http://evil.example","click")'
QUOTED_REASON = 'offset, "quoted"\nand a second line'
CHINESE = "成都天府绿道"
EXPORTS = ("issuances", "retirements", "cancellations")
FORMATS = ("csv", "jsonl")

# Every start of a text that a spreadsheet may run as a formula: the formula characters, the characters
# that fold into them (fullwidth and small forms), and whitespace of each kind (trimmed before the formula
# is looked for), line feeds and carriage returns included.
FORMULA_CHARACTERS = ("=", "+", "-", "@")
FOLDING_INTO_THEM = ("\uff1d", "\uff0b", "\uff0d", "\uff20", "\ufe66", "\ufe62", "\ufe63", "\ufe6b")
WHITESPACE = (
    " ",
    "\t",
    "\n",
    "\r",
    "\r\n",
    "\n\n\n",
    "\x0b",
    "\x0c",
    "\x85",
    "\xa0",
    "\u1680",
    "\u2003",
    "\u2028",
    "\u2029",
    "\u202f",
    "\u205f",
    "\u3000",
    " \t\u3000",
)
FORMULA_STARTS = FORMULA_CHARACTERS + FOLDING_INTO_THEM + WHITESPACE


def formula_after(start: str) -> str:
    """A formula that `start` begins: the start in place of its ``=``, or the whitespace before it."""
    return start + FORMULA if start.isspace() else start + FORMULA[1:]


def code_points(text: str) -> str:
    return " ".join(f"U+{ord(c):04X}" for c in text)


FORMULAS = [pytest.param(formula_after(start), id=code_points(start)) for start in FORMULA_STARTS]


def registered_project_under(story: Story, code: str) -> str:
    """A methodology `code` 1.0 and a registered project under it (the scenario's are all CDCER-PV)."""
    world = story.world
    world.submit(
        "authority",
        MethodologyPublish(code=code, version="1.0", title="Electric buses", sector="transport", document_sha256=SHA),
    )
    details = ProjectDetails(
        methodology_code=code,
        methodology_version="1.0",
        title="Electric buses, Wenjiang",
        district="Wenjiang",
        description="120 electric buses",
        crediting_start=date(2022, 1, 1),
        crediting_end=date(2031, 12, 31),
        estimated_annual_reductions=800,
    )
    pid = str(world.submit("owner", ProjectSubmit(details=details)).details["project_id"])
    world.submit(
        "verifier", ProjectValidate(project_id=pid, opinion=Opinion.POSITIVE, opinion_sha256=SHA, statement="ok")
    )
    world.submit("authority", ProjectDecide(project_id=pid, decision=ProjectDecision.REGISTER, reason="meets it"))
    return pid


@pytest.fixture
def rich_story(story: Story) -> Story:
    """The full story, two more projects (one under a second methodology), retirements of every kind of
    text (a formula, quotes and a line break, Chinese) and cancellations for two reasons."""
    story.full_story()
    world = story.world
    second = world.registered_project()
    world.issued_batch(second, 2024, 100, 90)
    third = registered_project_under(story, "CDCER-BUS")
    world.issued_batch(third, 2024, 60, 50)
    world.transfer("owner", "buyer", 120)
    story.sync(together=True)
    world.advance(timedelta(days=2))
    world.retire("owner", Selection(quantity=5))
    world.submit(
        "buyer",
        Retire(
            selection=Selection(quantity=7),
            beneficiary=FORMULA,
            purpose=RetirementPurpose.INDIVIDUAL,
            reason=QUOTED_REASON,
        ),
    )
    world.cancel("owner", Selection(quantity=3))
    story.sync(together=True)
    world.advance(timedelta(days=2))
    world.cancel("buyer", Selection(quantity=2), CancellationReason.INVALIDATION)
    world.submit(
        "owner",
        Retire(
            selection=Selection(blocks=(str(SerialRange(f"{second}-2024-001", 1, 10)),)),
            beneficiary=CHINESE,
            purpose=RetirementPurpose.ORGANISATION,
            year=2024,
            reason="-2024 footprint",
        ),
    )
    story.sync(together=True)
    return story


@pytest.fixture
def state(rich_story: Story) -> State:
    return rich_story.ledger.state()


def make_client(ledger: Ledger) -> TestClient:
    return TestClient(create_app(Settings(origin=ORIGIN), engine=ledger.engine, ledger=ledger))


@pytest.fixture
def client(rich_story: Story) -> Iterator[TestClient]:
    with make_client(rich_story.ledger) as test_client:
        yield test_client


# --- what the projection tables say each export holds ------------------------------------------------------


def fields(record: Any) -> dict[str, Any]:
    return {
        f.name: list(v) if isinstance(v := getattr(record, f.name), tuple) else v for f in dataclasses.fields(record)
    }


def expected_issuances(state: State) -> list[dict[str, Any]]:
    rows = []
    for batch in state.batches.values():
        project = state.projects[batch.project_id]
        rows.append(
            {
                **fields(batch),
                "methodology_code": project.methodology_code,
                "methodology_version": project.methodology_version,
                "block": f"CDCER-{batch.id}-000001-{batch.quantity:06d}",
            }
        )
    return rows


EXPECTED: dict[str, Callable[[State], list[dict[str, Any]]]] = {
    "issuances": expected_issuances,
    "retirements": lambda state: [fields(r) for r in state.retirements.values()],
    "cancellations": lambda state: [fields(c) for c in state.cancellations.values()],
}


def csv_text(value: Any) -> str:
    """How the CSV export writes a value (null empty, blocks joined by ';', formulas defused with "'")."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return str(value)


# --- reading the files ---------------------------------------------------------------------------------------


def get_export(client: TestClient, name: str, fmt: str, **params: Any) -> httpx.Response:
    response: httpx.Response = client.get(f"/v1/exports/{name}.{fmt}", params=params)
    assert response.status_code == 200, response.text
    return response


def parse_jsonl(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"] == "application/x-ndjson"
    text = response.content.decode("utf-8")
    assert text == "" or text.endswith("\n")
    return [json.loads(line) for line in text.split("\n")[:-1]]


def parse_csv(response: httpx.Response) -> tuple[list[str], list[dict[str, str]]]:
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    text = response.content.decode("utf-8")
    assert text.endswith("\r\n")
    header, *rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert all(len(row) == len(header) for row in rows)
    return header, [dict(zip(header, row, strict=True)) for row in rows]


def exported_ids(client: TestClient, name: str, fmt: str, **params: Any) -> list[str]:
    response = get_export(client, name, fmt, **params)
    if fmt == "jsonl":
        return [row["id"] for row in parse_jsonl(response)]
    return [row["id"] for row in parse_csv(response)[1]]


# --- every export is its projection table --------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPORTS)
def test_jsonl_rows_are_the_projection_rows(client: TestClient, state: State, name: str) -> None:
    rows = parse_jsonl(get_export(client, name, "jsonl"))
    wanted = EXPECTED[name](state)
    assert len(wanted) >= 2, f"the story left {name} nearly empty"
    assert rows == sorted(wanted, key=lambda row: row["id"])
    assert [list(row) for row in rows] == [list(getattr(service, name.upper()).columns)] * len(rows)


@pytest.mark.parametrize("name", EXPORTS)
def test_csv_rows_are_the_projection_rows(client: TestClient, state: State, name: str) -> None:
    header, rows = parse_csv(get_export(client, name, "csv"))
    assert tuple(header) == getattr(service, name.upper()).columns
    wanted = sorted(EXPECTED[name](state), key=lambda row: row["id"])
    assert rows == [{column: csv_text(row[column]) for column in header} for row in wanted]


@pytest.mark.parametrize("name", EXPORTS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_export_is_an_attachment_of_one_snapshot(client: TestClient, rich_story: Story, name: str, fmt: str) -> None:
    response = get_export(client, name, fmt)
    size = rich_story.ledger.size()
    assert response.headers["x-cdcer-log-size"] == str(size)
    assert response.headers["content-disposition"] == f'attachment; filename="cdcer-{name}-{size}.{fmt}"'


def test_issuances_carry_the_methodology_and_the_whole_batch_block(client: TestClient, state: State) -> None:
    rows = {row["id"]: row for row in parse_jsonl(get_export(client, "issuances", "jsonl"))}
    assert {row["methodology_code"] for row in rows.values()} == {"CDCER-PV", "CDCER-BUS"}
    for batch in state.batches.values():
        assert rows[batch.id]["block"] == str(SerialRange(batch.id, 1, batch.quantity))
        assert rows[batch.id]["quantity"] == batch.quantity  # as issued, though units were moved since


def test_text_survives_both_formats(client: TestClient) -> None:
    by_beneficiary = {row["beneficiary"]: row for row in parse_jsonl(get_export(client, "retirements", "jsonl"))}
    assert by_beneficiary[FORMULA]["reason"] == QUOTED_REASON
    assert by_beneficiary[CHINESE]["reason"] == "-2024 footprint"
    _, rows = parse_csv(get_export(client, "retirements", "csv"))
    cells = {row["id"]: row for row in rows}
    assert cells[by_beneficiary[CHINESE]["id"]]["beneficiary"] == CHINESE
    assert cells[by_beneficiary[FORMULA]["id"]]["reason"] == QUOTED_REASON


# --- a byte order mark for Excel, only when asked ------------------------------------------------------------

UTF8_BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("name", EXPORTS)
def test_csv_starts_with_a_byte_order_mark_only_with_bom_true(client: TestClient, name: str) -> None:
    plain = get_export(client, name, "csv").content
    assert not plain.startswith(UTF8_BOM)
    assert plain.startswith(b"id,")
    assert get_export(client, name, "csv", bom="false").content == plain
    marked = get_export(client, name, "csv", bom="true")
    assert marked.headers["content-type"] == "text/csv; charset=utf-8"
    assert marked.content.startswith(UTF8_BOM)
    assert marked.content == UTF8_BOM + plain  # the mark, then the same file
    assert marked.content.count(UTF8_BOM) == 1


def test_chinese_beneficiaries_round_trip_through_a_marked_csv(client: TestClient) -> None:
    response = get_export(client, "retirements", "csv", bom="true")
    assert response.content.startswith(UTF8_BOM)
    text = response.content.decode("utf-8-sig")  # as Excel reads it: the mark says UTF-8, and is not text
    header, *rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    assert header == list(service.RETIREMENTS.columns)  # the first column is "id", not "\ufeffid"
    beneficiaries = [dict(zip(header, row, strict=True))["beneficiary"] for row in rows]
    assert CHINESE in beneficiaries
    assert CHINESE.encode() in response.content
    (by_json,) = [r for r in parse_jsonl(get_export(client, "retirements", "jsonl")) if r["beneficiary"] == CHINESE]
    assert {r[0]: r for r in rows}[by_json["id"]][header.index("beneficiary")] == CHINESE


def test_an_empty_export_with_bom_is_the_mark_and_the_header(ledger: Ledger) -> None:
    with make_client(ledger) as client:
        content = get_export(client, "cancellations", "csv", bom="true").content
    assert content == UTF8_BOM + b"id,holder,quantity,blocks,reason_code,reason,entry,cancelled_time\r\n"


@pytest.mark.parametrize("name", EXPORTS)
def test_json_lines_refuse_a_byte_order_mark(client: TestClient, name: str) -> None:
    response = client.get(f"/v1/exports/{name}.jsonl", params={"bom": "true"})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "content-disposition" not in response.headers
    assert f"/v1/exports/{name}.csv?bom=true" in response.json()["detail"]
    assert not get_export(client, name, "jsonl", bom="false").content.startswith(UTF8_BOM)


def test_an_export_stream_marks_csv_only(rich_story: Story) -> None:
    engine = rich_story.ledger.engine
    with pytest.raises(ValueError, match="CSV only"):
        service.ExportStream(engine, service.RETIREMENTS, service.ExportFormat.JSONL, where=[], bom=True)
    stream = service.ExportStream(engine, service.RETIREMENTS, service.ExportFormat.CSV, where=[], bom=True)
    assert b"".join(stream).startswith(UTF8_BOM + b"id,holder,")


def test_csv_defuses_formulas_and_json_lines_keep_the_exact_text(client: TestClient) -> None:
    """OWASP's CSV-injection advice: a cell a spreadsheet would run as a formula starts with "'"."""
    (formula,) = [r for r in parse_jsonl(get_export(client, "retirements", "jsonl")) if r["beneficiary"] == FORMULA]
    _, rows = parse_csv(get_export(client, "retirements", "csv"))
    (cell,) = [row for row in rows if row["id"] == formula["id"]]
    assert cell["beneficiary"] == "'" + FORMULA
    assert cell["quantity"] == "7"  # numbers are numbers, not defused text
    minus = [row for row in rows if row["reason"].startswith("'-")]
    assert len(minus) == 1
    assert all(not row[column].startswith(FORMULA_STARTS) for row in rows for column in row)


@pytest.mark.parametrize("formula", FORMULAS)
def test_csv_defuses_every_formula_start_and_json_lines_keep_it(story: Story, formula: str) -> None:
    """A beneficiary and reasons that a spreadsheet would run, signed into the log and exported over HTTP."""
    world = story.world
    world.issued_batch(world.registered_project(), 2023, 100, 90)
    world.submit(
        "owner",
        Retire(
            selection=Selection(quantity=5),
            beneficiary=formula,
            purpose=RetirementPurpose.INDIVIDUAL,
            reason=formula,
        ),
    )
    world.submit(
        "authority",
        Cancel(
            holder="owner", selection=Selection(quantity=3), reason_code=CancellationReason.CORRECTION, reason=formula
        ),
    )
    story.sync(together=True)
    with make_client(story.ledger) as client:
        (retirement,) = parse_jsonl(get_export(client, "retirements", "jsonl"))
        (cancellation,) = parse_jsonl(get_export(client, "cancellations", "jsonl"))
        _, (retirement_cells,) = parse_csv(get_export(client, "retirements", "csv"))
        _, (cancellation_cells,) = parse_csv(get_export(client, "cancellations", "csv"))
    assert (retirement["beneficiary"], retirement["reason"], cancellation["reason"]) == (formula,) * 3
    defused = "'" + formula
    assert (retirement_cells["beneficiary"], retirement_cells["reason"], cancellation_cells["reason"]) == (defused,) * 3
    assert (retirement_cells["quantity"], cancellation_cells["quantity"]) == ("5", "3")


BLOCKS = ["CDCER-P0001-2023-001-000001-000002", "CDCER-P0001-2023-001-000003-000003"]
CELLS = [
    *[
        pytest.param(formula_after(start), "'" + formula_after(start), id=code_points(start))
        for start in FORMULA_STARTS
    ],
    *[
        pytest.param("a" + formula_after(start), "a" + formula_after(start), id="a " + code_points(start))
        for start in FORMULA_STARTS
    ],
    pytest.param("=", "'=", id="a lone formula character"),
    pytest.param(" ", "' ", id="a lone space"),
    pytest.param(" Chengdu", "' Chengdu", id="any leading whitespace"),
    pytest.param("-2024 footprint", "'-2024 footprint", id="a leading hyphen"),
    pytest.param("Chengdu", "Chengdu", id="a word"),
    pytest.param(CHINESE, CHINESE, id="Chinese"),
    pytest.param("\uff21\uff22\uff23", "\uff21\uff22\uff23", id="fullwidth letters"),
    pytest.param("Chengdu \n", "Chengdu \n", id="trailing whitespace"),
    pytest.param("1-2=3", "1-2=3", id="formula characters inside"),
    pytest.param("'=1", "'=1", id="already quoted"),
    pytest.param("2024-01-01T00:00:00.000000Z", "2024-01-01T00:00:00.000000Z", id="a time"),
    pytest.param("", "", id="empty text"),
    pytest.param(None, "", id="null"),
    pytest.param(0, "0", id="zero"),
    pytest.param(1150, "1150", id="an integer"),
    pytest.param(-3, "-3", id="a negative integer is a number, not a formula"),
    pytest.param(BLOCKS, ";".join(BLOCKS), id="serial blocks"),
    pytest.param(["-1", "x"], "'-1;x", id="a list joined, then defused"),
]


@pytest.mark.parametrize(("value", "cell"), CELLS)
def test_csv_cell_defuses_formula_starts_and_leaves_the_rest(value: Any, cell: str) -> None:
    assert service.csv_cell(value) == cell
    if isinstance(value, str):
        assert service.spreadsheet_safe(value) == cell


# --- retirement and cancellation are never mixed -------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_retirements_and_cancellations_are_never_mixed(client: TestClient, state: State, fmt: str) -> None:
    retired = exported_ids(client, "retirements", fmt)
    cancelled = exported_ids(client, "cancellations", fmt)
    assert set(retired) == set(state.retirements)
    assert set(cancelled) == set(state.cancellations)
    assert not set(retired) & set(cancelled)
    retirement_header, _ = parse_csv(get_export(client, "retirements", "csv"))
    cancellation_header, _ = parse_csv(get_export(client, "cancellations", "csv"))
    assert {"purpose", "beneficiary"} <= set(retirement_header)
    assert "reason_code" not in retirement_header
    assert "reason_code" in cancellation_header
    assert not {"purpose", "beneficiary", "claim_id"} & set(cancellation_header)
    retired_blocks = {b for row in parse_jsonl(get_export(client, "retirements", "jsonl")) for b in row["blocks"]}
    cancelled_blocks = {b for row in parse_jsonl(get_export(client, "cancellations", "jsonl")) for b in row["blocks"]}
    assert retired_blocks
    assert cancelled_blocks
    assert not retired_blocks & cancelled_blocks


# --- filters ---------------------------------------------------------------------------------------------------


FILTERS: list[tuple[str, dict[str, Any], Callable[[State, dict[str, Any]], bool]]] = [
    ("issuances", {"project": "P0002"}, lambda s, r: r["project_id"] == "P0002"),
    ("issuances", {"methodology": "CDCER-BUS"}, lambda s, r: r["methodology_code"] == "CDCER-BUS"),
    ("issuances", {"methodology": "CDCER-PV", "vintage": 2024}, lambda s, r: r["id"] == "P0002-2024-001"),
    ("issuances", {"vintage": 2023}, lambda s, r: r["vintage"] == 2023),
    ("issuances", {"methodology": "NOPE"}, lambda s, r: False),
    ("retirements", {"holder": "buyer"}, lambda s, r: r["holder"] == "buyer"),
    ("retirements", {"purpose": "organisation"}, lambda s, r: r["purpose"] == "organisation"),
    ("retirements", {"event": "E0001"}, lambda s, r: r["event_id"] == "E0001"),
    ("retirements", {"project": "P0002"}, lambda s, r: any(b.startswith("CDCER-P0002-") for b in r["blocks"])),
    ("retirements", {"project": "P0001", "purpose": "voluntary"}, lambda s, r: r["purpose"] == "voluntary"),
    ("cancellations", {"holder": "owner"}, lambda s, r: r["holder"] == "owner"),
    ("cancellations", {"reason_code": "invalidation"}, lambda s, r: r["reason_code"] == "invalidation"),
    ("cancellations", {"project": "P0002"}, lambda s, r: False),
]


@pytest.mark.parametrize(("name", "params", "keep"), FILTERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_filters_narrow_the_export(
    client: TestClient,
    state: State,
    fmt: str,
    name: str,
    params: dict[str, Any],
    keep: Callable[[State, dict[str, Any]], bool],
) -> None:
    wanted = sorted(row["id"] for row in EXPECTED[name](state) if keep(state, row))
    assert exported_ids(client, name, fmt, **params) == wanted


def test_filters_keep_some_and_drop_some(client: TestClient, state: State) -> None:
    for name, params, keep in FILTERS:
        kept = [row for row in EXPECTED[name](state) if keep(state, row)]
        if kept:
            assert len(kept) < len(EXPECTED[name](state)), (name, params)


@pytest.mark.parametrize(("name", "column"), [("retirements", "retired_time"), ("issuances", "issued_time")])
def test_exports_between_times(client: TestClient, state: State, name: str, column: str) -> None:
    rows = EXPECTED[name](state)
    times = sorted({row[column] for row in rows})
    assert len(times) >= 2
    middle = times[len(times) // 2]
    since = exported_ids(client, name, "jsonl", since=middle)
    until = exported_ids(client, name, "jsonl", until=middle)
    assert since == sorted(row["id"] for row in rows if row[column] >= middle)
    assert until == sorted(row["id"] for row in rows if row[column] < middle)
    assert since
    assert until
    assert exported_ids(client, "cancellations", "csv", since="2000-01-01", until="2000-01-02") == []


# --- bad requests are problems, before any byte of a file ---------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "status", "word"),
    [
        ("/v1/exports/issuances.csv", {"vintage": "abc"}, 422, "vintage"),
        ("/v1/exports/issuances.jsonl", {"since": "2025-02-01", "until": "2025-01-01"}, 400, "since"),
        ("/v1/exports/retirements.csv", {"purpose": "gift"}, 422, "purpose"),
        ("/v1/exports/retirements.jsonl", {"since": "yesterday"}, 422, "since"),
        ("/v1/exports/cancellations.csv", {"reason_code": "oops"}, 422, "reason_code"),
        ("/v1/exports/cancellations.jsonl", {"until": "2025-13-01"}, 422, "until"),
        ("/v1/exports/retirements.xml", {}, 422, "format"),
        ("/v1/exports/retirements.csv", {"bom": "maybe"}, 422, "bom"),
        ("/v1/exports/retirements.csv", {"purpos": "event"}, 422, "unknown query parameter 'purpos'"),
        ("/v1/exports/issuances.jsonl", {"state": "registered"}, 422, "unknown query parameter 'state'"),
    ],
)
def test_bad_filter_values_are_problems(
    client: TestClient, path: str, params: dict[str, Any], status: int, word: str
) -> None:
    response = client.get(path, params=params)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert "content-disposition" not in response.headers
    problem = response.json()
    assert problem["status"] == status
    assert word in problem["detail"], problem


def test_an_unknown_export_is_not_found(client: TestClient) -> None:
    response = client.get("/v1/exports/transfers.csv")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM


# --- one snapshot per export, page after page -----------------------------------------------------------------


def read_all(stream: service.ExportStream) -> list[dict[str, Any]]:
    return [json.loads(line) for line in b"".join(stream).decode().splitlines()]


def test_an_export_is_one_snapshot_however_long_it_streams(rich_story: Story, state: State) -> None:
    """Rows appended while a file streams are not in it, though it reads one row per query."""
    engine = rich_story.ledger.engine
    size = rich_story.ledger.size()
    retired = sorted(state.retirements)  # the ledger's state moves on with the appends below
    stream = service.ExportStream(engine, service.RETIREMENTS, service.ExportFormat.JSONL, where=[], page_size=1)
    chunks = iter(stream)
    first = next(chunks)  # the first retirement: the snapshot is open and has been read from
    rich_story.world.retire("owner", Selection(quantity=1))
    rich_story.world.cancel("owner", Selection(quantity=1))
    rich_story.sync()
    assert rich_story.ledger.size() == size + 2
    rows = [json.loads(line) for line in (first + b"".join(chunks)).decode().splitlines()]
    assert stream.log_size == size
    assert [row["id"] for row in rows] == retired
    later = service.ExportStream(engine, service.RETIREMENTS, service.ExportFormat.JSONL, where=[], page_size=1)
    assert len(read_all(later)) == len(retired) + 1
    assert later.log_size == size + 2


@pytest.mark.parametrize("page_size", [1, 2, 3, 1000])
def test_pages_neither_drop_nor_repeat_rows(rich_story: Story, page_size: int) -> None:
    engine = rich_story.ledger.engine
    where = repository.equal("retirements", holder="owner")
    rows = read_all(
        service.ExportStream(engine, service.RETIREMENTS, service.ExportFormat.JSONL, where=where, page_size=page_size)
    )
    whole = read_all(service.ExportStream(engine, service.RETIREMENTS, service.ExportFormat.JSONL, where=where))
    assert rows == whole
    assert len(rows) == 2
    issuances = read_all(
        service.ExportStream(engine, service.ISSUANCES, service.ExportFormat.JSONL, where=[], page_size=page_size)
    )
    assert [row["id"] for row in issuances] == ["P0001-2023-001", "P0002-2024-001", "P0003-2024-001"]


def test_an_export_holds_one_connection_until_read_or_closed(rich_story: Story) -> None:
    engine = rich_story.ledger.engine
    idle = engine.pool.checkedout()  # type: ignore[attr-defined]  # QueuePool, on both engines
    unread = service.ExportStream(engine, service.CANCELLATIONS, service.ExportFormat.CSV, where=[])
    assert engine.pool.checkedout() == idle + 1  # type: ignore[attr-defined]
    unread.close()
    unread.close()
    assert engine.pool.checkedout() == idle  # type: ignore[attr-defined]
    assert list(unread) == []
    read = service.ExportStream(engine, service.CANCELLATIONS, service.ExportFormat.CSV, where=[])
    assert b"".join(read).startswith(b"id,holder,quantity,blocks,reason_code,reason,entry,cancelled_time\r\n")
    assert engine.pool.checkedout() == idle  # type: ignore[attr-defined]


# --- an empty registry ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", EXPORTS)
def test_an_empty_registry_exports_a_header_or_nothing(ledger: Ledger, name: str) -> None:
    with make_client(ledger) as client:
        header, rows = parse_csv(get_export(client, name, "csv"))
        assert tuple(header) == getattr(service, name.upper()).columns
        assert rows == []
        assert parse_jsonl(get_export(client, name, "jsonl")) == []


# --- the OpenAPI document ---------------------------------------------------------------------------------------


def test_openapi_declares_the_formats_and_the_problems(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for name in EXPORTS:
        operation = paths[f"/v1/exports/{name}.{{format}}"]["get"]
        responses = operation["responses"]
        assert set(responses["200"]["content"]) == {"text/csv", "application/x-ndjson"}
        for status in ("400", "422", "503"):
            assert set(responses[status]["content"]) == {PROBLEM}, (name, status)
        (fmt,) = [p for p in operation["parameters"] if p["name"] == "format"]
        assert fmt["in"] == "path"
        (bom,) = [p for p in operation["parameters"] if p["name"] == "bom"]
        assert bom["in"] == "query"
        assert bom["schema"]["type"] == "boolean"
        assert bom["schema"]["default"] is False
        assert "byte order mark" in bom["description"]
        assert "Excel" in bom["description"]


def test_an_unreadable_database_is_a_problem_not_a_broken_file(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path}/missing/dir/registry.db")
    with TestClient(create_app(settings)) as client:
        response = client.get("/v1/exports/retirements.csv")
    assert response.status_code == 503
    assert response.headers["content-type"] == PROBLEM
    assert "content-disposition" not in response.headers
    assert response.json()["type"].endswith("/storage-unavailable")
