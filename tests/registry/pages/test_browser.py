"""The public pages in a real browser: Debian's headless Chromium, driven by Playwright, against `cdcer serve`.

A visitor goes from the home page to a project, to an event, to its claim certificate; the live
verification says verified; the QR code, decoded from a screenshot, is the page's own address; the PDF
downloads and carries the claim. Every page, in both languages, passes an axe-core scan without a
serious or critical violation. Screenshots go to ``test-output/screenshots/`` (``CDCER_TEST_OUTPUT``).

Nothing downloads a browser: Playwright launches ``/usr/bin/chromium`` (``CDCER_CHROMIUM``), which
``scripts/system-deps.sh`` installs from Debian. Without it these tests fail, saying so.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import zxingcpp
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright
from pypdf import PdfReader

from ledger.keys import write_key_file
from ledger.ledger import Ledger, found_registry
from ledger.storage import schema
from ledger.storage.engine import make_engine
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, Story, log_signer
from tests.ledger.scenario import ORIGIN, seeded_key
from tests.registry.live import REPO_ROOT, serve
from tests.registry.pages.conftest import demo_url
from tests.registry.pages.test_api import PAGES, in_language
from tests.registry.pages.test_points import PAGES as POINTS_PAGES
from tests.registry.pages.test_points import points_story

pytestmark = pytest.mark.browser

CHROMIUM = Path(os.environ.get("CDCER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # this machine's network is closed: no update or sync calls
    "--disable-component-update",
    "--disable-sync",
]
SERIOUS = {"serious", "critical"}


def output_dir() -> Path:
    folder = Path(os.environ.get("CDCER_TEST_OUTPUT", REPO_ROOT / "test-output")) / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cdcer serve` over a demo registry on SQLite; yields its base URL."""
    folder = tmp_path_factory.mktemp("browser")
    databases = Databases("sqlite", folder)
    url = demo_url(databases, folder)
    log_key = folder / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    try:
        with serve(url, log_key) as base:
            yield base
    finally:
        databases.drop(url)
        databases.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (bash scripts/system-deps.sh)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-GB", viewport={"width": 1100, "height": 900}, accept_downloads=True)
    try:
        yield context.new_page()
    finally:
        context.close()


def test_from_the_home_page_to_a_verified_claim(site: str, page: Page) -> None:
    shots = output_dir()
    page.goto(f"{site}/?lang=en")
    expect(page.locator("h1")).to_have_text("CDCER registry · Tanhui Tianfu")
    page.screenshot(path=shots / "home-en.png", full_page=True)

    page.get_by_role("navigation").get_by_role("link", name="Projects").click()
    expect(page.locator("h1")).to_have_text("Projects")
    page.locator("table a[href^='/projects/']").first.click()
    expect(page.locator("h1")).to_contain_text("P0001")
    expect(page.get_by_role("heading", name="Batches")).to_be_visible()
    page.screenshot(path=shots / "project-en.png", full_page=True)

    page.get_by_role("navigation").get_by_role("link", name="Events and meetings").click()
    page.locator("table a[href^='/events/']").first.click()
    expect(page.locator("h1")).to_contain_text("E0001")
    page.screenshot(path=shots / "event-en.png", full_page=True)

    page.locator("dd a[href^='/claims/']").click()
    expect(page.locator("h1")).to_have_text("Carbon-neutral claim CN0001")
    expect(page.locator("#verdict")).to_have_text("✓ Verified")
    size = page.locator("#checkpoint-size").inner_text()
    assert int(size) > 0
    assert page.locator("#key-id").inner_text().startswith(f"{ORIGIN}+")
    page.screenshot(path=shots / "claim-en.png", full_page=True)

    # The QR code on the page opens the page.
    page.locator("#qr").screenshot(path=shots / "claim-qr.png")
    decoded = zxingcpp.read_barcodes(Image.open(shots / "claim-qr.png"))
    assert [code.text for code in decoded] == [page.url]

    # The PDF downloads and carries the claim id and the footprint.
    footprint = page.locator("#footprint-total").inner_text()
    with page.expect_download() as download_info:
        page.locator("#download-pdf").click()
    download = download_info.value
    assert download.suggested_filename == "CN0001-certificate-en.pdf"
    pdf = Path(download.path()).read_bytes()
    (shots.parent / "CN0001.pdf").write_bytes(pdf)
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)
    assert "CN0001" in text
    assert f"{footprint} kgCO2e" in text


