"""Certificates as PDFs (ReportLab): a claim's carbon-neutrality certificate and a retirement's certificate.

Each is an A4 page a sponsor could frame: a border, the registry's name, a title, whom it certifies and
for what, the facts (serial blocks, units, dates, the log entries it rests on, the registry's verifier
key), a round seal drawn with ReportLab's graphics, and the QR code of the record's page, whose address is
the configured public base URL (never the request's Host). What does not fit on the page (a claim over
hundreds of serial blocks) continues on annex pages. Each PDF is in the reader's language; only the title
is bilingual.

Every font is embedded, as a subset: a certificate is printed and archived on machines that have none of
the registry's fonts. ReportLab embeds only TrueType outlines, so the Chinese text is set in AR PL UMing
(Debian's ``fonts-arphic-uming``; WenQuanYi Zen Hei also does) and never in Noto Sans CJK, whose outlines
are CFF; Latin text is in Liberation Serif and Liberation Mono (``fonts-liberation``). Without them a PDF
is refused with `FontMissing`, which names the package to install, rather than made with fonts the reader
may not have.
"""

from __future__ import annotations

import functools
import io
import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from reportlab.lib.pagesizes import A4
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen.canvas import Canvas

from registry.errors import ServiceUnavailable
from registry.pages import qr
from registry.pages.i18n import Translator

# --- fonts ---------------------------------------------------------------------------------------------

Role = Literal["serif", "bold", "italic", "mono", "cjk"]

