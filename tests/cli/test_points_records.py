"""`cdcer points attest` end to end against a served registry (chunks, an interrupted upload resumed, its
refusals), the signed reads `cdcer points account` and `cdcer points records`, and `cdcer points
verify-record` checking a holder's proof bundle offline, with each way a bundle can be tampered with.

Every refusal is one line on stderr, a non-zero exit, and changes nothing in the log."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from cli import points
from cli.main import app
from ledger.keys import write_key_file
from ledger.ledger import Ledger, found_registry
from ledger.note import NoteSigner
from ledger.points_batch import PointRecord, batch_root, subject_commitment, verify_record
from ledger.storage import schema
from ledger.storage.engine import make_engine
from ledger.transactions import PointAccountKind, PointAccountOpen, PointsConsent, ProviderScope, Role
from registry.accounts.signatures import sign_request
from tests.cli.test_writes import PASSPHRASE, VKEY, Served
from tests.conftest import AUTHORITY, AUTHORITY_NAME, Databases, Story, log_signer
from tests.ledger.scenario import World, seeded_key
from tests.ledger.state.test_points import rule
from tests.registry.live import serve

PROVIDER, OPERATOR = "bike-co", "tianfu-app"
OTHERS = ("other-app", "audit-office", "teahouse-co", "green-eval")
CHUNKED = [f"PA00000000000000{n:02x}" for n in range(1, 6)]  # attested in chunks of 2 by the fixture
RESUMED = [f"PA00000000000000{n:02x}" for n in range(6, 9)]  # attested after an interrupted upload
SPARE = "PA0000000000000009"  # consents; used by refusals, never attested
NO_CONSENT = "PA00000000000000ff"
CHUNKED_BATCH = "bike-chunks"
KM = {account: 3 + n for n, account in enumerate(CHUNKED)}  # 120 points a km


@dataclass(frozen=True)
class PublicPath:
    """A served registry with a bike-km rule in force since `day`, a scoped provider, consenting accounts,
    one batch of `day` attested in chunks (its offsets and receipt), and an order placed on the first account."""

    served: Served
    day: date
    offsets: list[int]
    receipt: dict[str, Any]
    records: list[PointRecord]
    order: str


def csv_of(tmp: Path, accounts: list[str], km: dict[str, int] | None = None, name: str = "records.csv") -> Path:
    path = tmp / name
    rows = "".join(f"{account},{(km or {}).get(account, 2)},\n" for account in accounts)
    path.write_text("account_id,quantity,subject\n" + rows)
    return path


def records_of(accounts: list[str], day: date, km: dict[str, int] | None = None) -> list[PointRecord]:
    return [
        PointRecord(account, (km or {}).get(account, 2), subject_commitment("account_day", account, day.isoformat()))
        for account in accounts
    ]


def attest_args(batch: str, day: date, path: Path) -> tuple[str, ...]:
    return ("points", "attest", str(path), "--rule", "bike-km", "--version", "1", "--day", str(day), "--batch", batch)


@pytest.fixture(scope="module")
def public_path(databases: Databases, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PublicPath]:
    directory = tmp_path_factory.mktemp("cli-points-records")
    url = databases.create(directory=directory)
    # A day is attested once it is over, and a rule never applies retroactively: so the rule, the scope, the
    # accounts and their consent are appended two days ago (a Story drives the ledger with its own clock),
    # and the served registry attests that day.
    then = datetime.now(UTC) - timedelta(days=2)
    engine = make_engine(url)
    try:
        schema.upgrade(engine)
        ledger = Ledger(engine, log_signer())
        found_registry(
            ledger, authority_id=AUTHORITY, authority_name=AUTHORITY_NAME, authority_key=seeded_key(AUTHORITY), now=then
        )
        story = Story(ledger, World(clock=then))
        w = story.world
        w.register(PROVIDER, [Role.DATA_PROVIDER])
        w.register(OPERATOR, [Role.PLATFORM_OPERATOR])
        w.register("other-app", [Role.PLATFORM_OPERATOR])
        w.register("audit-office", [Role.AUDITOR])
        w.register("teahouse-co", [Role.MERCHANT])
        w.register("green-eval", [Role.SCENE_EVALUATOR])
        w.submit("authority", rule("bike-km", w.clock.date()))
        w.submit("authority", ProviderScope(provider=PROVIDER, rules=("bike-km",)))
        for account in (*CHUNKED, *RESUMED, SPARE, NO_CONSENT):
            w.submit(OPERATOR, PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
        for account in (*CHUNKED, *RESUMED, SPARE):
            w.submit(OPERATOR, PointsConsent(account_id=account, provider=PROVIDER, rule_id="bike-km", granted=True))
        story.sync(together=True)
        day = w.clock.date()
    finally:
        engine.dispose()
    log_key = directory / "registry-log.key"
    write_key_file(log_key, seeded_key("log"), passphrase=None)
    for who in (AUTHORITY, PROVIDER, OPERATOR, *OTHERS):
        write_key_file(directory / f"{who}.key", seeded_key(who), passphrase=PASSPHRASE, label=who)
    try:
        with serve(url, log_key) as base:
            yield _set_up(Served(base, directory), directory, day)
    finally:
        databases.drop(url)


def _set_up(served: Served, directory: Path, day: date) -> PublicPath:
    today = datetime.now(UTC).date()
    # Five records in chunks of two: three signed uploads at offsets 0, 2 and 4, then the attestation.
    offsets: list[int] = []
    upload = points.upload

    def spy(client: Any, batch_id: str, offset: int, chunk: Any) -> None:
        offsets.append(offset)
        upload(client, batch_id, offset, chunk)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(points, "CHUNK", 2)
        patch.setattr(points, "upload", spy)
        receipt = served.write(PROVIDER, *attest_args(CHUNKED_BATCH, day, csv_of(directory, CHUNKED, KM)))

    # An order on the first account, for `cdcer points account` to show.
    until = str(today + timedelta(days=365))
    served.write(
        "teahouse-co", "scene", "apply", "wuhou-teahouse", "--name", "Wuhou Teahouse", "--category", "restaurant",
        "--district", "Wuhou", "--address", "1 Jinli Road",
    )  # fmt: skip
    report = directory / "evaluation.pdf"
    report.write_bytes(b"%PDF- the evaluation")
    served.write(
        "green-eval", "scene", "evaluate", "wuhou-teahouse", "--score", "90", "--opinion", "positive",
        "--report", str(report),
    )  # fmt: skip
    served.write(
        "authority", "scene", "decide", "wuhou-teahouse", "--approve", "--valid-until", until, "--reason", "meets it"
    )
    served.write(
        "teahouse-co", "offer", "publish", "green-tea", "--scene", "wuhou-teahouse", "--title", "A pot of green tea",
        "--price-points", "100", "--stock", "10", "--per-account-limit", "2", "--valid-from", str(today),
        "--valid-until", until,
    )  # fmt: skip
    order = "RO00000000000000a1"
    served.write(OPERATOR, "points", "redeem", "--offer", "green-tea", "--account", CHUNKED[0], "--quantity", "1",
                 "--order", order)  # fmt: skip
    return PublicPath(served, day, offsets, receipt, records_of(CHUNKED, day, KM), order)


def tree_size(served: Served) -> int:
    return int(httpx.get(f"{served.url}/v1/log/checkpoint").text.splitlines()[1])


def one_line_error(result: Result, code: int, *fragments: str) -> str:
    assert result.exit_code == code, result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def signed_get(served: Served, who: str, path: str) -> httpx.Response:
    """A private read signed (RFC 9421) with `who`'s key, straight over HTTP."""
    with httpx.Client(base_url=served.url) as client:
        request = client.build_request("GET", path)
        sign_request(request, seeded_key(who))
        return client.send(request)