def test_from_the_retirements_to_a_verified_retirement_its_holder_and_its_certificate(site: str, page: Page) -> None:
    shots = output_dir()
    page.goto(f"{site}/retirements?lang=en")
    page.locator("table a[href^='/retirements/RT']").first.click()
    expect(page.locator("h1")).to_have_text("Retirement RT000001")
    expect(page.locator("#verdict")).to_have_text("✓ Verified")
    page.screenshot(path=shots / "retirement-en.png", full_page=True)
    page.locator("#qr").screenshot(path=shots / "retirement-qr.png")
    assert [code.text for code in zxingcpp.read_barcodes(Image.open(shots / "retirement-qr.png"))] == [page.url]

    with page.expect_download() as download_info:
        page.locator("#download-pdf").click()
    download = download_info.value
    assert download.suggested_filename == "RT000001-certificate-en.pdf"
    pdf = Path(download.path()).read_bytes()
    (shots.parent / "RT000001-certificate-en.pdf").write_bytes(pdf)
    assert "Retirement Certificate" in " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages)

    holder = page.locator("#holder a").inner_text()
    page.locator("#holder a").click()
    expect(page.locator("h1")).to_have_text(holder)
    expect(page.locator("#retirements-made a[href='/retirements/RT000001']")).to_be_visible()
    page.screenshot(path=shots / "participant-en.png", full_page=True)


def test_the_pages_work_in_chinese_and_on_a_phone(site: str, browser: Browser) -> None:
    context = browser.new_context(locale="zh-CN", viewport={"width": 390, "height": 844}, is_mobile=True)
    try:
        phone = context.new_page()
        phone.goto(f"{site}/claims/CN0001")
        expect(phone.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(phone.locator("#verdict")).to_have_text("✓ 已核验")
        width = phone.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width} px wide on a 390 px phone"
        phone.screenshot(path=output_dir() / "claim-zh-phone.png", full_page=True)
        phone.get_by_role("link", name="English").click()
        expect(phone.locator("#verdict")).to_have_text("✓ Verified")
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_serious_accessibility_violation_on_any_page(site: str, page: Page, lang: str) -> None:
    found = {}
    for path in PAGES:
        page.goto(site + in_language(path, lang))
        violations = Axe().run(page).response["violations"]
        serious = [f"{v['id']} ({v['impact']}): {v['help']}" for v in violations if v.get("impact") in SERIOUS]
        if serious:
            found[path] = serious
    assert not found, found


# --- the API docs, with no network but the registry's own -------------------------------------------------


@pytest.fixture
def offline_page(browser: Browser, site: str) -> Iterator[tuple[Page, list[str]]]:
    """A page that can reach the test server only: every other request is aborted and recorded."""
    context = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    blocked: list[str] = []
    origin = urlsplit(site).netloc

    def only_the_registry(route: Route) -> None:
        if urlsplit(route.request.url).netloc == origin:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_the_registry)
    try:
        yield context.new_page(), blocked
    finally:
        context.close()


def test_swagger_ui_renders_the_operations_offline(site: str, offline_page: tuple[Page, list[str]]) -> None:
    page, blocked = offline_page
    page.goto(f"{site}/docs")
    operation = page.locator(".opblock-post .opblock-summary", has=page.locator("[data-path='/v1/transactions']"))
    expect(operation).to_be_visible(timeout=20_000)
    expect(operation).to_contain_text("POST")
    expect(page.locator(".opblock-get [data-path='/v1/log/checkpoint']")).to_be_visible()
    page.screenshot(path=output_dir() / "docs-swagger-offline.png")
    assert blocked == []