# Per role, the fonts tried in order: (fontconfig family, style, the file where Debian installs it).
FONT_CANDIDATES: dict[Role, tuple[tuple[str, str, str], ...]] = {
    "cjk": (
        ("AR PL UMing CN", "Light", "/usr/share/fonts/truetype/arphic/uming.ttc"),
        ("WenQuanYi Zen Hei", "Regular", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    ),
    "serif": (
        ("Liberation Serif", "Regular", "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf"),
        ("DejaVu Serif", "Book", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"),
    ),
    "bold": (
        ("Liberation Serif", "Bold", "/usr/share/fonts/truetype/liberation/LiberationSerif-Bold.ttf"),
        ("DejaVu Serif", "Bold", "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf"),
    ),
    "italic": (
        ("Liberation Serif", "Italic", "/usr/share/fonts/truetype/liberation/LiberationSerif-Italic.ttf"),
        ("DejaVu Serif", "Italic", "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Italic.ttf"),
    ),
    "mono": (
        ("Liberation Mono", "Regular", "/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf"),
        ("DejaVu Sans Mono", "Book", "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf"),
    ),
}
PACKAGES: Final[dict[Role, str]] = {
    "cjk": "fonts-arphic-uming",
    "serif": "fonts-liberation",
    "bold": "fonts-liberation",
    "italic": "fonts-liberation",
    "mono": "fonts-liberation",
}


class FontMissing(ServiceUnavailable):
    """No TrueType font for one of the certificate's roles is installed, so no PDF can embed it."""

    def __init__(self, role: Role, tried: Sequence[str]) -> None:
        what = "Chinese (CJK)" if role == "cjk" else f"Latin {role}"
        super().__init__(
            f"cannot make a PDF certificate: no TrueType {what} font to embed is installed (tried "
            f"{'; '.join(tried)}); install Debian's {PACKAGES[role]} (bash scripts/system-deps.sh)",
            "pdf-font-missing",
        )


@dataclass(frozen=True, slots=True)
class Fonts:
    """The registered (ReportLab) font name per role, and the characters each font has a glyph for."""

    names: Mapping[Role, str]
    glyphs: Mapping[str, frozenset[int]]

    def has(self, font: str, ch: str) -> bool:
        return ord(ch) in self.glyphs[font]


def _fontconfig(family: str, style: str) -> list[tuple[str, int]]:
    """The files (and collection indexes) fontconfig knows for exactly this family and style."""
    try:
        listed = subprocess.run(
            ["fc-list", "--format", "%{file}\t%{index}\n", f"{family}:style={style}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):  # no fontconfig: the known paths still count
        return []
    found = []
    for line in listed.splitlines():
        file, _, index = line.partition("\t")
        found.append((file, int(index) if index.isdigit() else 0))
    return found


def _load(role: Role) -> TTFont:
    tried = []
    for family, style, known in FONT_CANDIDATES[role]:
        places = _fontconfig(family, style)
        if not places and Path(known).is_file():
            places = [(known, 0)]
        if not places:
            tried.append(f"{family} {style}: not installed")
        for file, index in places:
            try:
                return TTFont(f"CDCER-{role}", file, subfontIndex=index)
            except (TTFError, OSError) as exc:  # e.g. CFF outlines, which ReportLab cannot embed
                tried.append(f"{family} {style} at {file}: {exc}")
    raise FontMissing(role, tried)


@functools.cache
def fonts() -> Fonts:
    """The certificate's fonts, found and registered once per process; FontMissing when one is not installed."""
    loaded = {role: _load(role) for role in FONT_CANDIDATES}
    for font in loaded.values():
        pdfmetrics.registerFont(font)
    return Fonts(
        names={role: font.fontName for role, font in loaded.items()},
        glyphs={font.fontName: frozenset(font.face.charToGlyph) for font in loaded.values()},
    )


# --- what a certificate says ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """One labelled fact; each of `lines` starts a new line (and wraps if it is long)."""

    label: str
    lines: Sequence[str]
    mono: bool = False


@dataclass(frozen=True, slots=True)
class Sheet:
    """Everything a certificate shows, already in words of one language."""

    language: str
    record_id: str
    site: str
    title: str
    other_title: str
    number: str
    certifies: str
    subject: str
    statement: str
    facts: Sequence[Fact]
    verified: bool
    verification: str
    vkey_label: str
    vkey: str
    offline_label: str
    offline: Sequence[str]
    issued: str
    seal_ring: str
    seal_centre: str
    scan: str
    url: str
    annex: str
    page_of: str
    """With ``{page}`` and ``{pages}``."""


def claim_certificate(context: Mapping[str, Any], t: Translator) -> bytes:
    """The carbon-neutrality certificate of a claim, from the claim page's context."""
    claim, event, names = context["claim"], context["event"], context["names"]
    event_name = event["name"] if event else claim["event_id"]
    organiser = names.get(claim["organiser"]) or claim["organiser"]
    footprint = [f"{t.word('f', source)} {kg:,}" for source, kg in claim["footprint"]]
    facts = [
        Fact(t("event"), [f"{event_name} ({claim['event_id']})"]),
        Fact(t("organiser"), [f"{organiser} ({claim['organiser']})"]),
    ]
    if event:
        facts += [
            Fact(t("venue"), [event["venue"]]),
            Fact(t("dates"), [f"{event['start_date']} – {event['end_date']}"]),
        ]
    facts += [
        Fact(t("footprint"), [" · ".join(footprint), f"{t('total')}: {claim['footprint_kg']:,} kgCO2e"]),
        Fact(t("units"), [f"{claim['units']:,}"]),
        Fact(t("retirements"), [", ".join(claim["retirements"])]),
        Fact(t("retired_blocks"), claim["blocks"], mono=True),
        Fact(t("issued_at"), [claim["issued_time"]]),
        *_proof_facts(context, t),
    ]
    return render(
        _sheet(
            context,
            t,
            record_id=claim["id"],
            title_key="pdf_claim_title",
            subject=event_name,
            statement=t(
                "claim_certifies", organiser=organiser, units=f"{claim['units']:,}", kg=f"{claim['footprint_kg']:,}"
            ),
            facts=facts,
            time=claim["issued_time"],
        )
    )


def retirement_certificate(context: Mapping[str, Any], t: Translator) -> bytes:
    """The certificate of a retirement (individual, organisation, event or voluntary), from its page's context."""
    retirement, event, names = context["retirement"], context["event"], context["names"]
    holder = names.get(retirement["holder"]) or retirement["holder"]
    purpose = t.word("p", retirement["purpose"])
    if retirement["event_id"]:
        event_name = event["name"] if event else retirement["event_id"]
        phrase = t("pp_event_named", event=event_name)
        purpose = f"{purpose} · {event_name} ({retirement['event_id']})"
    elif retirement["purpose"] == "organisation" and retirement["year"] is not None:
        phrase = t("pp_organisation_year", year=retirement["year"])
        purpose = f"{purpose} · {t('year_of', year=retirement['year'])}"
    else:
        phrase = t.word("pp", retirement["purpose"])
    facts = [
        Fact(t("beneficiary"), [retirement["beneficiary"]]),
        Fact(t("purpose"), [purpose]),
        Fact(t("reason"), [retirement["reason"]]),
        Fact(f"{t('quantity')} (tCO2e)", [f"{retirement['quantity']:,}"]),
        Fact(t("retired_by"), [f"{holder} ({retirement['holder']})"]),
        Fact(t("time"), [retirement["retired_time"]]),
    ]
    if retirement["claim_id"]:
        facts.append(Fact(t("claim"), [retirement["claim_id"]]))
    facts += [Fact(t("retired_blocks"), retirement["blocks"], mono=True), *_proof_facts(context, t)]
    return render(
        _sheet(
            context,
            t,
            record_id=retirement["id"],
            title_key="pdf_retirement_title",
            subject=retirement["beneficiary"],
            statement=t("retirement_certifies", holder=holder, quantity=f"{retirement['quantity']:,}", purpose=phrase),
            facts=facts,
            time=retirement["retired_time"],
        )
    )


def _proof_facts(context: Mapping[str, Any], t: Translator) -> list[Fact]:
    entries = " · ".join(f"#{index} {t.word('r', role)}" for index, role in context["entries"])
    return [Fact(t("entries"), [entries or "—"])]


def _sheet(
    context: Mapping[str, Any],
    t: Translator,
    *,
    record_id: str,
    title_key: str,
    subject: str,
    statement: str,
    facts: Sequence[Fact],
    time: str,
) -> Sheet:
    other = Translator(t.other)
    file = f"{record_id}.json"
    return Sheet(
        language=t.language,
        record_id=record_id,
        site=t("site"),
        title=t(title_key),
        other_title=other(title_key),
        number=t("certificate_no", id=record_id),
        certifies=t("certifies"),
        subject=subject,
        statement=statement,
        facts=facts,
        verified=context["verification"].verified is not None,
        verification=verification_text(t, context["verification"]),
        vkey_label=t("vkey"),
        vkey=context["vkey"] or "—",
        offline_label=t("verify_offline"),
        offline=[f"curl -s {context['json_url']} > {file}", f"cdcer certificate verify {file} --vkey VKEY"],
        issued=t("issued_on", date=time[:10]),
        seal_ring=t("seal_ring"),
        seal_centre=t("seal_centre"),
        scan=t("scan_to_verify"),
        url=context["url"],
        annex=t("annex_title", id=record_id),
        page_of=TEXT_PAGE_OF[t.language],
    )


TEXT_PAGE_OF: Final = {"zh": "第 {page} 页，共 {pages} 页", "en": "Page {page} of {pages}"}


def verification_text(t: Translator, verification: Any) -> str:
    """The live verification's outcome in words (`registry.pages.service.Verification`)."""
    if verification.verified is None:
        return f"{t('not_verified')}: {verification.reason}"
    done = verification.verified
    return f"{t('verified')}: " + t(
        "verified_detail", count=len(done.entries), size=f"{done.checkpoint_size:,}", key=done.key_id
    )


# --- typesetting ---------------------------------------------------------------------------------------

WIDTH, HEIGHT = A4
INK: Final = (0.11, 0.12, 0.13)
MUTED: Final = (0.38, 0.40, 0.42)
GREEN: Final = (0.09, 0.33, 0.25)
GOLD: Final = (0.64, 0.52, 0.26)
SEAL_RED: Final = (0.78, 0.12, 0.12)
PAPER: Final = (0.995, 0.99, 0.972)

LEFT, RIGHT = 62.0, WIDTH - 62.0
FOOTER_TOP = 212.0
"""Page 1's facts stop above the seal, the verification and the QR code."""
ANNEX_TOP, ANNEX_BOTTOM = HEIGHT - 118.0, 78.0
LABEL_WIDTH = 112.0
GUTTER = 12.0

_CLOSING = set("，。、；：！？）》」』”’,.;:!?)")  # never starts a line


@dataclass(frozen=True, slots=True)
class Style:
    size: float
    role: Role = "serif"
    color: tuple[float, float, float] = INK
    leading: float = 0.0

    @property
    def line(self) -> float:
        return self.leading or self.size * 1.32


class _Type:
    """Text in runs of one font each: Chinese in the CJK font, the rest in the style's Latin font."""

    def __init__(self, canvas: Canvas, fonts: Fonts, language: str) -> None:
        self.canvas = canvas
        self.fonts = fonts
        self.language = language

    def _is_cjk(self, ch: str) -> bool:
        if ch in "“”‘’":  # typographic quotes: full-width in Chinese text, Latin in English
            return self.language == "zh"
        return ord(ch) >= 0x2E80

    def runs(self, text: str, style: Style) -> list[tuple[str, str]]:
        latin, cjk = self.fonts.names[style.role], self.fonts.names["cjk"]
        runs: list[tuple[str, str]] = []
        for ch in text:
            use_cjk = self._is_cjk(ch) or (not self.fonts.has(latin, ch) and self.fonts.has(cjk, ch))
            font = cjk if use_cjk else latin
            if runs and runs[-1][0] == font:
                runs[-1] = (font, runs[-1][1] + ch)
            else:
                runs.append((font, ch))
        return runs

    def width(self, text: str, style: Style) -> float:
        return sum(float(pdfmetrics.stringWidth(run, font, style.size)) for font, run in self.runs(text, style))

    def wrap(self, text: str, style: Style, width: float) -> list[str]:
        """`text` in lines no wider than `width`: between words, between Chinese characters, or (for a word
        too long for a line, like a serial block) anywhere in it. Closing punctuation never starts a line:
        it takes the character before it onto the next."""
        lines: list[str] = []
        line: list[str] = []
        for piece in self._pieces(text, style, width):
            if line and self.width("".join([*line, piece]).rstrip(), style) > width:
                carried = [line.pop()] if piece[0] in _CLOSING and len(line) > 1 else []
                lines.append("".join(line).rstrip())
                line = [*carried, piece.lstrip() if not carried else piece]
                line[0] = line[0].lstrip()
            else:
                line.append(piece)
        if "".join(line).strip() or not lines:
            lines.append("".join(line).rstrip())
        return lines

    def _pieces(self, text: str, style: Style, width: float) -> list[str]:
        pieces: list[str] = []
        word = ""
        for ch in text:
            if self._is_cjk(ch):
                if word:
                    pieces.append(word)
                    word = ""
                pieces.append(ch)
            else:
                word += ch
                if ch == " " or (ch == "/" and len(word) > 1):  # a URL breaks after a slash
                    pieces.append(word)
                    word = ""
        if word:
            pieces.append(word)
        split: list[str] = []
        for piece in pieces:  # a word wider than the line is cut where it must be
            while self.width(piece.rstrip(), style) > width and len(piece) > 1:
                cut = len(piece) - 1
                while cut > 1 and self.width(piece[:cut], style) > width:
                    cut -= 1
                split.append(piece[:cut])
                piece = piece[cut:]
            split.append(piece)
        return split

    def draw(
        self, x: float, y: float, text: str, style: Style, align: Literal["left", "centre", "right"] = "left"
    ) -> None:
        """`text` on one line at baseline `y`: starting at `x`, centred on it, or ending at it."""
        if align != "left":
            x -= self.width(text, style) / (2 if align == "centre" else 1)
        canvas = self.canvas
        canvas.setFillColorRGB(*style.color)
        for font, run in self.runs(text, style):
            label = canvas.beginText(x, y)
            label.setFont(font, style.size)
            if style.role == "bold" and font == self.fonts.names["cjk"]:
                # The Ming face has no bold: the outline stroked in the fill colour makes one. The text
                # render mode is graphics state, so it is saved and restored around the run.
                canvas.saveState()
                canvas.setStrokeColorRGB(*style.color)
                canvas.setLineWidth(style.size * 0.035)
                label.setTextRenderMode(2)
                label.textOut(run)
                canvas.drawText(label)
                canvas.restoreState()
            else:
                label.textOut(run)
                canvas.drawText(label)
            x += pdfmetrics.stringWidth(run, font, style.size)

    def paragraph(
        self, x: float, y: float, text: str, style: Style, width: float, align: Literal["left", "centre"] = "left"
    ) -> float:
        """`text` wrapped to `width` from baseline `y` down; the baseline after its last line."""
        for line in self.wrap(text, style, width):
            self.draw(x + (width / 2 if align == "centre" else 0), y, line, style, align)
            y -= style.line
        return y


LABEL = Style(8.6, color=MUTED, leading=12.4)
VALUE = Style(9.8, leading=12.8)
MONO = Style(8.4, role="mono", leading=11.2)


@dataclass(frozen=True, slots=True)
class _Line:
    label: str
    value: str
    style: Style
    last: bool  # the last line of its fact: a gap follows


def _lines(type_: _Type, facts: Sequence[Fact]) -> list[_Line]:
    """The facts cut into the lines they take (label left, value right), so pages can break between any two."""
    value_width = RIGHT - (LEFT + LABEL_WIDTH + GUTTER)
    out: list[_Line] = []
    for fact in facts:
        style = MONO if fact.mono else VALUE
        values = [line for text in fact.lines for line in type_.wrap(text, style, value_width)]
        labels = type_.wrap(fact.label, LABEL, LABEL_WIDTH)
        count = max(len(values), len(labels))
        values += [""] * (count - len(values))
        labels += [""] * (count - len(labels))
        out += [_Line(labels[i], values[i], style, i == count - 1) for i in range(count)]
    return out


def _paginate(lines: list[_Line], first_room: float, annex_room: float) -> list[list[_Line]]:
    pages: list[list[_Line]] = [[]]
    room = first_room
    for line in lines:
        height = line.style.line + (5.0 if line.last else 0.0)
        if height > room and pages[-1]:
            pages.append([])
            room = annex_room
        pages[-1].append(line)
        room -= height
    return pages


def render(sheet: Sheet) -> bytes:
    """The certificate as PDF bytes: page 1 framed with the seal and QR code, then any annex pages."""
    found = fonts()
    buffer = io.BytesIO()
    # The initial font too: ReportLab names Helvetica (never embedded) in every page unless told otherwise.
    canvas = Canvas(buffer, pagesize=A4, pageCompression=1, initialFontName=found.names["serif"])
    canvas.setTitle(f"{sheet.title} {sheet.record_id}")
    canvas.setAuthor(sheet.site)
    canvas.setSubject(sheet.url)
    canvas.setCreator("cdcer")
    type_ = _Type(canvas, found, sheet.language)

    y = _front(type_, sheet) - 22  # the rule under the statement, then the facts
    lines = _lines(type_, sheet.facts)
    pages = _paginate(lines, y - FOOTER_TOP, ANNEX_TOP - ANNEX_BOTTOM)
    shift = 0.0
    if len(pages) == 1:  # facts that leave room sit lower, the rule halfway between
        spare = y - FOOTER_TOP - sum(line.style.line + (5.0 if line.last else 0.0) for line in lines)
        shift = min(spare * 0.4, 56.0)
    _rule(canvas, y + 22 - shift / 2, 160)
    y -= shift
    for number, page in enumerate(pages, start=1):
        if number > 1:
            canvas.showPage()
            _frame(canvas)
            _header(type_, sheet)
            type_.draw(WIDTH / 2, HEIGHT - 96, sheet.annex, Style(13, role="bold", color=GREEN), "centre")
            y = ANNEX_TOP
        for line in page:
            if line.label:
                type_.draw(LEFT + LABEL_WIDTH, y, line.label, LABEL, "right")
            if line.value:
                type_.draw(LEFT + LABEL_WIDTH + GUTTER, y, line.value, line.style)
            y -= line.style.line + (5.0 if line.last else 0.0)
        if number == 1:
            _footer(type_, sheet)
        if len(pages) > 1:
            text = sheet.page_of.format(page=number, pages=len(pages))
            type_.draw(WIDTH / 2, 40, text, Style(7.5, color=MUTED), "centre")
    canvas.save()
    return buffer.getvalue()


def _frame(canvas: Canvas) -> None:
    """The paper, a double rule in the registry's green, and a small diamond at each inner corner."""
    canvas.saveState()
    canvas.setFillColorRGB(*PAPER)
    canvas.rect(0, 0, WIDTH, HEIGHT, stroke=0, fill=1)
    canvas.setStrokeColorRGB(*GREEN)
    canvas.setLineWidth(2.6)
    canvas.rect(22, 22, WIDTH - 44, HEIGHT - 44, stroke=1, fill=0)
    canvas.setStrokeColorRGB(*GOLD)
    canvas.setLineWidth(0.7)
    canvas.rect(30, 30, WIDTH - 60, HEIGHT - 60, stroke=1, fill=0)
    canvas.setFillColorRGB(*GOLD)
    for cx, cy in ((30, 30), (WIDTH - 30, 30), (30, HEIGHT - 30), (WIDTH - 30, HEIGHT - 30)):
        path = canvas.beginPath()
        path.moveTo(cx, cy - 5)
        path.lineTo(cx + 5, cy)
        path.lineTo(cx, cy + 5)
        path.lineTo(cx - 5, cy)
        path.close()
        canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()


def _rule(canvas: Canvas, y: float, half: float) -> None:
    """A thin gold rule centred on the page with a diamond in its middle."""
    canvas.saveState()
    canvas.setStrokeColorRGB(*GOLD)
    canvas.setFillColorRGB(*GOLD)
    canvas.setLineWidth(0.6)
    canvas.line(WIDTH / 2 - half, y, WIDTH / 2 - 7, y)
    canvas.line(WIDTH / 2 + 7, y, WIDTH / 2 + half, y)
    path = canvas.beginPath()
    path.moveTo(WIDTH / 2, y - 3)
    path.lineTo(WIDTH / 2 + 3.5, y)
    path.lineTo(WIDTH / 2, y + 3)
    path.lineTo(WIDTH / 2 - 3.5, y)
    path.close()
    canvas.drawPath(path, stroke=0, fill=1)
    canvas.restoreState()


def _header(type_: _Type, sheet: Sheet) -> None:
    type_.draw(WIDTH / 2, HEIGHT - 62, sheet.site, Style(9.5, color=GREEN), "centre")
    _rule(type_.canvas, HEIGHT - 72, 120)


def _front(type_: _Type, sheet: Sheet) -> float:
    """Page 1 above the facts: frame, header, title, whom it certifies; the baseline under the statement."""
    _frame(type_.canvas)
    _header(type_, sheet)
    y = HEIGHT - 120
    type_.draw(
        WIDTH / 2, y, sheet.title, Style(30 if sheet.language == "zh" else 27, role="bold", color=GREEN), "centre"
    )
    y -= 24
    type_.draw(WIDTH / 2, y, sheet.other_title, Style(12.5, role="italic", color=MUTED), "centre")
    y -= 20
    type_.draw(WIDTH / 2, y, sheet.number, Style(9.5, color=INK), "centre")
    y -= 34
    type_.draw(WIDTH / 2, y, sheet.certifies, Style(11.5, role="italic", color=MUTED), "centre")
    y -= 30
    width = RIGHT - LEFT - 40
    for size in (21.0, 17.0, 14.0):  # a long name in smaller type, so the facts keep their room
        name = Style(size, role="bold", leading=size * 1.28)
        if len(type_.wrap(sheet.subject, name, width)) <= 3:
            break
    y = type_.paragraph(LEFT + 20, y, sheet.subject, name, width, "centre")
    y -= 4
    y = type_.paragraph(LEFT + 30, y, sheet.statement, Style(11, leading=15.5), RIGHT - LEFT - 60, "centre")
    return y - 6


def _footer(type_: _Type, sheet: Sheet) -> None:
    """The seal at the left, the verification and how to repeat it in the middle, the QR code at the right."""
    canvas = type_.canvas
    canvas.saveState()
    canvas.setStrokeColorRGB(*GOLD)
    canvas.setLineWidth(0.5)
    canvas.line(LEFT, FOOTER_TOP - 6, RIGHT, FOOTER_TOP - 6)
    canvas.restoreState()

    _seal(type_, LEFT + 58, 122, 56, sheet.seal_ring, sheet.seal_centre, sheet.record_id)
    type_.draw(LEFT + 58, 52, sheet.issued, Style(8, color=MUTED), "centre")

    side = 100.0
    qr_left = RIGHT - side
    _qr(canvas, sheet.url, qr_left, 84, side)
    type_.draw(qr_left + side / 2, 72, sheet.scan, Style(8, color=MUTED), "centre")

    left, width = LEFT + 134, qr_left - 14 - (LEFT + 134)
    y = FOOTER_TOP - 26
    colour = GREEN if sheet.verified else SEAL_RED
    y = type_.paragraph(left, y, sheet.verification, Style(8.6, color=colour, leading=11.4), width)
    y -= 5
    type_.draw(left, y, sheet.vkey_label, Style(8.2, role="bold", color=INK))
    y -= 10
    y = type_.paragraph(left, y, sheet.vkey, Style(6.6, role="mono", color=INK, leading=8.6), width)
    y -= 5
    type_.draw(left, y, sheet.offline_label, Style(8.2, role="bold", color=INK))
    y -= 10
    for command in sheet.offline:
        y = type_.paragraph(left, y, command, Style(6.6, role="mono", color=INK, leading=8.6), width)
    y -= 4
    type_.paragraph(left, y, sheet.url, Style(7.4, role="mono", color=GREEN, leading=9), width)


def _seal(type_: _Type, cx: float, cy: float, r: float, ring: str, centre: str, record_id: str) -> None:
    """A round red seal: two rings, `ring` along the top, a five-pointed star, `centre` under it and the
    record's id along the bottom, drawn with ReportLab's graphics (no image)."""
    canvas = type_.canvas
    canvas.saveState()
    canvas.setStrokeColorRGB(*SEAL_RED)
    canvas.setFillColorRGB(*SEAL_RED)
    canvas.setStrokeAlpha(0.88)
    canvas.setFillAlpha(0.88)
    canvas.setLineWidth(2.6)
    canvas.circle(cx, cy, r, stroke=1, fill=0)
    canvas.setLineWidth(0.8)
    canvas.circle(cx, cy, r - 5, stroke=1, fill=0)

    star_r = r * 0.27
    path = canvas.beginPath()
    for i in range(10):
        angle = math.pi / 2 + i * math.pi / 5
        radius = star_r if i % 2 == 0 else star_r * 0.382
        x, y = cx + radius * math.cos(angle), cy + 4 + radius * math.sin(angle)
        path.moveTo(x, y) if i == 0 else path.lineTo(x, y)
    path.close()
    canvas.drawPath(path, stroke=0, fill=1)

    zh = type_.language == "zh"
    ring_style = Style(11 if zh else 7.6, role="bold", color=SEAL_RED)
    _arc(type_, cx, cy, r - (17 if zh else 14), ring, ring_style, span=250 if zh else 236, top=True)
    _arc(type_, cx, cy, r - 12.5, record_id, Style(6.6, role="mono", color=SEAL_RED), span=48, top=False)
    type_.draw(cx, cy - r * 0.42, centre, Style(9.5 if zh else 7.4, role="bold", color=SEAL_RED), "centre")
    canvas.restoreState()


def _arc(type_: _Type, cx: float, cy: float, radius: float, text: str, style: Style, *, span: float, top: bool) -> None:
    """`text` around a circle, upright: over the top clockwise, or under the bottom left to right."""
    canvas = type_.canvas
    widths = [type_.width(ch, style) for ch in text]
    spacing = (math.radians(span) * radius - sum(widths)) / max(len(text) - 1, 1)
    spacing = max(spacing, 0.0)
    total = (sum(widths) + spacing * (len(text) - 1)) / radius  # radians
    angle = math.pi / 2 + total / 2 if top else -math.pi / 2 - total / 2
    for ch, width in zip(text, widths, strict=True):
        half = width / 2 / radius
        mid = angle - half if top else angle + half
        canvas.saveState()
        canvas.translate(cx + radius * math.cos(mid), cy + radius * math.sin(mid))
        canvas.rotate(math.degrees(mid - math.pi / 2) if top else math.degrees(mid + math.pi / 2))
        baseline = 0.0 if top else -style.size * 0.7
        type_.draw(0, baseline, ch, style, "centre")
        canvas.restoreState()
        step = (width + spacing) / radius
        angle = angle - step if top else angle + step


def _qr(canvas: Canvas, url: str, left: float, bottom: float, side: float) -> None:
    """The QR code of `url` in a `side`-point square (its quiet zone white), dark runs drawn as rectangles."""
    modules = qr.modules(url)
    count = len(modules) + 8  # four modules of quiet zone each side
    cell = side / count
    canvas.saveState()
    canvas.setFillColorRGB(1, 1, 1)
    canvas.rect(left, bottom, side, side, stroke=0, fill=1)
    canvas.setFillColorRGB(0, 0, 0)
    top = bottom + side - 4 * cell
    for r, row in enumerate(modules):
        c = 0
        while c < len(row):
            if not row[c]:
                c += 1
                continue
            start = c
            while c < len(row) and row[c]:
                c += 1
            # A hair wider and taller than the module, so no seam shows between neighbouring runs.
            canvas.rect(
                left + (start + 4) * cell,
                top - (r + 1) * cell,
                (c - start) * cell + 0.05,
                cell + 0.05,
                stroke=0,
                fill=1,
            )
    canvas.restoreState()
