"""The PDF certificates, on SQLite and PostgreSQL: one language each, the facts as text, every font embedded,
a QR code that decodes to the configured public URL, long names wrapped inside the margins, and a clear
refusal when no CJK font can be embedded. Each is rendered to PNG in ``test-output/certificates/``.

Rendering needs poppler's ``pdftoppm`` (``bash scripts/system-deps.sh`` installs it).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import zxingcpp
from PIL import Image
from pypdf import PdfReader
from pypdf.generic import DictionaryObject

from registry.pages import pdf
from registry.pages.i18n import Translator
from registry.pages.service import Verification
from tests.registry.live import REPO_ROOT
from tests.registry.pages.conftest import PUBLIC_URL, Demo
from tests.registry.pages.test_api import SPOOFED

CERTIFICATES = [
    ("/claims/CN0001/certificate.pdf", "zh", "CN0001-certificate-zh.pdf"),
    ("/claims/CN0001/certificate.pdf", "en", "CN0001-certificate-en.pdf"),
    ("/retirements/RT000001/certificate.pdf", "en", "RT000001-certificate-en.pdf"),
    ("/retirements/RT000006/certificate.pdf", "zh", "RT000006-certificate-zh.pdf"),
]


def output_dir() -> Path:
    folder = Path(os.environ.get("CDCER_TEST_OUTPUT", REPO_ROOT / "test-output")) / "certificates"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def to_png(document: bytes, name: str, *, dpi: int = 110) -> list[Path]:
    """Each page of `document` as a PNG in test-output (``name-1.png``, ...), rendered by pdftoppm."""
    if shutil.which("pdftoppm") is None:
        pytest.fail("no pdftoppm: install Debian's poppler-utils (bash scripts/system-deps.sh)")
    folder = output_dir()
    source = folder / f"{name}.pdf"
    source.write_bytes(document)
    for old in folder.glob(f"{name}-*.png"):
        old.unlink()
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(source), str(folder / name)], check=True)
    return sorted(folder.glob(f"{name}-*.png"))


def text_of(document: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(document)).pages)


def squeezed(words: str) -> str:
    """The text without whitespace: a key or a URL wrapped over two lines is whole again."""
    return re.sub(r"\s+", "", words)


@pytest.fixture
def certificates(demo: Demo) -> dict[str, bytes]:
    made = {}
    for path, lang, filename in CERTIFICATES:
        response = demo.client.get(path, params={"lang": lang})
        assert response.status_code == 200, response.text[:500]
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == f'attachment; filename="{filename}"'
        made[filename] = response.content
    return made


def test_each_certificate_is_in_its_language_and_carries_the_facts(demo: Demo, certificates: dict[str, bytes]) -> None:
    vkey = demo.client.get("/v1/log/vkey").text.strip()
    claim = demo.client.get("/v1/claims/CN0001").json()
    event = demo.client.get(f"/v1/events/{claim['event_id']}").json()
    organiser = demo.client.get(f"/v1/participants/{claim['organiser']}").json()
    entries = [e["index"] for e in demo.client.get("/v1/claims/CN0001/certificate").json()["entries"]]
    for lang in ("zh", "en"):
        words = text_of(certificates[f"CN0001-certificate-{lang}.pdf"])
        whole = squeezed(words)
        title, other = ("碳中和证书", "Carbon Neutrality Certificate")[:: 1 if lang == "zh" else -1]
        assert title in words
        assert other in words  # the bilingual title, and nothing else in the other language
        assert ("组织方" in words) == (lang == "zh")
        assert ("Organiser" in words) == (lang == "en")
        assert squeezed(event["name"]) in whole
        assert squeezed(organiser["name"]) in whole
        assert f"{claim['footprint_kg']:,} kgCO2e" in words
        assert f"{claim['units']:,}" in words
        assert f"{event['start_date']} – {event['end_date']}" in words
        for block in claim["blocks"]:
            assert block in words
        for index in entries:
            assert f"#{index}" in words
        assert squeezed(vkey) in whole
        assert f"{PUBLIC_URL}/claims/CN0001" in whole
        assert f"{PUBLIC_URL}/v1/claims/CN0001/certificate" in whole
        assert "cdcer certificate verify CN0001.json --vkey VKEY" in words

    retirements = {r: demo.client.get(f"/v1/retirements/{r}").json() for r in ("RT000001", "RT000006")}
    english = text_of(certificates["RT000001-certificate-en.pdf"])
    chinese = text_of(certificates["RT000006-certificate-zh.pdf"])
    assert "Retirement Certificate" in english
    assert "Beneficiary" in english
    assert "受益方" not in english
    assert "注销证明" in chinese
    assert "受益方" in chinese
    assert "Beneficiary" not in chinese
    holders = {
        r["holder"]: demo.client.get(f"/v1/participants/{r['holder']}").json()["name"] for r in retirements.values()
    }
    for words, r in ((english, retirements["RT000001"]), (chinese, retirements["RT000006"])):
        whole = squeezed(words)
        assert squeezed(r["beneficiary"]) in whole
        assert squeezed(r["reason"]) in whole
        assert squeezed(holders[r["holder"]]) in whole
        assert r["retired_time"] in words
        for block in r["blocks"]:
            assert block in words
        assert f"{PUBLIC_URL}/retirements/{r['id']}" in whole
        assert squeezed(vkey) in whole
    assert "E0001" in english  # the event it was for
    assert "2025" in chinese  # the organisation's year


def _fonts(reader: PdfReader) -> Iterator[tuple[str, DictionaryObject]]:
    """Every font a page's resources name (descendant fonts of composite fonts too), by base name."""
    for page in reader.pages:
        resources = page["/Resources"].get_object()
        assert isinstance(resources, DictionaryObject)
        fonts = resources.get("/Font", DictionaryObject()).get_object()
        assert isinstance(fonts, DictionaryObject)
        for ref in fonts.values():
            font = ref.get_object()
            assert isinstance(font, DictionaryObject)
            yield str(font["/BaseFont"]), font
            for descendant in font.get("/DescendantFonts", []):
                inner = descendant.get_object()
                assert isinstance(inner, DictionaryObject)
                yield str(inner["/BaseFont"]), inner


