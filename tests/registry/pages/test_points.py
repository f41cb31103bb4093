"""The points path's public pages, on SQLite and PostgreSQL: the rules, the scenes, the offers and an attested
batch, in both languages; what cannot be shown; and that no record, account id or subject reaches a page.

The browser-driven checks of the scene and offer pages are in `test_browser.py`.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from ledger.points_batch import PointRecord, subject_commitment
from ledger.storage import store
from ledger.storage.engine import write_transaction
from ledger.transactions import (
    ClaimMode,
    OfferWithdraw,
    Opinion,
    PointAccountKind,
    PointAccountOpen,
    PointsConsent,
    ProviderScope,
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
)
from registry.app import create_app
from registry.pages.i18n import TEXTS
from registry.settings import Settings
from tests.conftest import Story
from tests.ledger.scenario import ORIGIN
from tests.ledger.state.test_awards import attest
from tests.ledger.state.test_points import rule
from tests.ledger.state.test_scenes import apply, approve, evaluate, offer
from tests.registry.pages.test_api import in_language, strict_parse

A1, A2 = "PA00000000000000a1", "PA00000000000000a2"
BROWSER = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}


@dataclass(frozen=True)
class Points:
    """What `points_story` appended: the attested batch's records and its entry."""

    records: list[PointRecord]
    day: date
    attested_at: int


def km(account: str, quantity: int, day: date) -> PointRecord:
    return PointRecord(account, quantity, subject_commitment("account_day", account, day.isoformat()))


def points_story(story: Story) -> Points:
    """The points path in public: bike-km (reward only, then a claim-mode version 2 later), one batch bike-co
    attested for two accounts (one above the daily cap); tea-house approved with an active and a withdrawn
    offer, 锦里面馆 rejected after a negative evaluation, bakery-corner applied for."""
    w = story.world
    for who, roles in (
        ("bike-co", [Role.DATA_PROVIDER]),
        ("tianfu-app", [Role.PLATFORM_OPERATOR]),
        ("teahouse", [Role.MERCHANT]),
        ("bakery", [Role.MERCHANT]),
        ("green-eval", [Role.SCENE_EVALUATOR]),
    ):
        w.register(who, roles)
    w.submit("authority", rule("bike-km", w.clock.date()))
    w.submit(
        "authority",
        rule("bike-km", w.clock.date() + timedelta(days=20), version=2, claim_mode=ClaimMode.CLAIM, daily_cap=3_000),
    )
    w.submit("authority", ProviderScope(provider="bike-co", rules=("bike-km",)))
    for account in (A1, A2):
        w.submit("tianfu-app", PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
        w.submit("tianfu-app", PointsConsent(account_id=account, provider="bike-co", rule_id="bike-km", granted=True))
    w.advance(timedelta(days=10))
    story.sync()

    day = w.clock.date() - timedelta(days=2)
    records = [km(A1, 10, day), km(A2, 30, day)]  # 1,200 points and 3,600, capped at 2,000 a day
    with write_transaction(story.ledger.engine) as conn:  # what the provider's signed upload stores
        now = datetime.now(UTC).isoformat()
        store.upload_point_records(conn, batch_id="b-1", provider="bike-co", offset=0, records=records, now=now)
    attested_at = story.submit("bike-co", attest(w, "bike-co", "b-1", records, day)).index

    w.submit("teahouse", apply("tea-house"))
    w.submit("green-eval", evaluate("tea-house", score=86))
    w.submit("authority", approve(w, "tea-house", days=365))
    w.submit("teahouse", offer(w, "tea-set", "tea-house"))
    w.submit("teahouse", offer(w, "tea-cake", "tea-house", title="Osmanthus cake", price_points=300))
    w.submit("teahouse", OfferWithdraw(offer_id="tea-cake"))
    noodles = SceneApply(
        scene_id="noodle-house",
        name="锦里面馆",
        category=SceneCategory.RESTAURANT,
        district="青羊区",
        address="宽窄巷子 8 号",
        description="自带餐具减免",
    )
    w.submit("bakery", noodles)
    w.submit("green-eval", evaluate("noodle-house", Opinion.NEGATIVE, score=41))
    w.submit("authority", SceneDecide(scene_id="noodle-house", approve=False, reason="Disposables everywhere"))
    w.submit("bakery", apply("bakery-corner").model_copy(update={"name": "Corner Bakery"}))
    story.sync()
    return Points(records, day, attested_at)


@pytest.fixture
def points(story: Story) -> Points:
    return points_story(story)


@pytest.fixture
def client(story: Story, points: Points) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(origin=ORIGIN), ledger=story.ledger)) as test_client:
        yield test_client


