"""`cdcer points ...`, `cdcer scene ...`, `cdcer offer ...` and `cdcer redemption ...` over real HTTP: rules,
providers' rules, point accounts, consent, the points' policy, expiry and clawback, scenes, offers and
redemptions, and their refusals (one line, exit 2, nothing appended)."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

from cli.client import BODY_COVERED, sign_body_request
from ledger.keys import write_key_file
from tests.cli.test_writes import PASSPHRASE, Served, serve_registry
from tests.conftest import Databases
from tests.ledger.scenario import seeded_key

RULE = (
    "--version", "1", "--title", "Shared-bike kilometres", "--activity-unit", "km", "--emission-factor-g", "120",
    "--factor-source", "Chengdu transport survey 2024", "--points-per-gram", "1", "--daily-cap", "2000",
    "--monthly-cap", "30000", "--annual-cap", "200000", "--late-window-days", "7", "--claim-mode", "reward_only",
    "--subject", "account_day", "--displaced-source", "car-trips",
)  # fmt: skip


@pytest.fixture(scope="module")
def served(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("cli-points")
    for who in ("bike-co", "tianfu-app", "teahouse-co", "green-eval", "mall-app", "policy-app"):
        write_key_file(directory / f"{who}.key", seeded_key(who), passphrase=PASSPHRASE, label=who)
    yield from serve_registry(databases, directory)


def register(served: Served, who: str, role: str) -> None:
    served.write(
        "authority", "participant", "register", who, "--name", who.title(), "--role", role,
        "--public-key", str(Path(served.key(who))),
    )  # fmt: skip


def test_the_public_paths_foundations_with_cdcer_commands(served: Served) -> None:
    register(served, "bike-co", "data_provider")
    register(served, "tianfu-app", "platform_operator")
    today = datetime.now(UTC).date()
    published = served.write("authority", "points", "rule-publish", "bike-km", *RULE, "--effective-from", str(today))
    assert published["outcome"] == {"kind": "points.rule_publish", "rule_id": "bike-km", "version": 1}
    scoped = served.write("authority", "points", "provider-scope", "bike-co", "--rule", "bike-km")
    assert scoped["outcome"]["rules"] == ["bike-km"]
    opened = served.write("tianfu-app", "points", "account-open", "--kind", "citizen")
    account = opened["outcome"]["account_id"]
    assert account.startswith("PA")  # random: no personal data
    assert len(account) == 18
    consent = served.write("tianfu-app", "points", "consent", account, "--provider", "bike-co", "--rule", "bike-km")
    assert consent["outcome"]["granted"] is True
    withdrawn = served.write(
        "tianfu-app", "points", "consent", account, "--provider", "bike-co", "--rule", "bike-km", "--withdraw"
    )
    assert withdrawn["outcome"]["granted"] is False

    # A version dated yesterday is refused with the registry's reason on one line, exit 2.
    yesterday = str(today - timedelta(days=1))
    refused = served.cdcer("authority", "points", "rule-publish", "walk-steps", *RULE, "--effective-from", yesterday)
    assert refused.exit_code == 2
    assert "a rule never applies retroactively" in refused.stderr
    errors = [line for line in refused.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1  # the reason, on one line
    # A bad account id is refused before anything is sent, naming the argument.
    bad = served.cdcer("tianfu-app", "points", "account-open", "PA-alice", "--kind", "citizen")
    assert bad.exit_code == 2
    assert "--account-id: String should match pattern" in bad.stderr


def test_a_project_declares_its_scope_and_a_bad_scope_is_refused_locally(served: Served) -> None:
    bad = served.cdcer("authority", "project", "scope", "P0001", "--scope", "car-trips")
    assert bad.exit_code == 2
    assert "expected SOURCE:SUBJECT with SUBJECT one of account_day, vehicle_day, meter_month" in bad.stderr
    missing = served.cdcer("authority", "project", "scope", "P0404", "--scope", "car-trips:account_day")
    assert missing.exit_code == 2
    assert "project.scope needs the role project_owner" in missing.stderr


def tree_size(served: Served) -> int:
    return int(httpx.get(f"{served.url}/v1/log/checkpoint").text.splitlines()[1])


def refused(served: Served, who: str, *args: str) -> str:
    """A write the registry refuses: exit 2, its reason on one line of stderr, and nothing appended."""
    before = tree_size(served)
    result = served.cdcer(who, *args)
    assert result.exit_code == 2, result.stderr + result.stdout
    errors = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(errors) == 1, result.stderr
    assert tree_size(served) == before
    return errors[0]


def test_the_points_policy_expiry_and_clawback_with_cdcer_commands(served: Served) -> None:
    policy = served.write("authority", "points", "policy", "--lifetime-months", "24")
    assert policy["outcome"] == {"kind": "points.policy", "lifetime_months": 24}
    expired = served.write("authority", "points", "expire", "--through", "2000-01")
    assert expired["outcome"]["kind"] == "points.expire"
    assert expired["outcome"]["through_month"] == "2000-01"

    this_month = datetime.now(UTC).strftime("%Y-%m")
    assert "stay redeemable for 24 months" in refused(served, "authority", "points", "expire", "--through", this_month)
    assert "no attested batch bike-2024-01-01" in refused(
        served, "authority", "points", "clawback", "bike-2024-01-01", "--reason", "fraudulent trips"
    )
    bad_month = refused(served, "authority", "points", "expire", "--through", "2024-13")
    assert bad_month.startswith("error: --through: String should match pattern")
    bad_account = refused(
        served, "authority", "points", "clawback", "bike-2024-01-01", "--account", "PA-x", "--reason", "fraud"
    )
    assert bad_account.startswith("error: --account: String should match pattern")
    # Its own operator: the tests of this module may run on other workers (pytest-xdist), each its own registry.
    register(served, "policy-app", "platform_operator")
    assert "policy needs the role authority" in refused(
        served, "policy-app", "points", "policy", "--lifetime-months", "6"
    )


def test_a_scene_its_offer_and_redemptions_with_cdcer_commands(served: Served, tmp_path: Path) -> None:
    register(served, "teahouse-co", "merchant")
    register(served, "green-eval", "scene_evaluator")
    register(served, "mall-app", "platform_operator")
    today = datetime.now(UTC).date()
    until = str(today + timedelta(days=365))
    applied = served.write(
        "teahouse-co", "scene", "apply", "wuhou-teahouse", "--name", "Wuhou Teahouse", "--category", "restaurant",
        "--district", "Wuhou", "--address", "1 Jinli Road",
    )  # fmt: skip
    assert applied["outcome"]["scene_id"] == "wuhou-teahouse"
    report = tmp_path / "evaluation.pdf"
    report.write_bytes(b"%PDF- the evaluation")
    evaluate = ("scene", "evaluate", "wuhou-teahouse", "--score", "86", "--opinion", "positive", "--report")
    evaluated = served.write("green-eval", *evaluate, str(report))
    assert evaluated["outcome"]["score"] == 86
    missing = refused(served, "green-eval", *evaluate, str(tmp_path / "absent.pdf"))
    assert missing.startswith("error: --report ")
    assert "cannot read it" in missing
    # A rejection takes no validity, an approval needs one: refused before anything is sent.
    both = refused(served, "authority", "scene", "decide", "wuhou-teahouse", "--reject", "--valid-until", until,
                   "--reason", "no")  # fmt: skip
    assert "an approval needs valid_until, and a rejection takes none" in both
    decided = served.write(
        "authority", "scene", "decide", "wuhou-teahouse", "--approve", "--valid-until", until, "--reason", "meets it"
    )
    assert decided["outcome"]["scene_id"] == "wuhou-teahouse"

    offer = (
        "offer", "publish", "green-tea", "--scene", "wuhou-teahouse", "--title", "A pot of green tea",
        "--price-points", "500", "--stock", "10", "--per-account-limit", "2", "--valid-from", str(today),
        "--valid-until", until,
    )  # fmt: skip
    published = served.write("teahouse-co", *offer)
    assert published["outcome"]["offer_id"] == "green-tea"
    assert "offer.publish needs the role merchant" in refused(served, "green-eval", *offer)

    account = served.write("mall-app", "points", "account-open", "--kind", "citizen")["outcome"]["account_id"]
    redeem = ("points", "redeem", "--offer", "green-tea", "--account", account, "--quantity", "1")
    assert "(409 insufficient_points)" in refused(served, "mall-app", *redeem)
    bad_quantity = refused(served, "mall-app", *redeem[:-1], "101")
    assert bad_quantity.startswith("error: --quantity: Input should be less than or equal to 100")
    order = "RO0123456789abcdef"
    assert f"no redemption order {order}" in refused(served, "teahouse-co", "redemption", "fulfil", order)
    assert f"no redemption order {order}" in refused(
        served, "mall-app", "redemption", "cancel", order, "--reason", "changed my mind"
    )
    assert refused(served, "teahouse-co", "redemption", "fulfil", "RO1").startswith("error: ORDER: String should")

    withdrawn = served.write("teahouse-co", "offer", "withdraw", "green-tea")
    assert withdrawn["outcome"]["offer_id"] == "green-tea"
    assert "(409 invalid_state)" in refused(served, "teahouse-co", "offer", "withdraw", "green-tea")

    renew = ("scene", "renew", "wuhou-teahouse", "--valid-until", str(today + timedelta(days=700)))
    assert "(409 invalid_state)" in refused(served, "authority", *renew)  # no evaluation since its approval
    served.write("green-eval", *evaluate, str(report))
    assert served.write("authority", *renew)["outcome"]["scene_id"] == "wuhou-teahouse"
    for step in ("suspend", "reinstate", "revoke"):
        changed = served.write("authority", "scene", step, "wuhou-teahouse", "--reason", f"the scene is {step}d")
        assert changed["outcome"]["kind"] == f"scene.{step}"
    assert "(409 invalid_state)" in refused(
        served, "authority", "scene", "reinstate", "wuhou-teahouse", "--reason", "again"
    )


def test_an_attestations_records_are_checked_row_by_row_before_anything_is_sent(served: Served, tmp_path: Path) -> None:
    attest = ("points", "attest", "--rule", "bike-km", "--version", "1", "--day", "2024-05-01", "--batch", "b-1")
    header = "account_id,quantity,subject\n"
    good = "PA0123456789abcdef,12,\n"
    for text, reason in (
        ("", "line 1: expected the header account_id,quantity,subject, found an empty file"),
        ("account,quantity\n", "line 1: expected the header account_id,quantity,subject, found account,quantity"),
        (header, "no records after the header"),
        (header + good + "PA-alice,3,\n", "line 3: account_id 'PA-alice' is not PA followed by 16 lowercase hex"),
        (header + "PA0123456789abcdef,1.5,\n", "line 2: quantity '1.5' is not an integer between 1 and 1000000000"),
        (header + "PA0123456789abcdef,0,\n", "line 2: quantity '0' is not an integer between 1"),
        (header + "PA0123456789abcdef,3,ABC\n", "line 2: subject 'ABC' is not 64 lowercase hex digits"),
        (header + "PA0123456789abcdef,3\n", "line 2: expected 3 fields (account_id,quantity,subject), found 2"),
        (header + good + good, "line 3: its subject is already on line 2; a subject is rewarded once"),
    ):
        records = tmp_path / "records.csv"
        records.write_text(text)
        line = refused(served, "bike-co", *attest, str(records))
        assert line.startswith(f"error: {records}")
        assert reason in line
    records.write_text(header + good)
    assert refused(served, "bike-co", *attest[:-1], "B 1", str(records)).startswith(
        "error: --batch: String should match pattern"
    )
    assert "cannot read" in refused(served, "bike-co", *attest, str(tmp_path / "absent.csv"))


def test_a_signed_upload_covers_its_content_digest() -> None:
    body = b'{"records":[]}'
    key = seeded_key("bike-co")
    request = httpx.Request("PUT", "http://registry.test/v1/points/batches/b-1/records?offset=0", content=body)
    sign_body_request(request, key)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert request.headers["content-digest"] == f"sha-256=:{digest}:"
    assert '"content-digest"' in request.headers["signature-input"]

    class Keys(HTTPSignatureKeyResolver):
        def resolve_public_key(self, key_id: str) -> Ed25519PublicKey:
            assert key_id == key.key_id
            return Ed25519PublicKey.from_public_bytes(key.public_key.raw)

    verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=Keys())
    verifier.verify(request, require_components=BODY_COVERED, body=body)
    with pytest.raises(HTTPMessageSignaturesException, match="Content-Digest"):
        verifier.verify(request, require_components=BODY_COVERED, body=b'{"records":[{}]}')