def test_every_font_in_a_certificate_is_embedded(certificates: dict[str, bytes]) -> None:
    for filename, document in certificates.items():
        reader = PdfReader(io.BytesIO(document))
        fonts = list(_fonts(reader))
        assert fonts, filename
        for name, font in fonts:
            if str(font["/Subtype"]) == "/Type0":  # composite: the glyphs live in its descendant
                continue
            descriptor = font.get("/FontDescriptor")
            assert descriptor is not None, f"{filename}: font {name} has no descriptor, so nothing is embedded"
            embedded = {"/FontFile", "/FontFile2", "/FontFile3"} & set(descriptor.get_object())
            assert embedded, f"{filename}: font {name} is not embedded"
        bases = {name.split("+", 1)[-1] for name, _ in fonts}
        assert "STSong-Light" not in bases
        assert any("UMing" in base or "ZenHei" in base for base in bases), bases  # the Chinese is in it


def test_the_qr_code_decodes_to_the_configured_public_url_whatever_the_host(demo: Demo) -> None:
    for path, lang, filename in CERTIFICATES:
        response = demo.client.get(path, params={"lang": lang}, headers=SPOOFED)
        assert "evil" not in text_of(response.content)
        pages = to_png(response.content, filename.removesuffix(".pdf"), dpi=150)
        assert len(pages) == 1, f"{filename} is {len(pages)} pages; it should fit on one"
        with Image.open(pages[0]) as image:
            assert image.size == (1241, 1754)  # A4 at 150 dpi
            decoded = [code.text for code in zxingcpp.read_barcodes(image)]
        record = path.removesuffix("/certificate.pdf")
        assert decoded == [f"{PUBLIC_URL}{record}"], filename


