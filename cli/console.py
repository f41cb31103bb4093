"""Shared CLI plumbing: the consoles, exit codes, one-line errors, and inert text for what others wrote.

Every string a registry, a certificate or a log carries (a beneficiary, an event's name, a problem's
detail) was written by someone else, so it is printed as inert text: no Rich markup, no emoji codes, and
every character that could move the cursor, clear a line, start a new one or reorder what follows (C0
and C1 controls, DEL, Unicode line separators and bidirectional controls) shown as a visible escape
(``\\x1b``, ``\\n``, ``\\u202e``). A value can then change nothing but its own cell: it cannot end a table
row, rewrite an earlier line, or print a line of its own such as a fake ``verified:``.

Under ``--json`` (`json_option`, whose callback marks the running command as a JSON one) every failure is
also one JSON object on stdout, ``{"error": {"message": ..., "exit_code": N, ...}}``, beside whatever the
command had to report: `fail` prints it, and `JsonErrorsGroup` (the root command's class) does the same for
the usage errors the option parser finds. The human line stays on stderr.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer._click.exceptions import ClickException  # what Typer's (vendored) option parser raises
from typer.core import TyperGroup

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
    """The stdout console: no markup, emoji codes or highlighting; piped output keeps long values whole.

    On a terminal, or with ``COLUMNS`` set, tables fit that width (long cells wrap, never cut short).
    """
    # Piped or captured output keeps long values (keys, hashes, serial blocks) on one line, whole.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 1000
    return Console(soft_wrap=True, markup=False, emoji=False, highlight=False, width=width)


def table(*, title: str | None = None, columns: Sequence[str] = (), **options: Any) -> Table:
    """A table whose title and headers are inert text (add rows with `add_row`)."""
    shown = Table(title=None if title is None else plain(title), **options)
    for column in columns:
        shown.add_column(plain(column), overflow="fold")
    return shown


def add_row(shown: Table, *cells: object) -> None:
    """Add a row of inert text cells (None is an empty cell; a `Text` is taken as already inert).

    Columns the table lacks are added folding, so a long id or serial wraps instead of being cut short.
    """
    while len(shown.columns) < len(cells):
        shown.add_column(overflow="fold")
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


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 entry``, ``2 entries``, ``1,200 units``: the count (thousands separated) and the noun agreeing."""
    if plural_form is None:
        if singular.endswith("y") and singular[-2:-1] not in ("a", "e", "o", "u"):
            plural_form = singular[:-1] + "ies"
        elif singular.endswith(("s", "sh", "ch", "x")):
            plural_form = singular + "es"
        else:
            plural_form = singular + "s"
    return f"{count:,} {singular if count == 1 else plural_form}"


# --- --json and failures ----------------------------------------------------------------------------

_json_mode: ContextVar[bool] = ContextVar("cdcer_json_mode", default=False)
_json_asked: ContextVar[bool] = ContextVar("cdcer_json_asked", default=False)


def json_mode() -> bool:
    """Whether the running command was given ``--json`` (its failures are then JSON on stdout too)."""
    return _json_mode.get()


def _set_json_mode(value: bool) -> bool:
    _json_mode.set(bool(value))
    return value


def json_option(help: str = "Print the result as JSON.") -> Any:
    """The ``--json`` option of a command (eager, so its mode is known before any other option fails)."""
    return typer.Option("--json", help=help, callback=_set_json_mode, is_eager=True)


def error_json(message: str, code: int, *, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``error`` object of a failure under ``--json``: its message, exit code and machine-readable fields."""
    return {"message": message, "exit_code": code, **(details or {})}


def fail(
    message: str,
    code: int,
    *,
    details: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
) -> NoReturn:
    """Print a one-line error on stderr and exit with ``code``; what it quotes is shown as inert text.

    Under ``--json`` it first prints one JSON object on stdout: ``report`` (what the command can still say,
    e.g. an audit's findings) with ``"error": {"message", "exit_code", **details}`` added.
    """
    if json_mode():
        typer.echo(json_text({**(report or {}), "error": error_json(message, code, details=details)}))
    err.print(f"error: {printable(message)}", markup=False, highlight=False, emoji=False)
    raise typer.Exit(code)


class JsonErrorsGroup(TyperGroup):
    """The root command: each run starts out of JSON mode, and a usage error under ``--json`` is JSON too.

    The option parser's own errors (a missing or malformed option, an unknown one) never reach `fail`; they
    are printed here as `fail` would, then Typer shows its usual message on stderr. An error found before
    the ``--json`` option's callback ran (an unknown option) counts as JSON when ``--json`` is among the
    arguments.
    """

    def main(self, args: Sequence[str] | None = None, *rest: Any, **options: Any) -> Any:
        given = list(sys.argv[1:] if args is None else args)
        words = given[: given.index("--")] if "--" in given else given
        mode, asked = _json_mode.set(False), _json_asked.set("--json" in words)
        try:
            return super().main(given, *rest, **options)
        finally:
            _json_mode.reset(mode)
            _json_asked.reset(asked)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ClickException as exc:
            if json_mode() or _json_asked.get():
                error = error_json(exc.format_message(), exc.exit_code)
                typer.echo(json_text({"error": error}))
            raise
