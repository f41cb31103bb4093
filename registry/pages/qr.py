"""QR codes (segno) for the certificate page and its PDF."""

from __future__ import annotations

import functools

import segno


# Making the code is most of a claim page's own work (about 2.5 ms); a claim's URL never changes, and only
# existing claims' URLs get here, so the codes of the most recent claims are kept.
@functools.lru_cache(maxsize=256)
def code(url: str) -> segno.QRCode:
    """A QR code of `url`, error correction M (about 15% of the symbol may be damaged)."""
    return segno.make(url, error="m", micro=False)


@functools.lru_cache(maxsize=256)
def data_uri(url: str) -> str:
    """The QR code of `url` as an SVG data URI, for an ``<img>`` with alt text."""
    return str(code(url).svg_data_uri(scale=5, border=4, dark="#000", light="#fff"))


def modules(url: str) -> list[list[bool]]:
    """The QR code's modules, row by row (True is dark), without the quiet zone."""
    return [[bool(cell) for cell in row] for row in code(url).matrix]