def uploaded(served: Served, batch: str) -> tuple[bool, int] | None:
    """(attested, count) of what is uploaded under `batch`; None if nothing is (read by an auditor: the
    provider itself is refused alike whether a batch it does not hold exists or not)."""
    response = signed_get(served, "audit-office", f"/v1/points/batches/{batch}/records")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body = response.json()
    return bool(body["attested"]), int(body["count"])


# --- attest ------------------------------------------------------------------------------------------


def test_a_csv_is_attested_in_several_chunks_with_the_right_root(public_path: PublicPath) -> None:
    served, records = public_path.served, public_path.records
    assert public_path.offsets == [0, 2, 4]
    outcome = public_path.receipt["outcome"]
    assert (outcome["kind"], outcome["batch_id"], outcome["records"]) == ("points.attest", CHUNKED_BATCH, 5)
    attestation = httpx.get(f"{served.url}/v1/points/batches/{CHUNKED_BATCH}").json()
    assert attestation["root"] == batch_root(CHUNKED_BATCH, records).hex()
    assert (attestation["provider"], attestation["count"]) == (PROVIDER, 5)
    assert attestation["total_quantity"] == sum(KM.values())
    assert attestation["attested_at"] == public_path.receipt["index"]
    assert attestation["points_awarded"] == 120 * sum(KM.values())
    assert uploaded(served, CHUNKED_BATCH) == (True, 5)