def _long_context(record_id: str, blocks: int) -> dict[str, Any]:
    beneficiary = (
        "成都市青羊区少城街道宽窄巷子社区居民委员会与四川省低碳发展促进会联合主办的"
        "Chengdu Kuanzhai Alley Neighbourhood Committee and the Sichuan Low-Carbon Development Association's "
        "jointly organised community carbon-neutral family weekend programme for 2025"
    )
    return {
        "retirement": {
            "id": record_id,
            "holder": "green-tianfu-fund",
            "quantity": 1_234_567,
            "blocks": [
                f"CDCER-P{i % 9 + 1:04d}-2024-{i % 3 + 1:03d}-{i * 10 + 1:06d}-{i * 10 + 9:06d}" for i in range(blocks)
            ],
            "beneficiary": beneficiary,
            "purpose": "individual",
            "event_id": None,
            "year": None,
            "reason": "A reason that goes on and on to see that it wraps: " + "碳中和家庭周末，" * 12,
            "claim_id": None,
            "entry": 4242,
            "retired_time": "2026-03-01T08:00:00Z",
        },
        "event": None,
        "names": {"green-tianfu-fund": "Green Tianfu Citizens' Fund (绿色天府公益基金)"},
        "verification": Verification(datetime.now(UTC), None, None, "entry 4242: leaf hash mismatch (a test)"),
        "entries": [(i, "key") for i in range(0, 400, 7)],
        "vkey": "registry.example.cn/cdcer+0123abcd+" + "A" * 44,
        "json_url": f"https://registry.example.cn/v1/retirements/{record_id}/certificate",
        "url": f"https://registry.example.cn/retirements/{record_id}",
    }


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_long_names_wrap_inside_the_margins_and_many_blocks_continue_on_annex_pages(
    lang: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[tuple[int, float, float, float, str]] = []
    draw = pdf._Type.draw

    def recording(self: Any, x: float, y: float, text: str, style: pdf.Style, align: str = "left") -> None:
        width = self.width(text, style)
        left = x - (width / 2 if align == "centre" else width if align == "right" else 0)
        if left >= 0:  # the seal's characters are drawn at 0 in their own turned axes
            drawn.append((self.canvas.getPageNumber(), left, left + width, y, text))
        draw(self, x, y, text, style, align)  # type: ignore[arg-type]

    monkeypatch.setattr(pdf._Type, "draw", recording)
    context = _long_context("RT000042", blocks=160)
    document = pdf.retirement_certificate(context, Translator(lang))  # type: ignore[arg-type]
    pages = to_png(document, f"RT000042-long-{lang}")
    assert len(pages) >= 3
    assert drawn
    for page, left, right, y, text in drawn:
        assert pdf.LEFT - 0.5 <= left, (page, text)
        assert right <= pdf.RIGHT + 0.5, (page, text)
        assert y >= 36, (page, y, text)  # above the frame
    facts = [(page, y) for page, left, _, y, _ in drawn if left == pdf.LEFT + pdf.LABEL_WIDTH + pdf.GUTTER]
    assert all(y > pdf.FOOTER_TOP for page, y in facts if page == 1)  # nothing runs into the seal or the QR
    assert all(y > pdf.ANNEX_BOTTOM - 1 for _, y in facts)
    words = squeezed(text_of(document))
    assert squeezed(context["retirement"]["beneficiary"]) in words
    for block in context["retirement"]["blocks"]:
        assert block in words
    assert "leafhashmismatch" in words  # not verified, and it says so


def test_without_a_cjk_font_to_embed_a_certificate_is_refused_saying_what_to_install(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(pdf.FONT_CANDIDATES, "cjk", (("No Such CJK Font", "Regular", "/nonexistent/cjk.ttf"),))
    pdf.fonts.cache_clear()
    try:
        with pytest.raises(
            pdf.FontMissing, match=r"no TrueType Chinese \(CJK\) font .* install Debian's fonts-arphic-uming"
        ):
            pdf.fonts()
        response = demo.client.get("/claims/CN0001/certificate.pdf", params={"lang": "en"})
        assert response.status_code == 503
        assert response.headers["content-type"].startswith("text/html")
        assert "fonts-arphic-uming" in response.text
        noto = "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
        if Path(noto).exists():  # a CFF font is found, and refused rather than used unembedded
            monkeypatch.setitem(pdf.FONT_CANDIDATES, "cjk", (("Noto Sans CJK SC", "Regular", noto),))
            with pytest.raises(pdf.FontMissing, match="Noto Sans CJK SC Regular at .*postscript outlines"):
                pdf.fonts()
    finally:
        monkeypatch.undo()
        pdf.fonts.cache_clear()
    assert pdf.fonts().names["cjk"] == "CDCER-cjk"
