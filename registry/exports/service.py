"""The exports' rules: which columns each export has, how a row is written, and one snapshot per export.

An export reads its table in keyset pages (the public registry's `repository.page`) inside ONE read
transaction, held from the first row to the last, so a file is the registry at one log size however long
it takes to download and however many transactions are appended meanwhile.

Formats:

- CSV (RFC 4180): UTF-8, a header row, CRLF line ends, fields quoted when needed; an empty field is a
  null, a list (the serial blocks) is written as its items joined by ``;``. A text field that begins with
  ``=``, ``+``, ``-``, ``@``, a character that folds to one of them (the fullwidth ``＝＋－＠``, the small
  ``﹦﹢﹣﹫``) or any whitespace (space, tab, CR, LF, NBSP, the ideographic space...) is prefixed with
  ``'`` (OWASP's advice against CSV injection: a spreadsheet would otherwise run it as a formula, after
  folding the character or trimming the whitespace); JSON Lines carries the exact text.
- JSON Lines: one JSON object per line, UTF-8, ``\\n`` line ends; lists stay lists, nulls stay null.

A CSV file may start with a UTF-8 byte order mark (U+FEFF, the bytes EF BB BF) when asked: Excel reads a
CSV without one in the machine's legacy code page (GBK on a Chinese Windows), so Chinese text shows as
mojibake. It is off by default (other readers take the mark for part of the first column's name), and
never in JSON Lines, where RFC 8259 forbids it.
"""

from __future__ import annotations

import csv
import io
import json
import unicodedata
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Engine

from ledger.serials import SerialRange
from ledger.storage import store
from ledger.storage.engine import read_transaction
from registry.public import repository
from registry.public.repository import Condition, Row

PAGE_SIZE = 1000
"""Rows read per query; the stream holds at most one page in memory."""

BOM = "\ufeff".encode()
"""U+FEFF in UTF-8: the mark Excel looks for to read a CSV file as UTF-8."""

BLOCK_SEPARATOR = ";"
FORMULA_STARTS = ("=", "+", "-", "@")
"""The characters a spreadsheet reads as the start of a formula."""


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"

    @property
    def media_type(self) -> str:
        return "text/csv; charset=utf-8" if self is ExportFormat.CSV else "application/x-ndjson"


Shaper = Callable[[Connection, list[Row]], list[Row]]


def _as_stored(_conn: Connection, rows: list[Row]) -> list[Row]:
    return rows


@dataclass(frozen=True, slots=True)
class Export:
    """One kind of export: the projection table it reads, its columns, and how a row becomes a record."""

    name: str
    table: str
    columns: tuple[str, ...]
    shape: Shaper = field(default=_as_stored)


def _issuances(conn: Connection, rows: list[Row]) -> list[Row]:
    """Batches with their project's methodology and the serial block of the whole batch."""
    methodologies: dict[str, tuple[str | None, str | None]] = {}
    records = []
    for row in rows:
        pid = row["project_id"]
        if pid not in methodologies:
            project = repository.get(conn, "projects", [pid])
            # A batch without its project is a broken projection: the audit reports it, the export shows it.
            if project is None:
                methodologies[pid] = (None, None)
            else:
                methodologies[pid] = (project["methodology_code"], project["methodology_version"])
        code, version = methodologies[pid]
        block = str(SerialRange(row["id"], 1, row["quantity"]))
        records.append({**row, "methodology_code": code, "methodology_version": version, "block": block})
    return records


ISSUANCES = Export(
    "issuances",
    "batches",
    (
        "id",
        "project_id",
        "methodology_code",
        "methodology_version",
        "vintage",
        "number",
        "quantity",
        "block",
        "owner",
        "report_id",
        "sequence",
        "issued_at",
        "issued_time",
    ),
    _issuances,
)
RETIREMENTS = Export(
    "retirements",
    "retirements",
    (
        "id",
        "holder",
        "quantity",
        "blocks",
        "beneficiary",
        "purpose",
        "event_id",
        "year",
        "reason",
        "claim_id",
        "entry",
        "retired_time",
    ),
)
CANCELLATIONS = Export(
    "cancellations",
    "cancellations",
    ("id", "holder", "quantity", "blocks", "reason_code", "reason", "entry", "cancelled_time"),
)