def test_redoc_renders_the_operations_offline(site: str, offline_page: tuple[Page, list[str]]) -> None:
    page, blocked = offline_page
    page.goto(f"{site}/redoc")
    heading = page.get_by_role("heading", name="Append one signed transaction to the log and return its receipt")
    expect(heading).to_be_visible(timeout=20_000)
    heading.scroll_into_view_if_needed()
    endpoint = page.locator("button", has=page.get_by_text("/v1/transactions", exact=True)).first
    expect(endpoint).to_be_visible()
    expect(endpoint).to_contain_text("post")
    page.screenshot(path=output_dir() / "docs-redoc-offline.png")
    assert blocked == []


# --- tables on a phone ------------------------------------------------------------------------------------


PHONE_PAGES = (*PAGES, "/retirements/RT000001", "/problems", "/problems/insufficient_units", "/no/such/page")
UNWRAPPED_TABLES = "[...document.querySelectorAll('table')].filter(t => !t.closest('.table-wrap')).length"
# A cell narrower than a word it holds breaks the word (a serial ran to 35 lines, one letter a line). Words
# end at spaces, after hyphens and (in long Chinese runs) between characters, where a line may break;
# a skip link's off-screen text does not count.
SQUEEZED_CELLS = """(() => {
  const pen = document.createElement("canvas").getContext("2d");
  // Chinese prose breaks between any two characters; a short term (已登记, 持有中) is one word.
  const cjk = /[\\u3000-\\u9fff\\uff00-\\uffef]/;
  const cjkWords = word => cjk.test(word) && word.length > 4 ? [...word] : [word];
  return [...document.querySelectorAll("td, th")].filter(cell => {
    const style = getComputedStyle(cell);
    const inner = cell.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    const walker = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const text = getComputedStyle(node.parentElement);
      if (text.position === "absolute") continue;
      pen.font = `${text.fontWeight} ${text.fontSize} ${text.fontFamily}`;
      for (const word of node.textContent.split(/\\s+|(?<=-)/).flatMap(cjkWords)) {
        if (word && pen.measureText(word).width > inner + 1) return true;
      }
    }
    return false;
  }).map(cell => cell.textContent.trim().slice(0, 40));
})()"""


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_no_page_is_wider_than_a_phone(site: str, browser: Browser, lang: str) -> None:
    # A wide table scrolls inside its own box (.table-wrap); the page itself never scrolls sideways.
    context = browser.new_context(
        locale="zh-CN" if lang == "zh" else "en-GB", viewport={"width": 390, "height": 844}, is_mobile=True
    )
    try:
        phone = context.new_page()
        wide = {}
        for path in PHONE_PAGES:
            phone.goto(site + in_language(path, lang))
            width = phone.evaluate("document.documentElement.scrollWidth")
            if width > 390:
                wide[path] = width
            unwrapped = phone.evaluate(UNWRAPPED_TABLES)
            assert unwrapped == 0, f"{path}: a table outside .table-wrap"
            squeezed = phone.evaluate(SQUEEZED_CELLS)
            assert not squeezed, f"{path}: cells squeezed into a column too narrow to read: {squeezed}"
        for path in ("/", "/retirements", "/serials?serial=CDCER-P0001-2023-001-000001", "/projects/P0001"):
            phone.goto(site + in_language(path, lang))
            name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "home"
            phone.screenshot(path=output_dir() / f"phone-{lang}-{name}.png", full_page=True)
        assert not wide, f"pages wider than a 390 px phone: {wide}"
    finally:
        context.close()


# --- the points path: scenes and offers -------------------------------------------------------------------

