"""The public pages over HTTP, on SQLite and PostgreSQL: both languages, strict HTML, errors, the claim page.

The browser-driven checks (navigation, the QR code, accessibility) are in `test_browser.py`.
"""

from __future__ import annotations

import html
import io
import re
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import html5lib
import httpx
import pytest
import zxingcpp
from PIL import Image, ImageDraw
from pydantic import ValidationError
from pypdf import PdfReader
from sqlalchemy import text
from typer.testing import CliRunner

from cli.main import app as cli_app
from ledger.checkpoint import CosignatureSigner
from ledger.keys import write_key_file
from ledger.ledger import Receipt
from ledger.note import parse_note
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.transactions import TransactionSigner, WitnessRegister
from registry.pages import api as pages_api
from registry.pages import chart
from registry.pages.i18n import TEXTS
from registry.settings import Settings
from tests.conftest import AUTHORITY, Databases
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.ledger.test_audit import drop_triggers
from tests.registry.live import serve
from tests.registry.pages.conftest import PUBLIC_URL, Demo, demo_url

PAGES = (
    "/",
    "/methodologies",
    "/projects",
    "/projects?q=pv",
    "/projects?state=registered&district=Pidu",
    "/projects/P0001",
    "/serials",
    "/serials?serial=CDCER-P0001-2023-001-000001",
    "/retirements",
    "/retirements/RT000001",
    "/retirements/RT000006",
    "/participants/tianfu-expo",
    "/participants/pidu-solar",
    "/events",
    "/events/E0001",
    "/claims",
    "/claims/CN0001",
    "/log",
)


def in_language(path: str, lang: str) -> str:
    """`path` with ``lang=`` added to its query (httpx's params= would replace the query)."""
    return f"{path}{'&' if '?' in path else '?'}lang={lang}"


def strict_parse(document: str) -> None:
    """Raise html5lib's ParseError at the first parse error (strict mode)."""
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(document)


@pytest.mark.parametrize("lang", ["zh", "en"])
@pytest.mark.parametrize("path", PAGES)
def test_every_page_answers_in_both_languages_as_strict_html(demo: Demo, path: str, lang: str) -> None:
    response = demo.client.get(in_language(path, lang))
    assert response.status_code == 200, response.text[:500]
    assert response.headers["content-type"].startswith("text/html")
    strict_parse(response.text)
    assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in response.text
    home, _ = TEXTS["home"] if lang == "zh" else TEXTS["home"][::-1]
    assert f">{home}</a>" in response.text  # the navigation is in the page's language
    other = "English" if lang == "zh" else "中文"
    assert f">{other}</a>" in response.text  # and offers the other one


def test_the_language_follows_the_browser_then_sticks_once_chosen(demo: Demo) -> None:
    client = demo.client
    client.cookies.clear()
    assert '<html lang="zh-CN">' in client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert '<html lang="en">' in client.get("/", headers={"Accept-Language": "en-GB,en;q=0.8,zh;q=0.5"}).text
    assert '<html lang="zh-CN">' in client.get("/", headers={"Accept-Language": "fr"}).text  # the scheme's own
    chosen = client.get("/", params={"lang": "en"}, headers={"Accept-Language": "zh"})
    assert chosen.cookies.get("lang") == "en"
    assert '<html lang="en">' in client.get("/projects", headers={"Accept-Language": "zh"}).text
    client.cookies.clear()


def test_the_switch_keeps_the_page_and_its_filters(demo: Demo) -> None:
    page = demo.client.get("/projects", params={"lang": "zh", "state": "registered"}).text
    switch = re.search(r'<a class="lang" href="([^"]+)"', page)
    assert switch is not None
    assert switch.group(1).replace("&amp;", "&") == "/projects?lang=en&state=registered"


def chart_bars(page: str) -> dict[str, dict[int, int]]:
    """The home page's chart as {series: {year: units}}, read from its SVG."""
    svg = re.search(r"<svg .*?</svg>", page, flags=re.DOTALL)
    assert svg is not None
    bars: dict[str, dict[int, int]] = {"issued": {}, "retired": {}}
    for series, year, value in re.findall(r'data-series="(\w+)" data-year="(\d+)" data-value="(\d+)"', svg.group(0)):
        bars[series][int(year)] = int(value)
    return bars