def spreadsheet_safe(text: str) -> str:
    """`text`, prefixed with ``'`` when a spreadsheet would read it as a formula (OWASP CSV injection).

    That is when it starts with a formula character; with one that Unicode compatibility normalisation
    (NFKC) folds into a formula character, such as the fullwidth ``＝`` an input method types, which a
    spreadsheet may read as ``=``; or with whitespace of any kind, which a spreadsheet may trim before it
    looks for a formula (a line feed, a no-break or an ideographic space, then ``=``...).
    """
    first = text[:1]
    if first.isspace() or unicodedata.normalize("NFKC", first).startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_cell(value: Any) -> str:
    """One CSV field: empty for null, decimal for an integer, ``;``-joined for a list, guarded text."""
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return spreadsheet_safe(BLOCK_SEPARATOR.join(str(item) for item in value))
    return spreadsheet_safe(str(value))


def encode(export: Export, fmt: ExportFormat, records: Sequence[Row], *, header: bool = False) -> bytes:
    """Records (and, for CSV when asked, the header row first) as bytes of the export's format."""
    if fmt is ExportFormat.JSONL:
        return "".join(
            json.dumps({c: record[c] for c in export.columns}, ensure_ascii=False, separators=(",", ":")) + "\n"
            for record in records
        ).encode()
    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(export.columns)
    writer.writerows([csv_cell(record[c]) for c in export.columns] for record in records)
    return out.getvalue().encode()


class ExportStream:
    """One export being streamed: its read transaction opens here and closes after the last row.

    Opening reads the log size (the snapshot the file shows) so a database that cannot be read fails
    before any byte is sent. Iterate once; `close` ends the transaction early (idempotent). With `bom`
    (CSV only) the file starts with the UTF-8 byte order mark.
    """

    def __init__(
        self,
        engine: Engine,
        export: Export,
        fmt: ExportFormat,
        *,
        where: Sequence[Condition],
        page_size: int = PAGE_SIZE,
        bom: bool = False,
    ) -> None:
        if bom and fmt is not ExportFormat.CSV:
            raise ValueError("a byte order mark is for CSV only")
        self.export = export
        self.format = fmt
        self.bom = bom
        self.log_size = 0
        self._chunks = self._read(engine, list(where), page_size)
        self._first = next(self._chunks)  # runs up to the first yield: the snapshot is open

    def _read(self, engine: Engine, where: list[Condition], page_size: int) -> Generator[bytes]:
        export, table = self.export, self.export.table
        keys = repository.key_columns(table)
        with read_transaction(engine) as conn:
            self.log_size = store.log_size(conn)
            # The first page is read before the first byte: a filter the database refuses (PostgreSQL text
            # cannot hold NUL) is then a problem response, not a file cut short.
            rows = repository.page(conn, table, where=where, after=None, limit=page_size)
            yield (BOM if self.bom else b"") + encode(export, self.format, [], header=True)
            while True:
                if rows:
                    yield encode(export, self.format, export.shape(conn, rows))
                if len(rows) < page_size:
                    return
                after = [rows[-1][c] for c in keys]
                rows = repository.page(conn, table, where=where, after=after, limit=page_size)

    def __iter__(self) -> Iterator[bytes]:
        if self._first:
            yield self._first
        yield from self._chunks

    def close(self) -> None:
        self._first = b""
        self._chunks.close()

    @property
    def filename(self) -> str:
        """``cdcer-<export>-<log size>.<format>``: which registry state the file shows is in its name."""
        return f"cdcer-{self.export.name}-{self.log_size}.{self.format.value}"