PAGES = (
    "/points/rules",
    "/scenes",
    "/scenes?state=approved",
    "/scenes/tea-house",
    "/scenes/noodle-house",
    "/scenes/bakery-corner",
    "/offers",
    "/offers?state=withdrawn",
    "/offers/tea-set",
    "/points/batches/b-1",
)


def word(key: str, lang: str) -> str:
    zh, en = TEXTS[key]
    return zh if lang == "zh" else en


def facts(page: str) -> dict[str, str]:
    """Every <dt>…</dt><dd>…</dd> of a page, the dd's text without tags."""
    pairs = re.findall(r"<dt>(.*?)</dt><dd[^>]*>(.*?)</dd>", page, flags=re.DOTALL)
    return {html.unescape(dt): html.unescape(re.sub(r"<[^>]+>", "", dd)).strip() for dt, dd in pairs}


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_every_points_page_answers_in_both_languages_as_strict_html(client: TestClient, lang: str) -> None:
    for path in PAGES:
        response = client.get(in_language(path, lang))
        assert response.status_code == 200, (path, response.text[:500])
        assert response.headers["content-type"].startswith("text/html")
        strict_parse(response.text)
        assert f'<html lang="{"zh-CN" if lang == "zh" else "en"}">' in response.text, path
        for key in ("points_rules", "scenes", "offers"):  # the navigation, in the page's language
            assert f">{word(key, lang)}</a>" in response.text, (path, key)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_home_page_links_the_points_path(client: TestClient, lang: str) -> None:
    page = client.get("/", params={"lang": lang}).text
    links = re.search(r'<ul id="points-links">(.*?)</ul>', page, flags=re.DOTALL)
    assert links is not None
    for path, key in (("/points/rules", "points_rules"), ("/scenes", "scenes"), ("/offers", "offers")):
        assert f'<a href="{path}">{word(key, lang)}</a>' in links.group(1)
    assert word("points_intro", lang) in html.unescape(page)


def test_the_rules_page_shows_every_version_with_its_terms(client: TestClient) -> None:
    rules = client.get("/v1/points/rules").json()["items"]
    assert [(r["rule_id"], r["version"]) for r in rules] == [("bike-km", 1), ("bike-km", 2)]
    page = client.get("/points/rules", params={"lang": "en"}).text
    for r in rules:
        version = re.search(
            rf'<h3 id="rule-bike-km-v{r["version"]}">(.*?)</dl>', page, flags=re.DOTALL
        )  # each version's own facts
        assert version is not None, r
        shown = facts(version.group(1))
        assert shown["Activity unit"] == r["activity_unit"] == "km"
        assert shown["Emission factor (gCO2e per unit)"] == f"{r['emission_factor_g']:,}"
        assert shown["Factor source"] == r["factor_source"]
        assert shown["Points per gram"] == f"{r['points_per_gram']} (Points per unit: {r['emission_factor_g']})"
        assert shown["Caps (day / month / year)"] == f"{r['daily_cap']:,} / {r['monthly_cap']:,} / {r['annual_cap']:,}"
        assert shown["Late window"] == f"{r['late_window_days']} days"
        assert shown["Effective"] == f"{r['effective_from']} – open-ended"
        assert shown["Subject"] == "account per day"
        assert shown["Displaced source"] == "car-trips"
        assert shown["Published at entry"] == f"#{r['published_at']}"
    first, second = (facts(m) for m in re.findall(r'<h3 id="rule-bike-km-v\d">(.*?)</dl>', page, flags=re.DOTALL))
    assert first["Claim mode"].startswith("reward only · ")
    assert "not claimable toward carbon neutrality" in first["Claim mode"]
    assert second["Claim mode"].startswith("claim · ")
    assert "one claimant per reduction" in second["Claim mode"]
    chinese = client.get("/points/rules", params={"lang": "zh"}).text
    assert "仅奖励" in chinese
    assert "不可用于碳中和" in chinese
    assert facts(chinese)["补报期限"] == "7 天"
    assert "Chengdu transport survey 2024" in chinese  # the source as published