def test_an_interrupted_upload_resumes_where_the_409_says(
    public_path: PublicPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, day = public_path.served, public_path.day
    batch, path = "bike-resumed", csv_of(tmp_path, RESUMED)
    args = attest_args(batch, day, path)
    monkeypatch.setattr(points, "CHUNK", 1)
    # The connection drops after the first chunk went up: an operational error, nothing attested.
    send, puts = httpx.Client.send, []

    def flaky(self: httpx.Client, request: httpx.Request, **options: Any) -> httpx.Response:
        if request.method == "PUT":
            puts.append(request.url.params["offset"])
            if len(puts) > 1:
                raise httpx.ConnectError("connection reset by peer", request=request)
        return send(self, request, **options)

    before = tree_size(served)
    with monkeypatch.context() as patch:
        patch.setattr(httpx.Client, "send", flaky)
        dropped = served.cdcer(PROVIDER, *args)
    one_line_error(dropped, 3, "cannot reach the registry", "connection reset by peer")
    assert puts == ["0", "1"]
    assert uploaded(served, batch) == (False, 1)
    assert httpx.get(f"{served.url}/v1/points/batches/{batch}").status_code == 404
    assert tree_size(served) == before

    # Run again from the start: the registry holds one record, and the 409 says where to resume.
    again = one_line_error(served.cdcer(PROVIDER, *args), 2, "(409)", "rerun with --resume-from 1")
    found = re.search(r"--resume-from (\d+)", again)
    assert found is not None
    assert uploaded(served, batch) == (False, 1)
    assert tree_size(served) == before

    resumed = served.write(PROVIDER, *args, "--resume-from", found.group(1))
    assert resumed["outcome"]["records"] == 3
    attestation = httpx.get(f"{served.url}/v1/points/batches/{batch}").json()
    assert attestation["root"] == batch_root(batch, records_of(RESUMED, day)).hex()
    assert uploaded(served, batch) == (True, 3)


def test_an_attestation_refused_before_any_upload_changes_nothing(public_path: PublicPath, tmp_path: Path) -> None:
    served, day = public_path.served, public_path.day
    path = csv_of(tmp_path, [SPARE])
    before = tree_size(served)
    # Not a data provider: the signed upload is refused, so nothing is uploaded or attested.
    one_line_error(served.cdcer(OPERATOR, *attest_args("bike-spare", day, path)), 2, "403")
    assert uploaded(served, "bike-spare") is None
    # A resume past the file's end is refused before anything is sent.
    one_line_error(
        served.cdcer(PROVIDER, *attest_args("bike-spare", day, path), "--resume-from", "5"),
        2,
        "--resume-from 5",
        "has only 1 records",
    )
    assert uploaded(served, "bike-spare") is None
    # An attested batch cannot take records again, and there is nothing to resume.
    line = one_line_error(served.cdcer(PROVIDER, *attest_args(CHUNKED_BATCH, day, path)), 2, "is attested")
    assert "--resume-from" not in line
    assert uploaded(served, CHUNKED_BATCH) == (True, 5)
    assert tree_size(served) == before


def test_a_refused_attestation_leaves_its_upload_to_resume_or_discard(public_path: PublicPath, tmp_path: Path) -> None:
    served, day = public_path.served, public_path.day
    batch = "bike-no-consent"
    before = tree_size(served)
    refused = served.cdcer(PROVIDER, *attest_args(batch, day, csv_of(tmp_path, [SPARE, NO_CONSENT])))
    one_line_error(refused, 2, "has not consented", "409 no_consent")
    assert tree_size(served) == before
    assert uploaded(served, batch) == (False, 2)  # as the command's help says: resume, or discard
    discarded = served.cdcer(PROVIDER, "points", "discard", batch, "--json")
    assert discarded.exit_code == 0, discarded.stderr
    assert json.loads(discarded.stdout) == {"batch_id": batch, "discarded": 2}
    assert uploaded(served, batch) is None
    one_line_error(served.cdcer(PROVIDER, "points", "discard", batch), 2, f"has no upload {batch}", "409")
    one_line_error(served.cdcer(PROVIDER, "points", "discard", CHUNKED_BATCH), 2, "is attested")
    assert tree_size(served) == before


# --- account and records ------------------------------------------------------------------------------


def test_an_accounts_totals_lots_and_orders(public_path: PublicPath) -> None:
    served = public_path.served
    account, awarded = CHUNKED[0], 120 * KM[CHUNKED[0]]
    for reader in (OPERATOR, "authority", "audit-office"):
        result = served.cdcer(reader, "points", "account", account, "--json")
        assert result.exit_code == 0, result.stderr
        document = json.loads(result.stdout)
        assert document["operator"] == OPERATOR
        assert document["totals"]["awarded"] == awarded
        assert document["totals"]["balance"] == awarded - 100
        assert document["lots"] == [{"month": public_path.day.strftime("%Y-%m"), "points": awarded - 100}]
        assert [(o["id"], o["points"], o["state"]) for o in document["redemptions"]] == [
            (public_path.order, 100, "pending")
        ]
    shown = served.cdcer(OPERATOR, "points", "account", account)
    assert shown.exit_code == 0, shown.stderr
    assert f"{account} (citizen, operator {OPERATOR}): {awarded - 100:,} points" in shown.stdout
    assert public_path.order in shown.stdout
    assert f"{public_path.day:%Y-%m}:100" in shown.stdout  # the lot the order took from
    for outsider in ("other-app", PROVIDER):
        one_line_error(served.cdcer(outsider, "points", "account", account), 2, "403", "may not read")
    one_line_error(served.cdcer("authority", "points", "account", "PA0000000000000abc"), 2, "404")
    one_line_error(served.cdcer(None, "points", "account", account), 2, "no key file")


def test_an_accounts_records_carry_proofs_that_verify(public_path: PublicPath) -> None:
    served = public_path.served
    account = CHUNKED[2]
    result = served.cdcer(OPERATOR, "points", "records", account, "--json")
    assert result.exit_code == 0, result.stderr
    (item,) = json.loads(result.stdout)["items"]
    assert (item["batch_id"], item["position"], item["quantity"]) == (CHUNKED_BATCH, 2, KM[account])
    verify_record(
        batch_id=item["batch_id"],
        position=item["position"],
        record=public_path.records[2],
        count=item["count"],
        proof=[bytes.fromhex(h) for h in item["proof"]],
        root=bytes.fromhex(item["root"]),
    )
    table = served.cdcer("audit-office", "points", "records", account)
    assert table.exit_code == 0, table.stderr
    assert f"{account}: attested records" in table.stdout
    assert CHUNKED_BATCH in table.stdout
    one_line_error(served.cdcer("other-app", "points", "records", account), 2, "403")


# --- verify-record ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bundle(public_path: PublicPath, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The proof bundle `cdcer points records --proof` writes for the second record of the chunked batch."""
    directory = tmp_path_factory.mktemp("proofs")
    result = public_path.served.cdcer(OPERATOR, "points", "records", CHUNKED[1], "--proof", str(directory), "--json")
    assert result.exit_code == 0, result.stderr
    path = directory / f"{CHUNKED_BATCH}-1.json"
    assert json.loads(result.stdout)["proof_files"] == [str(path)]
    assert "wrote 1 proof bundle" not in result.stdout  # progress is for stderr, and --json keeps stdout JSON
    return path


def verify(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Result:
    """`cdcer points verify-record ARGS`, offline: any HTTP request fails the test."""

    def no_network(*_: object, **__: object) -> None:
        raise AssertionError("verify-record made a network request")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.Client, "send", no_network)
        return CliRunner().invoke(app, ["points", "verify-record", *args], input=stdin, env=env)


def test_a_bundle_verifies_offline(bundle: Path, public_path: PublicPath) -> None:
    result = verify(str(bundle), "--vkey", VKEY, "--json")
    assert result.exit_code == 0, result.stderr
    verified = json.loads(result.stdout)
    assert verified["verified"] is True
    assert verified["record"] == {
        "batch_id": CHUNKED_BATCH,
        "position": 1,
        "account_id": CHUNKED[1],
        "quantity": KM[CHUNKED[1]],
        "subject": public_path.records[1].subject,
    }
    assert verified["batch"]["root"] == batch_root(CHUNKED_BATCH, public_path.records).hex()
    assert verified["batch"]["provider"] == PROVIDER
    assert verified["entry"] == public_path.receipt["index"]
    assert verified["limits"]
    shown = verify(str(bundle), env={"CDCER_VKEY": VKEY})
    assert shown.exit_code == 0, shown.stderr
    assert shown.stdout.startswith(f"verified: record 1 of batch {CHUNKED_BATCH}\n")
    assert "What this offline check cannot prove" in shown.stdout
    piped = verify("-", "--vkey", VKEY, stdin=bundle.read_text())
    assert piped.exit_code == 0, piped.stderr


def _flip_hex(text: str) -> str:
    return ("0" if text[0] != "0" else "1") + text[1:]


def _flip_b64(text: str) -> str:
    raw = bytearray(base64.b64decode(text))
    raw[len(raw) // 2] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _quantity(b: dict[str, Any]) -> None:
    b["record"]["quantity"] += 1


def _account(b: dict[str, Any]) -> None:
    b["record"]["account_id"] = NO_CONSENT


def _record_proof(b: dict[str, Any]) -> None:
    b["record"]["proof"][0] = _flip_hex(b["record"]["proof"][0])


def _root(b: dict[str, Any]) -> None:
    b["record"]["root"] = _flip_hex(b["record"]["root"])


def _count(b: dict[str, Any]) -> None:
    b["record"]["count"] = 6


def _batch(b: dict[str, Any]) -> None:
    b["record"]["batch_id"] = "bike-other"


def _entry_proof(b: dict[str, Any]) -> None:
    b["inclusion_proof"]["hashes"][0] = _flip_b64(b["inclusion_proof"]["hashes"][0])


def _leaf(b: dict[str, Any]) -> None:
    b["entry"]["leaf"] = _flip_b64(b["entry"]["leaf"])
    b["entry"].pop("leaf_hash")


def _leaf_hash(b: dict[str, Any]) -> None:
    b["entry"]["leaf_hash"] = _flip_b64(b["entry"]["leaf_hash"])


def _attested_at(b: dict[str, Any]) -> None:
    b["record"]["attested_at"] += 1


def _proof_size(b: dict[str, Any]) -> None:
    b["inclusion_proof"]["size"] -= 1


def _checkpoint_root(b: dict[str, Any]) -> None:
    lines = b["checkpoint"].split("\n")
    lines[2] = _flip_b64(lines[2])
    b["checkpoint"] = "\n".join(lines)


def _checkpoint_size(b: dict[str, Any]) -> None:
    lines = b["checkpoint"].split("\n")
    lines[1] = str(int(lines[1]) + 1)
    b["checkpoint"] = "\n".join(lines)


def _format(b: dict[str, Any]) -> None:
    b["format"] = "cdcer/points-record-proof/v0"


def _missing(b: dict[str, Any]) -> None:
    del b["checkpoint"]


TAMPERED: list[tuple[Callable[[dict[str, Any]], None], str]] = [
    (_quantity, f"record: record 1 of batch {CHUNKED_BATCH} is not in the batch the log attests"),
    (_account, f"record: record 1 of batch {CHUNKED_BATCH} is not in the batch the log attests"),
    (_record_proof, f"record: record 1 of batch {CHUNKED_BATCH} is not in the batch the log attests"),
    (_root, "its points.attest says root {root}, the record says"),
    (_count, "its points.attest says count 5, the record says 6"),
    (_batch, f"its points.attest says batch id {CHUNKED_BATCH}, the record says bike-other"),
    (_entry_proof, "not in the checkpoint's tree of size"),
    (_leaf, "not in the checkpoint's tree of size"),
    (_leaf_hash, "its leaf_hash is not the hash of its leaf"),
    (_attested_at, "the record's batch was attested at entry"),
    (_proof_size, "inclusion_proof: proves entry"),
    (_checkpoint_root, "checkpoint: "),
    (_checkpoint_size, "checkpoint: "),
    (_format, "bundle: format: "),
    (_missing, "bundle: checkpoint: Field required"),
]


@pytest.mark.parametrize(("tamper", "reason"), TAMPERED, ids=[t.__name__.strip("_") for t, _ in TAMPERED])
def test_a_tampered_bundle_does_not_verify(
    bundle: Path, tmp_path: Path, tamper: Callable[[dict[str, Any]], None], reason: str
) -> None:
    document = json.loads(bundle.read_text())
    reason = reason.format(root=document["record"]["root"])
    tamper(document)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(document))
    result = verify(str(path), "--vkey", VKEY, "--json")
    line = one_line_error(result, 1, f"{path} does not verify: ", reason)
    report = json.loads(result.stdout)
    assert report["verified"] is False
    assert report["error"]["exit_code"] == 1
    assert line.startswith("error: ")


def test_an_entry_of_another_kind_does_not_verify(bundle: Path, public_path: PublicPath, tmp_path: Path) -> None:
    # The entry just before the attestation, with its own valid inclusion proof: signed and in the log, but not
    # the batch's points.attest.
    document = json.loads(bundle.read_text())
    served, size = public_path.served, document["inclusion_proof"]["size"]
    index = document["record"]["attested_at"] - 1
    document["record"]["attested_at"] = index
    entries = httpx.get(f"{served.url}/v1/log/entries", params={"start": index, "limit": 1}).json()
    document["entry"] = entries["entries"][0]
    proof = httpx.get(f"{served.url}/v1/log/proof/inclusion", params={"index": index, "size": size})
    document["inclusion_proof"] = proof.json()
    path = tmp_path / "other-entry.json"
    path.write_text(json.dumps(document))
    one_line_error(
        verify(str(path), "--vkey", VKEY), 1, f"entry {index}: is a ", f"not the points.attest of batch {CHUNKED_BATCH}"
    )


def test_another_registrys_key_does_not_verify(bundle: Path) -> None:
    vkey = NoteSigner("another.example/log", seeded_key("another-log").seed).verifier_key()
    one_line_error(verify(str(bundle), "--vkey", vkey), 1, "does not verify: checkpoint: ")


def test_unreadable_input_and_a_bad_vkey_exit_2(bundle: Path, tmp_path: Path) -> None:
    one_line_error(verify(str(bundle)), 2, "needs the registry's verifier key", "CDCER_VKEY")
    one_line_error(verify(str(bundle), "--vkey", "not-a-key"), 2, "--vkey")
    one_line_error(verify(str(tmp_path / "absent.json"), "--vkey", VKEY), 2, "not found")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("not json")
    one_line_error(verify(str(garbage), "--vkey", VKEY), 1, "does not verify: ")
    one_line_error(verify("-", "--vkey", VKEY, stdin="[]"), 1, "stdin does not verify: bundle")
