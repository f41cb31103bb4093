"""ledger.serials: block and serial strings, and the algebra of splitting a block around a part."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.errors import EncodingError
from ledger.serials import SerialRange, batch_id, parse_block, parse_serial, split

BATCH = "P0007-2023-001"
BLOCK = "CDCER-P0007-2023-001-000001-000500"


@st.composite
def batches(draw: st.DrawFn) -> str:
    project = "P" + draw(st.from_regex(r"\A[0-9]{4,12}\Z"))
    return batch_id(project, draw(st.integers(1000, 9999)), draw(st.integers(0, 999_999)))


@st.composite
def ranges(draw: st.DrawFn, batch: str | None = None) -> SerialRange:
    first = draw(st.integers(1, 10**15 - 1))
    last = draw(st.integers(first, 10**15 - 1))
    return SerialRange(batch if batch is not None else draw(batches()), first, last)


@st.composite
def parent_and_part(draw: st.DrawFn) -> tuple[SerialRange, SerialRange]:
    parent = draw(ranges(BATCH) | st.builds(SerialRange, st.just(BATCH), st.just(1), st.integers(1, 50)))
    first = draw(st.integers(parent.first, parent.last))
    last = draw(st.integers(first, parent.last))
    return parent, SerialRange(BATCH, first, last)


# --- parse_block --------------------------------------------------------------------------------


def test_parse_block() -> None:
    block = parse_block(BLOCK)
    assert block == SerialRange(BATCH, 1, 500)
    assert block.quantity == 500
    assert str(block) == BLOCK


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CDCER-P0007-2023-001-000042-000042", SerialRange(BATCH, 42, 42)),
        ("CDCER-P0007-2023-001-999999-1000000", SerialRange(BATCH, 999_999, 1_000_000)),
        ("CDCER-P000000000007-2023-001-000001-000001", SerialRange("P000000000007-2023-001", 1, 1)),
        ("CDCER-P0007-2023-1234-000001-000001", SerialRange("P0007-2023-1234", 1, 1)),
        ("CDCER-P0007-2023-000-000001-000001", SerialRange("P0007-2023-000", 1, 1)),
        ("CDCER-P0007-2023-001-000001-999999999999999", SerialRange(BATCH, 1, 999_999_999_999_999)),
    ],
)
def test_parse_block_edges(text: str, expected: SerialRange) -> None:
    assert parse_block(text) == expected
    assert str(parse_block(text)) == text


@given(ranges())
def test_block_strings_round_trip(block: SerialRange) -> None:
    text = str(block)
    assert parse_block(text) == block
    assert str(parse_block(text)) == text
    assert block.quantity == block.last - block.first + 1


FORM = "expected CDCER-<project>-<vintage>-<batch>-<first>-<last>, e.g. CDCER-P0007-2023-001-000001-000500"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", FORM),
        ("CDCER-P0007-2023-001-000001", FORM),  # a serial, not a block
        ("CDCER-P0007-2023-001-000001-000500-000600", FORM),
        ("cdcer-P0007-2023-001-000001-000500", FORM),
        ("VCS-P0007-2023-001-000001-000500", FORM),
        ("CDCER-p0007-2023-001-000001-000500", FORM),
        ("CDCER-P007-2023-001-000001-000500", FORM),  # project number too short
        ("CDCER-P0000000000007-2023-001-000001-000500", FORM),  # ... too long
        ("CDCER-X0007-2023-001-000001-000500", FORM),
        ("CDCER-P0007-23-001-000001-000500", FORM),  # two-digit vintage
        ("CDCER-P0007-20231-001-000001-000500", FORM),
        ("CDCER-P0007-2023-01-000001-000500", FORM),  # batch of two digits
        ("CDCER-P0007-2023-0000001-000001-000500", FORM),
        ("CDCER-P0007-2023-001-00001-000500", FORM),  # five-digit serial
        ("CDCER-P0007-2023-001-000001-00500", FORM),
        ("CDCER-P0007-2023-001-000001-0000000000000500", FORM),  # sixteen digits
        ("CDCER-P0007-2023-001-000001--000500", FORM),
        ("CDCER-P0007-2023-001-+00001-000500", FORM),
        ("CDCER-P0007-2023-001-000001-000500 ", FORM),
        (" CDCER-P0007-2023-001-000001-000500", FORM),
        ("CDCER_P0007_2023_001_000001_000500", FORM),
        ("CDCER-P0007-2023-001-00000\u0661-000500", FORM),  # ARABIC-INDIC DIGIT ONE
        ("CDCER-P0007-2023-001-\uff10\uff10\uff10\uff10\uff10\uff11-000500", FORM),  # fullwidth digits
        ("CDCER-P0007-2023-001-000500-000001", "^serial range 500-1: need 1 <= first <= last$"),
        ("CDCER-P0007-2023-001-000000-000001", "^serial range 0-1: need 1 <= first <= last$"),
        ("CDCER-P0007-2023-001-000000-000000", "^serial range 0-0: need 1 <= first <= last$"),
        ("CDCER-P0007-2023-001-0000001-000500", "serials are zero-padded to 6 digits only"),
        ("CDCER-P0007-2023-001-000001-0000500", "serials are zero-padded to 6 digits only"),
        ("CDCER-P0007-2023-0001-000001-000500", "not in canonical form \\(expected " + BLOCK + "\\)$"),
        ("CDCER-P0007-2023-001-000001-000500\n", "not in canonical form \\(expected " + BLOCK + "\\)$"),
    ],
)
def test_parse_block_refuses(text: str, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        parse_block(text)


def test_parse_block_message_quotes_the_input() -> None:
    with pytest.raises(EncodingError, match="^serial block 'CDCER-P7': expected CDCER-"):
        parse_block("CDCER-P7")


# --- parse_serial -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CDCER-P0007-2023-001-000042", (BATCH, 42)),
        ("CDCER-P0007-2023-001-000001", (BATCH, 1)),
        ("CDCER-P0007-2023-001-1000000", (BATCH, 1_000_000)),
        ("CDCER-P0007-2023-1234-000001", ("P0007-2023-1234", 1)),
    ],
)
def test_parse_serial(text: str, expected: tuple[str, int]) -> None:
    assert parse_serial(text) == expected


@given(batches(), st.integers(1, 10**15 - 1))
def test_serial_strings_round_trip(batch: str, serial: int) -> None:
    text = f"CDCER-{batch}-{serial:06d}"
    assert parse_serial(text) == (batch, serial)
    # A serial is the one-unit block of itself.
    assert parse_block(f"{text}-{serial:06d}") == SerialRange(batch, serial, serial)


SERIAL_FORM = "expected CDCER-<project>-<vintage>-<batch>-<serial>"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", SERIAL_FORM),
        (BLOCK, SERIAL_FORM),  # a block, not a serial
        ("CDCER-P0007-2023-001", SERIAL_FORM),
        ("CDCER-P0007-2023-001-42", SERIAL_FORM),
        ("cdcer-P0007-2023-001-000042", SERIAL_FORM),
        ("CDCER-P007-2023-001-000042", SERIAL_FORM),
        ("CDCER-P0007-2023-001-000042 ", SERIAL_FORM),
        ("CDCER-P0007-2023-001-00004\u0662", SERIAL_FORM),
        ("CDCER-P0007-2023-001-000000", "^serial 'CDCER-P0007-2023-001-000000': serial numbers start at 1$"),
        ("CDCER-P0007-2023-001-000042\n", "not in canonical form \\(expected CDCER-P0007-2023-001-000042\\)$"),
        ("CDCER-P0007-2023-001-0000042", "not in canonical form \\(expected CDCER-P0007-2023-001-000042\\)$"),
        ("CDCER-P0007-2023-0001-000042", "not in canonical form \\(expected CDCER-P0007-2023-001-000042\\)$"),
    ],
)
def test_parse_serial_refuses(text: str, match: str) -> None:
    with pytest.raises(EncodingError, match=match):
        parse_serial(text)


# --- ranges and split ---------------------------------------------------------------------------


@pytest.mark.parametrize(("first", "last"), [(0, 5), (-1, 5), (5, 4), (0, 0)])
def test_serial_range_refuses_bad_bounds(first: int, last: int) -> None:
    with pytest.raises(EncodingError, match=f"^serial range {first}-{last}: need 1 <= first <= last$"):
        SerialRange(BATCH, first, last)


def test_contains_and_overlaps() -> None:
    block = SerialRange(BATCH, 10, 20)
    assert block.contains(SerialRange(BATCH, 10, 20))
    assert block.contains(SerialRange(BATCH, 12, 12))
    assert not block.contains(SerialRange(BATCH, 9, 12))
    assert not block.contains(SerialRange(BATCH, 12, 21))
    assert not block.contains(SerialRange("P0007-2023-002", 12, 12))
    assert block.overlaps(SerialRange(BATCH, 20, 30))
    assert block.overlaps(SerialRange(BATCH, 1, 10))
    assert not block.overlaps(SerialRange(BATCH, 21, 30))
    assert not block.overlaps(SerialRange(BATCH, 1, 9))
    assert not block.overlaps(SerialRange("P0007-2023-002", 10, 20))


def test_split_examples() -> None:
    parent = parse_block(BLOCK)
    assert split(parent, SerialRange(BATCH, 10, 20)) == (SerialRange(BATCH, 1, 9), SerialRange(BATCH, 21, 500))
    assert split(parent, SerialRange(BATCH, 1, 20)) == (None, SerialRange(BATCH, 21, 500))
    assert split(parent, SerialRange(BATCH, 480, 500)) == (SerialRange(BATCH, 1, 479), None)
    assert split(parent, parent) == (None, None)


@given(parent_and_part())
def test_split_pieces_are_contiguous_disjoint_and_cover_the_parent(pair: tuple[SerialRange, SerialRange]) -> None:
    parent, part = pair
    before, after = split(parent, part)
    pieces = [piece for piece in (before, part, after) if piece is not None]

    # contiguous, in order, inside the parent, from its first serial to its last
    assert pieces[0].first == parent.first
    assert pieces[-1].last == parent.last
    for left, right in zip(pieces, pieces[1:], strict=False):
        assert left.last + 1 == right.first
    # non-overlapping, same batch, and the quantities add up
    for i, piece in enumerate(pieces):
        assert piece.batch_id == parent.batch_id
        assert parent.contains(piece)
        for other in pieces[i + 1 :]:
            assert not piece.overlaps(other)
    assert sum(piece.quantity for piece in pieces) == parent.quantity
    # a piece exists exactly when the part leaves room on that side
    assert (before is None) == (part.first == parent.first)
    assert (after is None) == (part.last == parent.last)
    # the pieces print as blocks that parse back
    for piece in pieces:
        assert parse_block(str(piece)) == piece


@given(ranges(BATCH), ranges(BATCH))
def test_split_refuses_a_part_outside_the_parent(parent: SerialRange, part: SerialRange) -> None:
    if parent.contains(part):
        split(parent, part)
        return
    with pytest.raises(EncodingError, match=f"^{part} is not inside {parent}$"):
        split(parent, part)


def test_split_refuses_a_part_of_another_batch() -> None:
    parent = parse_block(BLOCK)
    part = SerialRange("P0007-2023-002", 10, 20)
    with pytest.raises(EncodingError, match="^CDCER-P0007-2023-002-000010-000020 is not inside CDCER-P0007-2023-001"):
        split(parent, part)


def test_batch_id() -> None:
    assert batch_id("P0007", 2023, 1) == BATCH
    assert batch_id("P0007", 2023, 1234) == "P0007-2023-1234"
