"""Serial blocks: contiguous ranges of unit serial numbers inside one issuance batch.

A block string reads ``CDCER-<project>-<vintage>-<batch>-<first>-<last>``, for example
``CDCER-P0007-2023-001-000001-000500``. Serials are numbered 1..N inside a batch and written
with at least six digits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.errors import EncodingError

SERIAL_DIGITS = 6

_BLOCK_RE = re.compile(r"^CDCER-(P[0-9]{4,12})-([0-9]{4})-([0-9]{3,6})-([0-9]{6,15})-([0-9]{6,15})$")


def batch_id(project_id: str, vintage: int, number: int) -> str:
    """The id of a batch: ``P0007-2023-001``."""
    return f"{project_id}-{vintage:04d}-{number:03d}"


@dataclass(frozen=True, slots=True, order=True)
class SerialRange:
    """Serials ``first..last`` (inclusive) of one batch."""

    batch_id: str
    first: int
    last: int

    def __post_init__(self) -> None:
        if not 1 <= self.first <= self.last:
            raise EncodingError(f"serial range {self.first}-{self.last}: need 1 <= first <= last")

    @property
    def quantity(self) -> int:
        """How many units the range holds."""
        return self.last - self.first + 1

    def __str__(self) -> str:
        return f"CDCER-{self.batch_id}-{self.first:0{SERIAL_DIGITS}d}-{self.last:0{SERIAL_DIGITS}d}"

    def contains(self, other: SerialRange) -> bool:
        """Whether ``other`` lies wholly inside this range."""
        return self.batch_id == other.batch_id and self.first <= other.first and other.last <= self.last

    def overlaps(self, other: SerialRange) -> bool:
        """Whether the two ranges share a serial."""
        return self.batch_id == other.batch_id and self.first <= other.last and other.first <= self.last


def parse_block(text: str) -> SerialRange:
    """Parse a block string; refuse anything that is not exactly the published form."""
    match = _BLOCK_RE.match(text)
    if match is None:
        raise EncodingError(
            f"serial block {text!r}: expected CDCER-<project>-<vintage>-<batch>-<first>-<last>, "
            "e.g. CDCER-P0007-2023-001-000001-000500"
        )
    project, vintage, number, first, last = match.groups()
    if first.startswith("0") and len(first) > SERIAL_DIGITS or last.startswith("0") and len(last) > SERIAL_DIGITS:
        raise EncodingError(f"serial block {text!r}: serials are zero-padded to {SERIAL_DIGITS} digits only")
    rng = SerialRange(batch_id(project, int(vintage), int(number)), int(first), int(last))
    if str(rng) != text:
        raise EncodingError(f"serial block {text!r}: not in canonical form (expected {rng})")
    return rng


def parse_serial(text: str) -> tuple[str, int]:
    """Parse one serial ``CDCER-P0007-2023-001-000042`` into (batch id, serial number)."""
    match = re.match(r"^CDCER-(P[0-9]{4,12})-([0-9]{4})-([0-9]{3,6})-([0-9]{6,15})$", text)
    if match is None:
        raise EncodingError(f"serial {text!r}: expected CDCER-<project>-<vintage>-<batch>-<serial>")
    project, vintage, number, serial = match.groups()
    value = int(serial)
    if value < 1:
        raise EncodingError(f"serial {text!r}: serial numbers start at 1")
    batch = batch_id(project, int(vintage), int(number))
    canonical = f"CDCER-{batch}-{value:0{SERIAL_DIGITS}d}"
    if canonical != text:
        # One serial, one spelling: no extra zero padding, no trailing newline (``$`` allows one).
        raise EncodingError(f"serial {text!r}: not in canonical form (expected {canonical})")
    return batch, value


def split(parent: SerialRange, part: SerialRange) -> tuple[SerialRange | None, SerialRange | None]:
    """Split ``parent`` around ``part``: the pieces before and after it (either may be None).

    The pieces and ``part`` are contiguous, do not overlap and exactly cover ``parent``.
    """
    if not parent.contains(part):
        raise EncodingError(f"{part} is not inside {parent}")
    before = SerialRange(parent.batch_id, parent.first, part.first - 1) if part.first > parent.first else None
    after = SerialRange(parent.batch_id, part.last + 1, parent.last) if part.last < parent.last else None
    return before, after
