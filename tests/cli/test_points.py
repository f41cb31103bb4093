"""`cdcer points ...` over real HTTP: rules, providers' rules, point accounts and consent, and their refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

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
    for who in ("bike-co", "tianfu-app"):
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