def test_the_home_page_shows_the_totals_and_a_chart(demo: Demo) -> None:
    stats = demo.client.get("/v1/stats").json()
    page = demo.client.get("/", params={"lang": "en"}).text
    for figure in (stats["units_issued"], stats["units_retired"], stats["units_cancelled"], stats["claims"]):
        assert f"<strong>{figure:,}</strong>" in page
    svg = re.search(r"<svg .*?</svg>", page, flags=re.DOTALL)
    assert svg is not None
    assert 'role="img"' in svg.group(0)
    assert '<title id="chart-title">Issuance and retirement by year</title>' in svg.group(0)
    assert ">Issued, by vintage</text>" in svg.group(0)
    assert ">Retired, by the year it was for</text>" in svg.group(0)
    assert ">Year</text>" in svg.group(0)
    bars = chart_bars(page)
    assert sum(bars["issued"].values()) == stats["units_issued"]
    assert sum(bars["retired"].values()) == stats["units_retired"]
    chinese = demo.client.get("/", params={"lang": "zh"}).text
    assert ">签发量（按减排量年份）</text>" in chinese
    assert ">年份</text>" in chinese


def test_the_demo_chart_spans_its_years_of_issuance(demo: Demo) -> None:
    # The demo is appended in one go, so every log time is today: charted by log time it was one bar.
    bars = chart_bars(demo.client.get("/", params={"lang": "en"}).text)
    batches = demo.client.get("/v1/batches", params={"limit": 500}).json()["items"]
    by_vintage: dict[int, int] = {}
    for batch in batches:
        by_vintage[batch["vintage"]] = by_vintage.get(batch["vintage"], 0) + batch["quantity"]
    assert {year: units for year, units in bars["issued"].items() if units} == by_vintage
    assert len(by_vintage) >= 3, by_vintage
    # A retirement counts in the year it was for: the organisation's year, the event's, or the year made.
    events = {e["id"]: e for e in demo.client.get("/v1/events", params={"limit": 500}).json()["items"]}
    by_year: dict[int, int] = {}
    for retirement in demo.client.get("/v1/retirements", params={"limit": 500}).json()["items"]:
        if retirement["year"] is not None:
            year = retirement["year"]
        elif retirement["event_id"] is not None:
            year = int(events[retirement["event_id"]]["end_date"][:4])
        else:
            year = int(retirement["retired_time"][:4])
        by_year[year] = by_year.get(year, 0) + retirement["quantity"]
    assert {year: units for year, units in bars["retired"].items() if units} == by_year
    assert min(by_year) < max(by_year)  # last year's organisation retirements, this year's own
    shown = sorted(bars["issued"])
    assert shown == list(range(shown[0], shown[-1] + 1))  # every year on the axis, in order


def test_the_chart_sums_by_year_and_shows_every_year_between() -> None:
    yearly = chart.series([(2021, 1), (2023, 2), (2021, 4)], [(2024, 3)])
    assert (yearly.labels, yearly.issued, yearly.retired) == (
        ("2021", "2022", "2023", "2024"),
        (5, 0, 2, 0),
        (0, 0, 0, 3),
    )
    assert chart.series([], []).labels == ()
    sparse = chart.series([(2000, 1), (2100, 1)], [])
    assert sparse.labels == ("2000", "2100")  # a century of empty slots would be unreadable
    drawn = chart.svg(yearly, names={"issued": "Issued", "retired": "Retired"}, axis="Year", title="T", description="D")
    assert drawn.count("<rect") == 4 * 2 + 2  # two bars per year and two legend keys
    strict_parse(f"<!DOCTYPE html><html lang=en><title>t</title><body>{drawn}</body></html>")


def test_projects_search_and_filters(demo: Demo) -> None:
    everything = demo.client.get("/v1/projects", params={"limit": 500}).json()["items"]
    registered = {p["id"] for p in everything if p["state"] == "registered"}
    page = demo.client.get("/projects", params={"state": "registered", "lang": "en"}).text
    shown = set(re.findall(r'<a href="/projects/([^"]+)">', page))
    assert shown == registered
    first = everything[0]
    word = first["title"].split()[0]
    found = demo.client.get("/projects", params={"q": word.upper(), "lang": "en"}).text
    assert f'href="/projects/{first["id"]}"' in found  # case-insensitive
    assert "Nothing matches." in demo.client.get("/projects", params={"q": "%_ no such project", "lang": "en"}).text


