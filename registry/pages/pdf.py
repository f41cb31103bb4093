"""The claim certificate as a PDF (ReportLab): the same facts as the page, its verification and QR code.

Latin text is set in Helvetica and Chinese in the STSong-Light CID font that every PDF reader has, run by
run, so nothing is embedded and the claim id and figures stay extractable text.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.cidfonts import UnicodeCIDFont
from reportlab.pdfgen.canvas import Canvas

from registry.pages import qr
from registry.pages.i18n import Translator

_CJK_FONT = "STSong-Light"
_MARGIN = 56.0
_LINE = 15.0


@dataclass(frozen=True, slots=True)
class ClaimFacts:
    """What the certificate states, already in words."""

    claim_id: str
    statement: str
    rows: Sequence[tuple[str, str]]
    footprint: Sequence[tuple[str, int]]
    footprint_kg: int
    blocks: Sequence[str]
    entries: Sequence[tuple[int, str]]
    verification: str
    url: str


def claim_pdf(facts: ClaimFacts, t: Translator) -> bytes:
    """One A4 page (more if the blocks or entries run long) carrying `facts` and the page's QR code."""
    if _CJK_FONT not in pdfmetrics.getRegisteredFontNames():
        pdfmetrics.registerFont(UnicodeCIDFont(_CJK_FONT))
    buffer = io.BytesIO()
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1)
    canvas.setTitle(t("claim_title", id=facts.claim_id))
    canvas.setAuthor(t("site"))
    canvas.setSubject(facts.url)
    writer = _Writer(canvas)
    writer.text(t("site"), size=10, gap=8)
    writer.text(t("claim_title", id=facts.claim_id), size=18, gap=8)
    writer.qr(facts.url)
    writer.paragraph(facts.statement, size=11)
    writer.gap(6)
    for label, value in facts.rows:
        writer.text(f"{label}: {value}", size=10)
    writer.heading(t("footprint"))
    for source, kg in facts.footprint:
        writer.text(f"{source}: {kg:,} kgCO2e", size=10)
    writer.text(f"{t('total')}: {facts.footprint_kg:,} kgCO2e", size=10)
    writer.heading(t("retired_blocks"))
    for block in facts.blocks:
        writer.text(block, size=10)
    writer.heading(t("entries"))
    for index, role in facts.entries:
        writer.text(f"#{index}  {role}", size=9)
    writer.heading(t("verification"))
    writer.paragraph(facts.verification, size=10)
    writer.text(facts.url, size=9)
    canvas.save()
    return buffer.getvalue()


class _Writer:
    """Lines of text down the page, starting a new page when one is full."""

    def __init__(self, canvas: Canvas) -> None:
        self.canvas = canvas
        self.width, self.height = A4
        self.y = self.height - _MARGIN

    def gap(self, points: float) -> None:
        self.y -= points

    def text(self, line: str, *, size: float, gap: float = 0.0) -> None:
        if self.y < _MARGIN + size:
            self.canvas.showPage()
            self.y = self.height - _MARGIN
        x = _MARGIN
        for font, run in _runs(line):
            self.canvas.setFont(font, size)
            self.canvas.drawString(x, self.y, run)
            x += pdfmetrics.stringWidth(run, font, size)
        self.y -= max(_LINE, size * 1.3) + gap

    def heading(self, line: str) -> None:
        self.gap(8)
        self.text(line, size=12)

    def paragraph(self, text: str, *, size: float) -> None:
        """`text` wrapped to the page width beside the QR code (by words, or by characters for Chinese)."""
        room = self.width - 2 * _MARGIN - 130
        line = ""
        for piece in _pieces(text):
            candidate = line + piece
            if line and _width(candidate, size) > room:
                self.text(line.rstrip(), size=size)
                line = piece.lstrip()
            else:
                line = candidate
        if line.strip():
            self.text(line.rstrip(), size=size)

    def qr(self, url: str) -> None:
        """The QR code at the top right, 110 points wide, with its quiet zone."""
        modules = qr.modules(url)
        side = 110.0
        cell = side / (len(modules) + 8)
        left = self.width - _MARGIN - side
        top = self.y + 10
        self.canvas.setFillColorRGB(0, 0, 0)
        for r, row in enumerate(modules):
            for c, dark in enumerate(row):
                if dark:
                    self.canvas.rect(left + (c + 4) * cell, top - (r + 5) * cell, cell, cell, stroke=0, fill=1)


def _is_cjk(ch: str) -> bool:
    return ord(ch) >= 0x2E80 or ch in "“”‘’"


def _runs(line: str) -> list[tuple[str, str]]:
    """`line` cut into runs of one font: Helvetica for Latin text, STSong-Light for Chinese."""
    runs: list[tuple[str, str]] = []
    for ch in line:
        font = _CJK_FONT if _is_cjk(ch) else "Helvetica"
        if runs and runs[-1][0] == font:
            runs[-1] = (font, runs[-1][1] + ch)
        else:
            runs.append((font, ch))
    return runs


def _width(line: str, size: float) -> float:
    return sum(float(pdfmetrics.stringWidth(run, font, size)) for font, run in _runs(line))


def _pieces(text: str) -> list[str]:
    """Words with their trailing space; each Chinese character is a piece of its own."""
    pieces: list[str] = []
    word = ""
    for ch in text:
        if _is_cjk(ch):
            if word:
                pieces.append(word)
                word = ""
            pieces.append(ch)
        else:
            word += ch
            if ch == " ":
                pieces.append(word)
                word = ""
    if word:
        pieces.append(word)
    return pieces
