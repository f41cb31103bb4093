"""The pages of single records, on SQLite and PostgreSQL: every retirement's page with its live verification,
participants' pages, a project's units, and participants shown by name (linked) wherever a page names one."""

from __future__ import annotations

import html
import re

from markupsafe import escape
from sqlalchemy import text

from ledger.storage import store
from ledger.storage.engine import read_transaction
from registry.pages.i18n import Translator
from registry.pages.times import when
from registry.public import repository
from tests.ledger.test_audit import drop_triggers
from tests.registry.pages.conftest import PUBLIC_URL, Demo
from tests.registry.pages.test_api import in_language, strict_parse

EN = Translator("en")


def items(demo: Demo, path: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = demo.client.get(f"{path}{'&' if '?' in path else '?'}limit=500").json()["items"]
    return found


def names(demo: Demo) -> dict[str, str]:
    return {str(p["id"]): str(p["name"]) for p in items(demo, "/v1/participants")}


def linked(participant_id: str, name: str) -> str:
    """How a page names a participant: its name, linked to its page, with the id on hover."""
    return f'<a href="/participants/{participant_id}" title="{participant_id}">{escape(name)}</a>'


# --- a page per retirement -----------------------------------------------------------------------------


def test_every_retirement_has_a_page_with_its_facts_and_how_to_verify_it(demo: Demo) -> None:
    vkey = demo.client.get("/v1/log/vkey").text.strip()
    everyone = names(demo)
    retirements = items(demo, "/v1/retirements")
    assert {r["purpose"] for r in retirements} == {"event", "organisation", "individual", "voluntary"}
    for r in retirements:
        rid, holder = str(r["id"]), str(r["holder"])
        response = demo.client.get(f"/retirements/{rid}", params={"lang": "en"})
        assert response.status_code == 200, rid
        page = response.text
        strict_parse(page)
        words = html.unescape(page)
        assert f"<h1>Retirement {rid}</h1>" in page
        assert f'<dd id="beneficiary">{escape(str(r["beneficiary"]))}</dd>' in page
        assert f'<dd id="reason-text">{escape(str(r["reason"]))}</dd>' in page
        assert f'<dd id="quantity">{r["quantity"]:,}</dd>' in page
        assert EN.word("p", str(r["purpose"])) in words
        if r["event_id"]:
            assert f'<a href="/events/{r["event_id"]}">' in page
        if r["year"]:
            assert f"the year {r['year']}" in words
        for block in r["blocks"]:  # type: ignore[attr-defined]
            assert f'<a class="mono" href="/serials?serial={block}">{block}</a>' in page
        assert linked(holder, everyone[holder]) in page  # the retiring holder, by name
        assert str(when(str(r["retired_time"]))) in page  # in Chengdu time, UTC on hover
        assert f"#{r['entry']}</a>" in page
        # verified live, like a claim, and how to repeat it offline with the registry's key
        assert '<p class="verdict" id="verdict">✓ Verified</p>' in page
        assert f'<dd id="checkpoint-size">{demo.ledger.size()}</dd>' in page
        assert f"curl -s {PUBLIC_URL}/v1/retirements/{rid}/certificate &gt; {rid}.json" in page
        assert f'cdcer certificate verify {rid}.json --vkey "{vkey}"' in words
        assert f'<dd class="mono" id="vkey">{vkey}</dd>' in page
        assert f'href="/retirements/{rid}/certificate.pdf?lang=en"' in page
        assert demo.client.get(f"/v1/retirements/{rid}/certificate").status_code == 200  # what it points to
    assert "✓ 已核验" in demo.client.get("/retirements/RT000001", params={"lang": "zh"}).text


def test_the_retirements_list_links_each_row_to_its_page(demo: Demo) -> None:
    page = demo.client.get("/retirements", params={"lang": "en"}).text
    shown = re.findall(r'<tr><td><a href="/retirements/([^"]+)">([^<]+)</a></td>', page)
    assert [rid for rid, _ in shown] == [r["id"] for r in items(demo, "/v1/retirements")][: len(shown)]
    assert shown
    assert all(rid == label for rid, label in shown)


def test_a_retirement_whose_entry_was_tampered_with_is_not_verified(private_demo: Demo) -> None:
    retirement = private_demo.client.get("/v1/retirements/RT000006").json()
    engine = private_demo.ledger.engine
    drop_triggers(engine)
    with read_transaction(engine) as conn:
        (stored,) = store.read_entries(conn, retirement["entry"], retirement["entry"] + 1)
    forged = stored.data.replace(b'"quantity":120', b'"quantity":121')
    assert forged != stored.data
    with engine.begin() as conn:
        conn.execute(text("UPDATE log_entries SET data = :d WHERE idx = :i"), {"d": forged, "i": retirement["entry"]})
    page = private_demo.client.get("/retirements/RT000006", params={"lang": "en"}).text
    assert '<p class="verdict" id="verdict">✗ Not verified</p>' in page
    reason = re.search(r'<p id="reason">(.*?)</p>', page, flags=re.DOTALL)
    assert reason is not None
    assert f"entry {retirement['entry']}" in reason.group(1), reason.group(1)
    assert "✓ Verified" in private_demo.client.get("/retirements/RT000007", params={"lang": "en"}).text


# --- a project's units ---------------------------------------------------------------------------------


def test_a_project_page_shows_its_units_issued_retired_cancelled_and_outstanding(demo: Demo) -> None:
    with read_transaction(demo.ledger.engine) as conn:
        projects = [p["id"] for p in items(demo, "/v1/projects")]
        totals = {pid: repository.project_units(conn, str(pid)) for pid in projects}
    assert any(t["retired"] for t in totals.values())
    assert any(t["cancelled"] for t in totals.values())  # the demo's cancellation
    for pid, units in totals.items():
        batches = items(demo, f"/v1/batches?project={pid}")
        assert units["issued"] == sum(int(str(b["quantity"])) for b in batches)
        assert units["issued"] == units["retired"] + units["cancelled"] + units["outstanding"]
        page = demo.client.get(f"/projects/{pid}", params={"lang": "en"}).text
        for key in ("issued", "retired", "cancelled", "outstanding"):
            assert f'<dd id="units-{key}">{units[key]:,}</dd>' in page, (pid, key)


# --- participants --------------------------------------------------------------------------------------


def test_a_participant_page_shows_its_roles_and_what_it_did(demo: Demo) -> None:
    organiser = demo.client.get("/participants/tianfu-expo", params={"lang": "en"}).text
    strict_parse(organiser)
    assert f"<h1>{escape(names(demo)['tianfu-expo'])}</h1>" in organiser
    assert '<dd id="roles">event organiser</dd>' in organiser
    events = [e["id"] for e in items(demo, "/v1/events?organiser=tianfu-expo")]
    retired = [r["id"] for r in items(demo, "/v1/retirements?holder=tianfu-expo")]
    assert events
    assert retired
    assert re.findall(r'<td><a href="/events/([^"]+)">', organiser) == events
    assert re.findall(r'<td><a href="/retirements/([^"]+)">', organiser) == retired

    owner = demo.client.get("/participants/pidu-solar", params={"lang": "zh"}).text
    assert "项目业主" in owner
    owned = [p["id"] for p in items(demo, "/v1/projects?owner=pidu-solar")]
    assert owned
    assert re.findall(r'<td><a href="/projects/([^"]+)">', owner) == owned

    verifier = demo.client.get("/participants/shu-verification", params={"lang": "en"}).text
    assert "Projects validated" in verifier
    nobody = demo.client.get("/participants/authority", params={"lang": "en"}).text
    assert "Nothing public yet." in nobody


def test_pages_name_participants_instead_of_showing_their_ids(demo: Demo) -> None:
    everyone = names(demo)
    claim = demo.client.get("/v1/claims/CN0001").json()
    event = demo.client.get("/v1/events/E0001").json()
    project = demo.client.get("/v1/projects/P0001").json()
    retirement = items(demo, "/v1/retirements")[0]
    serial = "CDCER-P0001-2023-001-000001"
    expected = {
        "/retirements": [str(r["holder"]) for r in items(demo, "/v1/retirements")],
        "/events": [str(e["organiser"]) for e in items(demo, "/v1/events")],
        "/claims": [str(c["organiser"]) for c in items(demo, "/v1/claims")],
        "/events/E0001": [event["organiser"]],
        "/claims/CN0001": [claim["organiser"]],
        f"/retirements/{retirement['id']}": [str(retirement["holder"])],
        "/projects/P0001": [project["owner"], project["validator"]],
        f"/serials?serial={serial}": [project["owner"]],  # the batch's first holder
    }
    for path, people in expected.items():
        page = demo.client.get(in_language(path, "en")).text
        for participant_id in people:
            assert linked(participant_id, everyone[participant_id]) in page, (path, participant_id)
        for participant_id in everyone:  # no id left bare in a table cell or a fact
            assert f"<td>{participant_id}</td>" not in page, (path, participant_id)
            assert f"<dd>{participant_id}</dd>" not in page, (path, participant_id)