def test_a_project_page_has_its_batches_reports_and_history(demo: Demo) -> None:
    project = demo.client.get("/v1/projects/P0001").json()
    page = demo.client.get("/projects/P0001", params={"lang": "en"}).text
    for batch in project["batches"]:
        assert f"<td>{batch['id']}</td>" in page
    for report in project["reports"]:
        assert f"<td>{report['id']}</td>" in page
        assert f"Monitoring report {report['id']} submitted" in page
    assert f"#{project['submitted_at']}</a></td><td>Project submitted" in page


def test_a_serial_lookup_shows_its_history(demo: Demo) -> None:
    serial = "CDCER-P0001-2023-001-000001"
    history = demo.client.get(f"/v1/serials/{serial}").json()["history"]
    page = demo.client.get("/serials", params={"serial": serial, "lang": "en"}).text
    for movement in history:
        assert f"#{movement['entry']}</td>" in page
    assert ">issued<" in page


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/projects/P9999", 404, "no project 'P9999' in the registry"),
        ("/events/E9999", 404, "no event 'E9999'"),
        ("/claims/CN9999", 404, "no claim 'CN9999'"),
        ("/claims/CN9999/certificate.pdf", 404, "no claim 'CN9999'"),
        ("/retirements/RT999999", 404, "no retirement 'RT999999' in the registry; list them at /retirements"),
        ("/retirements/RT999999/certificate.pdf", 404, "no retirement 'RT999999'"),
        ("/participants/nobody", 404, "no participant 'nobody' in the registry; list them at /v1/participants"),
        ("/projects?cursor=garbage", 400, "is not a cursor of this list"),
        ("/serials?serial=not-a-serial", 400, "not-a-serial"),
    ],
)
def test_what_cannot_be_shown_is_a_page_that_says_why(demo: Demo, path: str, status: int, message: str) -> None:
    response = demo.client.get(in_language(path, "en"))
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/html")
    assert message in html.unescape(response.text)
    strict_parse(response.text)


def test_the_claim_page_verifies_against_the_latest_checkpoint(demo: Demo) -> None:
    claim = demo.client.get("/v1/claims/CN0001").json()
    page = demo.client.get("/claims/CN0001", params={"lang": "en"}).text
    size = demo.ledger.size()
    assert '<p class="verdict" id="verdict">✓ Verified</p>' in page
    assert f'<dd id="checkpoint-size">{size}</dd>' in page
    key_id = demo.client.get("/v1/log/vkey").text.strip().rsplit("+", 1)[0]
    assert f'<dd class="mono" id="key-id">{key_id}</dd>' in page
    assert f'id="footprint-total">{claim["footprint_kg"]:,}</td>' in page
    for block in claim["blocks"]:
        assert block in page
    assert f"#{claim['entry']}</td><td>carbon-neutral claim" in page
    assert 'src="data:image/svg+xml' in page  # the QR code (decoded in the browser test)
    chinese = demo.client.get("/claims/CN0001", params={"lang": "zh"}).text
    assert "✓ 已核验" in chinese


def test_the_claim_pdf_carries_the_facts(demo: Demo) -> None:
    claim = demo.client.get("/v1/claims/CN0001").json()
    for lang in ("en", "zh"):
        response = demo.client.get("/claims/CN0001/certificate.pdf", params={"lang": lang})
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/pdf"
        assert response.headers["content-disposition"] == f'attachment; filename="CN0001-certificate-{lang}.pdf"'
        reader = PdfReader(io.BytesIO(response.content))
        words = " ".join(page.extract_text() for page in reader.pages)
        assert "CN0001" in words
        assert f"{claim['footprint_kg']:,} kgCO2e" in words
        assert f"{PUBLIC_URL}/claims/CN0001" in words
        for block in claim["blocks"]:
            assert block in words


def test_a_claim_whose_entry_was_tampered_with_is_not_verified(private_demo: Demo) -> None:
    claim = private_demo.client.get("/v1/claims/CN0001").json()
    engine = private_demo.ledger.engine
    drop_triggers(engine)
    with read_transaction(engine) as conn:
        (stored,) = store.read_entries(conn, claim["entry"], claim["entry"] + 1)
    original = stored.data
    forged = original.replace(b'"CN0001"', b'"CN0002"') if b'"CN0001"' in original else original[:-2] + b" }"
    assert forged != original
    with engine.begin() as conn:
        conn.execute(text("UPDATE log_entries SET data = :d WHERE idx = :i"), {"d": forged, "i": claim["entry"]})
    page = private_demo.client.get("/claims/CN0001", params={"lang": "en"})
    assert page.status_code == 200
    assert '<p class="verdict" id="verdict">✗ Not verified</p>' in page.text
    reason = re.search(r'<p id="reason">(.*?)</p>', page.text, flags=re.DOTALL)
    assert reason is not None
    assert f"entry {claim['entry']}" in reason.group(1), reason.group(1)
    strict_parse(page.text)
    assert "✗ 未通过核验" in private_demo.client.get("/claims/CN0001", params={"lang": "zh"}).text


