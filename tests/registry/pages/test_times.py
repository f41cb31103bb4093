"""Times on the pages: to the second in Chengdu's time (UTC+8), the UTC time in the markup and on hover."""

from __future__ import annotations

import html
from datetime import UTC, datetime

import pytest

from registry.pages.times import when
from tests.registry.pages.conftest import Demo


def test_a_utc_time_shows_in_chengdu_time_with_utc_on_hover() -> None:
    assert when("2026-12-02T10:04:05.123456Z") == (
        '<time datetime="2026-12-02T10:04:05Z" title="2026-12-02 10:04:05 UTC">2026-12-02 18:04:05 (UTC+8)</time>'
    )
    assert "2027-01-01 07:30:00 (UTC+8)" in when(datetime(2026, 12, 31, 23, 30, tzinfo=UTC))  # the next day there
    assert "2026-12-02 18:04:05 (UTC+8)" in when(datetime(2026, 12, 2, 10, 4, 5))  # naive: UTC
    assert when(None) == "—"
    assert when("not a time") == "not a time"


def local(utc: str) -> str:
    return str(when(utc))


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_the_pages_show_local_times(demo: Demo, lang: str) -> None:
    retirements = demo.client.get("/v1/retirements", params={"limit": 500}).json()["items"]
    event = demo.client.get("/events/E0001", params={"lang": lang}).text
    shown = [r for r in retirements if r["event_id"] == "E0001"]
    assert shown
    for retirement in shown:
        assert local(retirement["retired_time"]) in event
    claims = demo.client.get("/v1/claims").json()["items"]
    listing = demo.client.get("/claims", params={"lang": lang}).text
    for claim in claims:
        assert local(claim["issued_time"]) in listing
    serial = "CDCER-P0001-2023-001-000001"
    history = demo.client.get(f"/v1/serials/{serial}").json()["history"]
    page = demo.client.get("/serials", params={"serial": serial, "lang": lang}).text
    for movement in history:
        assert local(movement["time"]) in page
    claim = html.unescape(demo.client.get("/claims/CN0001", params={"lang": lang}).text)
    assert "(UTC+8)</time>" in claim  # when it was checked
    for text in (event, listing, page):
        assert "(UTC)" not in text  # no column still says its times are UTC


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_record_pages_show_local_times_too(demo: Demo, lang: str) -> None:
    claim = demo.client.get("/v1/claims/CN0001").json()
    assert local(claim["issued_time"]) in demo.client.get("/claims/CN0001", params={"lang": lang}).text
    retirements = demo.client.get("/v1/retirements", params={"limit": 500}).json()["items"]
    listing = demo.client.get("/retirements", params={"lang": lang}).text
    first = retirements[0]
    assert local(first["retired_time"]) in listing
    page = demo.client.get(f"/retirements/{first['id']}", params={"lang": lang}).text
    assert local(first["retired_time"]) in page
    holder = demo.client.get(f"/participants/{first['holder']}", params={"lang": lang}).text
    assert local(first["retired_time"]) in holder
    batch = demo.client.get("/v1/batches", params={"project": "P0001"}).json()["items"][0]
    project = demo.client.get("/projects/P0001", params={"lang": lang}).text
    assert local(batch["issued_time"]) in project
