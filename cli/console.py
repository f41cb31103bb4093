"""Shared CLI plumbing: the consoles, exit codes, one-line errors, and inert text for what others wrote.

Every string a registry, a certificate or a log carries (a beneficiary, an event's name, a problem's
detail) was written by someone else, so it is printed as inert text: no Rich markup, no emoji codes, and
every character that could move the cursor, clear a line, start a new one or reorder what follows (C0
and C1 controls, DEL, Unicode line separators and bidirectional controls) shown as a visible escape
(``\\x1b``, ``\\n``, ``\\u202e``). A value can then change nothing but its own cell: it cannot end a table
row, rewrite an earlier line, or print a line of its own such as a fake ``verified:``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

EXIT_OK, EXIT_INTEGRITY, EXIT_USAGE, EXIT_OPERATIONAL = 0, 1, 2, 3

err = Console(stderr=True, soft_wrap=True)

# C0, DEL and C1; the Arabic letter mark, LRM and RLM; the line and paragraph separators; the bidi
# embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Of those, what JSON leaves raw inside a string (it escapes only U+0000-U+001F).
_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(value: object) -> str:
    """`value` as text that prints as itself: each control, separator or bidi character as an escape."""
    return _UNSAFE.sub(_escape, str(value))


def plain(value: object) -> Text:
    """`value` as a Rich `Text`: never read as markup, its control characters escaped (see `printable`)."""
    return Text(printable(value))


def stdout() -> Console:
    """The stdout console: no markup, emoji codes or highlighting; piped output keeps long values whole."""
    # Piped or captured output keeps long values (keys, hashes, serial blocks) on one line, whole.
    width = None if sys.stdout.isatty() else 1000
    return Console(soft_wrap=True, markup=False, emoji=False, highlight=False, width=width)


def table(*, title: str | None = None, columns: Sequence[str] = (), **options: Any) -> Table:
    """A table whose title and headers are inert text (add rows with `add_row`)."""
    shown = Table(title=None if title is None else plain(title), **options)
    for column in columns:
        shown.add_column(plain(column), overflow="fold")
    return shown


def add_row(shown: Table, *cells: object) -> None:
    """Add a row of inert text cells (None is an empty cell; a `Text` is taken as already inert)."""
    shown.add_row(*(cell if isinstance(cell, Text) else plain("" if cell is None else cell) for cell in cells))


def echo(line: object, *, to_stderr: bool = False) -> None:
    """Print one line of text whose parts may come from others, as inert text."""
    typer.echo(printable(line), err=to_stderr)


def json_text(value: Any) -> str:
    """`value` as indented JSON, non-ASCII text kept; the controls JSON leaves raw escaped as ``\\uXXXX``.

    Still exactly the same JSON value: those characters only occur inside strings, where the escape is
    equivalent (JSON itself escapes U+0000-U+001F).
    """
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return _UNSAFE_IN_JSON.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def fail(message: str, code: int) -> NoReturn:
    """Print a one-line error on stderr and exit with ``code``; what it quotes is shown as inert text."""
    err.print(f"error: {printable(message)}", markup=False, highlight=False, emoji=False)
    raise typer.Exit(code)