def test_the_log_page_shows_the_checkpoint_and_its_witnesses(private_demo: Demo) -> None:
    client = private_demo.client
    witness = CosignatureSigner("witness.test/sichuan-university", seeded_key("witness").seed)
    authority = TransactionSigner(ORIGIN, AUTHORITY, seeded_key(AUTHORITY))
    now = datetime.now(UTC)
    (receipt,) = private_demo.ledger.submit(
        [authority.sign(WitnessRegister(vkey=witness.verifier_key()), at=now)], now=now
    )
    assert isinstance(receipt, Receipt)
    before = client.get("/log", params={"lang": "en"}).text
    assert "No witness has cosigned this checkpoint yet." in before
    note = client.get("/v1/log/checkpoint").content
    size = int(parse_note(note).text.splitlines()[1])
    line = witness.cosign(parse_note(note).text, int(now.timestamp())).line()
    assert client.post("/v1/log/cosignatures", json={"size": size, "cosignature": line}).status_code == 201
    page = client.get("/log", params={"lang": "en"}).text
    strict_parse(page)
    assert f'<dd id="checkpoint-size">{size}</dd>' in page
    assert "<td>witness.test/sichuan-university</td>" in page
    assert "<td>witness</td>" in page
    assert "<td>the registry</td>" in page
    assert "No witness has cosigned" not in page
    vkey = client.get("/v1/log/vkey").text.strip()
    assert f'<dd class="mono" id="vkey">{vkey}</dd>' in page
    assert f'cdcer audit verify --url {PUBLIC_URL} --vkey "$CDCER_VKEY"' in page


# --- paging a serial's history -------------------------------------------------------------------------


def test_the_serial_page_pages_its_history(demo: Demo, monkeypatch: pytest.MonkeyPatch) -> None:
    serial = "CDCER-P0001-2023-001-000001"
    history = demo.client.get(f"/v1/serials/{serial}", params={"limit": 500}).json()["history"]
    assert len(history) >= 2
    monkeypatch.setattr(pages_api, "PAGE_SIZE", 1)
    pages: list[list[str]] = []
    url: str | None = f"/serials?serial={serial}&lang=en"
    while url is not None:
        page = demo.client.get(url)
        assert page.status_code == 200
        strict_parse(page.text)
        pages.append(re.findall(r'<td class="num">#(\d+)</td>', page.text))
        link = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        url = None if link is None else html.unescape(link.group(1))
        assert url is None or url.startswith(f"/serials?serial={serial}&cursor=")
        assert len(pages) <= len(history), "the next link does not advance"
    assert pages == [[str(move["entry"])] for move in history]  # one movement a page, each once, in order


def test_a_bad_cursor_on_the_serial_page_says_why(demo: Demo) -> None:
    page = demo.client.get("/serials", params={"serial": "CDCER-P0001-2023-001-000001", "cursor": "x", "lang": "en"})
    assert page.status_code == 400
    assert "is not a cursor of this list" in html.unescape(page.text)


# --- the public base URL, never the Host header --------------------------------------------------------


def svg_qr_texts(data_uri: str) -> list[str]:
    """Decode the QR code of a segno SVG data URI (one stroked path of horizontal runs) with zxing-cpp."""
    svg = unquote(data_uri.removeprefix("data:image/svg+xml;charset=utf-8,"))
    size = re.search(r"d='M0 0h(\d+)v", svg)
    path = re.search(r"class='qrline'[^>]*\bd='([^']+)'", svg)
    assert size is not None, svg[:300]
    assert path is not None, svg[:300]
    scale = 8
    image = Image.new("L", (int(size.group(1)) * scale,) * 2, 255)
    draw = ImageDraw.Draw(image)
    x = y = 0.0
    for command, first, second in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path.group(1)):
        if command == "M":
            x, y = float(first), float(second)
        elif command == "m":
            x, y = x + float(first), y + float(second)
        else:  # a run of dark modules, stroked one module high around y
            run = float(first)
            draw.rectangle([x * scale, (y - 0.5) * scale, (x + run) * scale - 1, (y + 0.5) * scale - 1], fill=0)
            x += run
    return [code.text for code in zxingcpp.read_barcodes(image)]