# Recorded in the page before any of its own code runs: a violated content security policy fires this event
# whether or not the browser also logs it to the console.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture(scope="module")
def points_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`cdcer serve` over a registry on SQLite holding `test_points.points_story`; yields its base URL."""
    folder = tmp_path_factory.mktemp("points-browser")
    databases = Databases("sqlite", folder)
    url = databases.create()
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        ledger = Ledger(engine, log_signer())
        found_registry(
            ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY)
        )
        points_story(Story(ledger))
    finally:
        engine.dispose()
    log_key = folder / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    try:
        with serve(url, log_key) as base:
            yield base
    finally:
        databases.drop(url)
        databases.close()


def test_from_the_scenes_to_a_scene_and_its_offer_without_a_console_error(points_site: str, browser: Browser) -> None:
    shots = output_dir()
    context = browser.new_context(locale="en-GB", viewport={"width": 1100, "height": 900})
    problems: list[str] = []
    try:
        page = context.new_page()
        page.add_init_script(RECORD_CSP_VIOLATIONS)

        def console(message: ConsoleMessage) -> None:
            # The registry serves no /favicon.ico, and Chromium logs the 404 of its own request for it on
            # every page; that is the site's, not these pages'.
            if message.type == "error" and not message.location["url"].endswith("/favicon.ico"):
                problems.append(f"{message.text} at {message.location['url']}")

        page.on("console", console)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
        checked: list[str] = []

        def no_violation() -> None:
            checked.append(page.url)
            assert page.evaluate("window.__cspViolations") == [], page.url

        page.goto(f"{points_site}/?lang=en")
        page.get_by_role("navigation").get_by_role("link", name="Low-carbon scenes").click()
        expect(page.locator("h1")).to_have_text("Low-carbon scenes")
        no_violation()
        page.locator("#state").select_option("approved")
        page.get_by_role("button", name="Filter").click()
        expect(page).to_have_url(re.compile(r"/scenes\?state=approved$"))
        expect(page.locator("table a[href^='/scenes/']")).to_have_count(1)
        page.screenshot(path=shots / "scenes-en.png", full_page=True)
        no_violation()

        page.locator("table a[href='/scenes/tea-house']").click()
        expect(page.locator("h1")).to_have_text("tea-house · Jinli Tea House")
        expect(page.locator("#score")).to_have_text("86")
        expect(page.locator("#opinion")).to_have_text("positive")
        page.screenshot(path=shots / "scene-en.png", full_page=True)
        no_violation()

        page.locator("#offers a[href='/offers/tea-set']").click()
        expect(page.locator("h1")).to_have_text("tea-set · A pot of Zhuyeqing")
        expect(page.locator("#price")).to_have_text("500")
        expect(page.locator("#stock")).to_have_text("10")
        expect(page.locator("#limit")).to_have_text("3")
        expect(page.locator("#offer-state")).to_have_text("active")
        page.screenshot(path=shots / "offer-en.png", full_page=True)
        no_violation()

        page.get_by_role("link", name="中文").click()
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("#offer-state")).to_have_text("有效")
        page.locator("#scene").click()
        expect(page.locator("h1")).to_have_text("tea-house · Jinli Tea House")
        expect(page.locator("#opinion")).to_have_text("肯定")
        page.screenshot(path=shots / "scene-zh.png", full_page=True)
        no_violation()
        assert len(checked) == 5
        assert problems == []
    finally:
        context.close()


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_points_pages_pass_axe_and_fit_a_phone(points_site: str, browser: Browser, lang: str) -> None:
    context = browser.new_context(
        locale="zh-CN" if lang == "zh" else "en-GB", viewport={"width": 390, "height": 844}, is_mobile=True
    )
    found: dict[str, object] = {}
    try:
        phone = context.new_page()
        for path in POINTS_PAGES:
            phone.goto(points_site + in_language(path, lang))
            violations = Axe().run(phone).response["violations"]
            serious = [f"{v['id']} ({v['impact']}): {v['help']}" for v in violations if v.get("impact") in SERIOUS]
            width = phone.evaluate("document.documentElement.scrollWidth")
            squeezed = phone.evaluate(SQUEEZED_CELLS)
            unwrapped = phone.evaluate(UNWRAPPED_TABLES)
            if serious or width > 390 or squeezed or unwrapped:
                found[path] = {"axe": serious, "width": width, "squeezed": squeezed, "unwrapped": unwrapped}
        phone.goto(f"{points_site}/points/batches/b-1?lang={lang}")
        phone.screenshot(path=output_dir() / f"phone-{lang}-points-batch.png", full_page=True)
        assert not found, found
    finally:
        context.close()