def test_the_scenes_list_filters_by_state(client: TestClient) -> None:
    everything = client.get("/v1/scenes").json()["items"]
    assert {s["id"]: s["state"] for s in everything} == {
        "bakery-corner": "applied",
        "noodle-house": "rejected",
        "tea-house": "approved",
    }
    page = client.get("/scenes", params={"lang": "en"}).text
    assert set(re.findall(r'<a href="/scenes/([^"]+)">', page)) == {s["id"] for s in everything}
    for state in ("approved", "rejected", "applied", "revoked"):
        filtered = client.get("/scenes", params={"state": state, "lang": "en"}).text
        expected = {s["id"] for s in everything if s["state"] == state}
        assert set(re.findall(r'<a href="/scenes/([^"]+)">', filtered)) == expected, state
        assert f'<option value="{state}" selected>' in filtered
        if not expected:
            assert "Nothing matches." in filtered
    chinese = client.get("/scenes", params={"lang": "zh"}).text
    assert "<td>锦里面馆</td>" in chinese
    assert "<td>已驳回</td>" in chinese
    assert "<td>已批准</td>" in chinese
    assert "<td>餐厅</td>" in chinese


def test_the_scenes_and_offers_lists_page_with_their_filter(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from registry.pages import api as pages_api

    monkeypatch.setattr(pages_api, "PAGE_SIZE", 1)
    seen: list[str] = []
    url: str | None = "/scenes?state=&lang=en"
    while url is not None:
        page = client.get(url).text
        seen += re.findall(r'<a href="/scenes/([^"]+)">', page)
        link = re.search(r'<a href="([^"]+)" rel="next">', page)
        url = None if link is None else html.unescape(link.group(1)) + "&lang=en"
        assert len(seen) <= 3, "the next link does not advance"
    assert seen == ["bakery-corner", "noodle-house", "tea-house"]
    page = client.get("/offers", params={"state": "active", "lang": "en"}).text
    assert re.findall(r'<a href="/offers/([^"]+)">', page) == ["tea-set"]
    assert 'rel="next"' not in page


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_scene_page_has_its_evaluation_decision_validity_and_offers(client: TestClient, lang: str) -> None:
    scene = client.get("/v1/scenes/tea-house").json()
    page = client.get("/scenes/tea-house", params={"lang": lang}).text
    shown = facts(page)
    assert shown[word("state", lang)] == word("s_approved", lang)
    assert shown[word("score", lang)] == "86"
    assert shown[word("opinion", lang)] == word("op_positive", lang)
    assert shown[word("evaluated_entry", lang)] == f"#{scene['evaluated_at']}"
    assert shown[word("decided_entry", lang)] == f"#{scene['decided_at']}"
    assert shown[word("valid_until", lang)] == scene["valid_until"]
    evaluator = client.get("/v1/participants/green-eval").json()["name"]
    assert shown[word("evaluator", lang)] == evaluator  # by its registered name, linked to its page
    assert f'<a href="/participants/green-eval" title="green-eval">{evaluator}</a>' in page
    assert shown[word("address", lang)] == "231 Wuhou Ci Street"
    offers = re.search(r'<table id="offers">(.*?)</table>', page, flags=re.DOTALL)
    assert offers is not None
    assert re.findall(r'<a href="/offers/([^"]+)">', offers.group(1)) == ["tea-cake", "tea-set"]
    assert f"<td>{word('s_withdrawn', lang)}</td>" in offers.group(1)
    assert '<td class="num">500</td>' in offers.group(1)

    rejected = facts(client.get("/scenes/noodle-house", params={"lang": lang}).text)
    assert rejected[word("state", lang)] == word("s_rejected", lang)
    assert rejected[word("opinion", lang)] == word("op_negative", lang)
    assert rejected[word("valid_until", lang)] == "—"
    applied = client.get("/scenes/bakery-corner", params={"lang": lang}).text
    assert word("not_evaluated", lang) in applied
    assert word("not_decided", lang) in applied


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_an_offer_page_has_its_price_stock_limit_validity_and_state(client: TestClient, lang: str) -> None:
    offer_row = client.get("/v1/offers/tea-set").json()
    page = client.get("/offers/tea-set", params={"lang": lang}).text
    assert "<h1>tea-set · A pot of Zhuyeqing</h1>" in page
    shown = facts(page)
    assert shown[word("price_points", lang)] == "500"
    assert shown[word("stock", lang)] == "10"
    assert shown[word("per_account_limit", lang)] == "3"
    assert shown[word("validity", lang)] == f"{offer_row['valid_from']} – {offer_row['valid_until']}"
    assert shown[word("state", lang)] == word("s_active", lang)
    assert shown[word("scene", lang)] == f"Jinli Tea House ({word('s_approved', lang)})"
    assert shown[word("offer_published_entry", lang)] == f"#{offer_row['published_at']}"
    assert '<a href="/scenes/tea-house" id="scene">' in page
    withdrawn = facts(client.get("/offers/tea-cake", params={"lang": lang}).text)
    assert withdrawn[word("state", lang)] == word("s_withdrawn", lang)


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_batch_page_shows_the_attestation(client: TestClient, points: Points, lang: str) -> None:
    batch = client.get("/v1/points/batches/b-1").json()
    page = client.get("/points/batches/b-1", params={"lang": lang}).text
    shown = facts(page)
    provider = client.get("/v1/participants/bike-co").json()["name"]
    assert shown[word("provider", lang)] == f"{provider} bike-co"  # its name, then its id
    assert shown[word("rule_version", lang)].startswith(f"bike-km · {word('v_n', lang).format(n=1)}")
    assert '<a href="/points/rules#rule-bike-km-v1">' in page
    assert shown[word("day", lang)] == points.day.isoformat() == batch["day"]
    assert shown[word("record_count", lang)] == "2"
    assert shown[word("total_quantity", lang)] == "40 km"
    assert shown[word("batch_root", lang)] == batch["root"]
    assert shown[word("points_awarded", lang)] == "3,200" == f"{batch['points_awarded']:,}"
    assert shown[word("points_capped", lang)] == "1,600" == f"{batch['points_capped']:,}"
    assert shown[word("points_clawed_back", lang)] == "0"
    assert shown[word("reduction", lang)] == "4,800" == f"{batch['reduction_g']:,}"
    assert shown[word("claimable", lang)].startswith(f"{word('no', lang)} ({word('cm_reward_only', lang)}")
    assert shown[word("attested_entry", lang)] == f"#{points.attested_at}"
    assert f'href="/v1/log/entries?start={points.attested_at}&amp;limit=1" id="entry"' in page


def test_no_record_account_or_subject_reaches_a_public_page(client: TestClient, points: Points) -> None:
    private = [A1, A2, *(r.subject for r in points.records)]
    for path in (*PAGES, "/"):
        for lang in ("zh", "en"):
            page = client.get(in_language(path, lang)).text
            for secret in private:
                assert secret not in page, (path, secret)
    page = client.get("/points/batches/b-1", params={"lang": "en"}).text
    # Nothing per record: no quantity of one record (10 or 30 km), only the batch's totals.
    text = re.sub(r"<[^>]+>", " ", page)
    assert not re.search(r"\b(10|30) km\b", text)


@pytest.mark.parametrize(
    ("path", "status", "english", "chinese"),
    [
        ("/scenes/no-such", 404, "no scene 'no-such' in the registry; list them at /scenes", "没有这个页面或记录"),
        ("/offers/no-such", 404, "no offer 'no-such' in the registry; list them at /offers", "没有这个页面或记录"),
        ("/points/batches/b-9", 404, "no attested points batch 'b-9' in the registry", "没有这个页面或记录"),
        ("/scenes?cursor=garbage", 400, "is not a cursor of this list", "分页游标无效"),
        ("/offers?cursor=garbage", 400, "is not a cursor of this list", "分页游标无效"),
        ("/points/rules?cursor=garbage", 400, "is not a cursor of this list", "分页游标无效"),
        ("/scenes?state=open", 422, "'open' is not one of", "请求参数或正文不符合 API 的模式"),
        ("/offers?state=sold", 422, "'sold' is not one of", "请求参数或正文不符合 API 的模式"),
    ],
)
def test_what_cannot_be_shown_is_the_error_page(
    client: TestClient, path: str, status: int, english: str, chinese: str
) -> None:
    for lang, message in (("en", english), ("zh", chinese)):
        response = client.get(in_language(path, lang), headers=BROWSER)
        assert response.status_code == status, response.text[:300]
        assert response.headers["content-type"].startswith("text/html")
        strict_parse(response.text)
        assert message in html.unescape(response.text), (lang, response.text[:800])
        assert '<a href="/" id="home">' in response.text


def test_a_not_yet_attested_upload_has_no_page(client: TestClient, story: Story, points: Points) -> None:
    with write_transaction(story.ledger.engine) as conn:
        store.upload_point_records(
            conn,
            batch_id="b-2",
            provider="bike-co",
            offset=0,
            records=[km(A1, 3, points.day + timedelta(days=1))],
            now=datetime.now(UTC).isoformat(),
        )
    response = client.get("/points/batches/b-2", params={"lang": "en"})
    assert response.status_code == 404
    assert A1 not in response.text