SPOOFED = {"Host": "evil.example", "X-Forwarded-Host": "evil.example", "Forwarded": "host=evil.example"}


def test_a_spoofed_host_reaches_no_url_the_claim_page_or_its_pdf_emit(demo: Demo) -> None:
    claim_url = f"{PUBLIC_URL}/claims/CN0001"
    page = demo.client.get("/claims/CN0001", params={"lang": "en"}, headers=SPOOFED)
    assert page.status_code == 200
    assert "evil.example" not in page.text
    source = re.search(r'<img src="([^"]+)"[^>]*id="qr"', page.text)
    assert source is not None
    assert svg_qr_texts(html.unescape(source.group(1))) == [claim_url]
    assert f"curl -s {PUBLIC_URL}/v1/claims/CN0001/certificate" in page.text

    pdf = demo.client.get("/claims/CN0001/certificate.pdf", params={"lang": "en"}, headers=SPOOFED)
    assert pdf.status_code == 200
    reader = PdfReader(io.BytesIO(pdf.content))
    words = " ".join(p.extract_text() for p in reader.pages)
    assert claim_url in words
    assert "evil" not in words
    assert reader.metadata is not None
    assert reader.metadata.subject == claim_url

    log = demo.client.get("/log", params={"lang": "en"}, headers=SPOOFED).text
    assert "evil.example" not in log
    assert f"cdcer audit verify --url {PUBLIC_URL} " in log


@pytest.mark.parametrize(
    ("given", "wrong"),
    [
        ("registry.example.cn", "absolute"),
        ("ftp://registry.example.cn", "absolute"),
        ("https://", "absolute"),
        ("https://registry.example.cn/?next=1", "query"),
        ("https://registry.example.cn/#top", "fragment"),
        ("https://admin:secret@registry.example.cn", "credentials"),
        ("https://registry.example.cn:99999", "not a URL"),
        ("https://registry .example.cn", "whitespace"),
    ],
)
def test_the_public_base_url_must_be_an_absolute_http_url(given: str, wrong: str) -> None:
    with pytest.raises(ValidationError, match=wrong):
        Settings(public_base_url=given)


def test_the_public_base_url_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CDCER_PUBLIC_BASE_URL", raising=False)
    assert Settings().public_base_url == "http://127.0.0.1:8000"
    monkeypatch.setenv("CDCER_PUBLIC_BASE_URL", "https://registry.example.cn/")
    assert Settings().public_base_url == "https://registry.example.cn"
    monkeypatch.setenv("CDCER_PUBLIC_BASE_URL", "https://registry.example.cn/?x=1")
    with pytest.raises(ValidationError, match="query"):
        Settings()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--public-url", "ftp://registry.example.cn"], "--public-url: 'ftp://registry.example.cn' is not an absolute"),
        (["--host", "0.0.0.0"], "serves every interface: say where the public reaches the registry with --public-url"),
    ],
)
def test_serve_refuses_a_public_url_it_cannot_emit_in_one_line(
    tmp_path: Path, options: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        cli_app,
        ["serve", "-d", f"sqlite:///{tmp_path}/none.db", *options],
        env={"CDCER_PUBLIC_BASE_URL": None},
    )
    assert result.exit_code == 2, result.stderr + result.stdout
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr


def test_cdcer_serve_emits_its_public_url_whatever_the_host_header(tmp_path: Path) -> None:
    databases = Databases("sqlite", tmp_path)
    url = demo_url(databases, tmp_path)
    log_key = tmp_path / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    try:
        for env in ({"CDCER_PUBLIC_BASE_URL": "https://registry.example.cn"}, {"CDCER_PUBLIC_BASE_URL": None}):
            with serve(url, log_key, env=env) as base:
                page = httpx.get(f"{base}/claims/CN0001?lang=en", headers=SPOOFED, timeout=30)
                assert page.status_code == 200
                source = re.search(r'<img src="([^"]+)"[^>]*id="qr"', page.text)
                assert source is not None
                public = env["CDCER_PUBLIC_BASE_URL"] or base  # unset: the served address
                assert svg_qr_texts(html.unescape(source.group(1))) == [f"{public}/claims/CN0001"]
                assert "evil.example" not in page.text
    finally:
        databases.drop(url)
        databases.close()
