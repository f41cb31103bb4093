"""`cli.console`: what others wrote prints as inert text (no markup, no control characters); JSON stays exact."""

from __future__ import annotations

import io
import json

import pytest
import typer
from rich.console import Console

from cli.console import add_row, fail, json_text, plain, printable, table

SPOOF = "Forum [/] [bold red]red[/bold red] :smile:\x1b[2K\r✓ verified: a forged line\nverified: another"
# Every character that can move the cursor, end a line or reorder the text that follows.
UNSAFE = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0))] + [
    "\u061c",
    "\u200e",
    "\u200f",
    "\u2028",
    "\u2029",
    *map(chr, range(0x202A, 0x202F)),
    *map(chr, range(0x2066, 0x206A)),
]


def rendered(*renderables: object) -> str:
    """What a console like the CLI's writes to a file (no terminal)."""
    buffer = io.StringIO()
    console = Console(file=buffer, soft_wrap=True, width=1000)
    for renderable in renderables:
        console.print(renderable)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, 碳中和 — ok", "plain text, 碳中和 — ok"),
        ("a\nb\rc\td", "a\\nb\\rc\\td"),
        ("\x1b[2K\x00\x07\x7f", "\\x1b[2K\\x00\\x07\\x7f"),
        ("\x9b31m\x85", "\\x9b31m\\x85"),
        ("abc\u202egnp.exe", "abc\\u202egnp.exe"),
        ("\u2066x\u2069\u2028", "\\u2066x\\u2069\\u2028"),
        ("[/] [bold]x[/bold]", "[/] [bold]x[/bold]"),
    ],
)
def test_printable_escapes_every_control_character_and_keeps_the_rest(raw: str, shown: str) -> None:
    assert printable(raw) == shown


def test_no_unsafe_character_survives() -> None:
    text = printable("".join(UNSAFE))
    assert not set(text) & set(UNSAFE)
    assert text.count("\\") == len(UNSAFE)


def test_plain_text_is_never_markup() -> None:
    out = rendered(plain(SPOOF))
    assert out == printable(SPOOF) + "\n"
    assert out.count("\n") == 1


def test_a_table_of_hostile_cells_renders_them_literally_one_line_each() -> None:
    shown = table(title="[/] title\r", columns=["name [b]", "value"], box=None)
    add_row(shown, "beneficiary", SPOOF)
    add_row(shown, "empty", None)
    out = rendered(shown)
    assert "[/] title\\r" in out
    assert "name [b]" in out
    assert printable(SPOOF) in out
    assert not set(out) & (set(UNSAFE) - {"\n"})
    lines = out.splitlines()
    assert len(lines) == 4  # title, header, two rows
    assert not any(line.lstrip().startswith(("verified", "✓")) for line in lines)


def test_json_text_is_the_same_json_with_the_raw_controls_escaped() -> None:
    value = {"beneficiary": SPOOF, "other": "".join(UNSAFE), "zh": "碳中和"}
    text = json_text(value)
    assert json.loads(text) == value
    assert not set(text) & (set(UNSAFE) - {"\n"})  # the only newlines are the indentation's
    assert "碳中和" in text
    assert len(text.splitlines()) == 5


def test_fail_prints_one_inert_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as exit_info:
        fail(f"refused: {SPOOF} (409 conflict)", 2)
    assert exit_info.value.exit_code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"error: refused: {printable(SPOOF)} (409 conflict)\n"
