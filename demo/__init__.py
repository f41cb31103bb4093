"""A realistic demo registry: participants, methodologies, projects, issuances, transfers, events, claims.

`run_demo` takes a founded registry (its `Ledger` and the authority's key) and appends a story of
Chengdu's carbon-inclusion scheme through `Ledger.submit`, each transaction signed by the right
participant's key, so every rule of the state machine applies exactly as it does for the HTTP API:

- the authority registers two verifiers, five project owners, two event organisers and two account
  holders, and publishes five CDCER methodologies;
- owners submit projects across Chengdu's districts; verifiers validate them (one is sent back for
  changes, one gets a negative opinion and is rejected, one still waits); the authority registers them;
- monitoring reports for the last three calendar years are verified (never above the claim; one is
  rejected and resubmitted) and issued as batches;
- owners sell units to buyers and organisers, buyers pass some on; events (forum, marathon, expo,
  conference) declare planned and final footprints, retire units and obtain carbon-neutral claims;
  companies and individuals retire for their own footprints; the authority cancels units after a
  wildfire reversal and freezes then unfreezes an account under review.

Beyond the story (about 150 entries), ``entries`` scales the registry by rounds that each add a
project with three years of issuance, an event with its claim, dozens of transfers and a few
retirements (and, now and then, a new account holder, a cancellation or a freeze). Everything is
drawn from ``random.Random(seed)`` and the participants' keys are derived from the seed and the
authority's key, so the same seed on the same registry gives the same projections (only acceptance
times differ). Transactions are signed "now" and submitted a few hundred per `Ledger.submit` call.
Dates are relative to ``today``: monitoring periods are past calendar years and past events ended
less than a year ago, so their retirements and claims are still allowed.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from demo.errors import DemoError, DemoRefused
from demo.points import CAST as POINTS_CAST
from demo.points import DAYS, DEFAULT_CITIZENS, PointsStory
from ledger.errors import KeyFileError, RuleViolation
from ledger.keys import PrivateKey, read_key_file, write_key_file
from ledger.ledger import Ledger
from ledger.points_batch import PointRecord
from ledger.storage import store
from ledger.storage.engine import write_transaction
from ledger.transactions import (
    UNITS_PER_CDCER_KG,
    Cancel,
    CancellationReason,
    ClaimIssue,
    EventFootprint,
    EventKind,
    EventRegister,
    FootprintSource,
    FootprintStage,
    Freeze,
    FreezeTarget,
    Issue,
    MethodologyPublish,
    Opinion,
    ParticipantRegister,
    ProjectDecide,
    ProjectDecision,
    ProjectDetails,
    ProjectResubmit,
    ProjectSubmit,
    ProjectValidate,
    ReportReject,
    ReportSubmit,
    ReportVerify,
    Retire,
    RetirementPurpose,
    Role,
    Selection,
    TransactionSigner,
    Transfer,
    Unfreeze,
    format_utc,
)

__all__ = [
    "DEFAULT_CITIZENS",
    "DEFAULT_ENTRIES",
    "DEFAULT_SEED",
    "DemoError",
    "DemoParticipant",
    "DemoRefused",
    "DemoSummary",
    "demo_key",
    "run_demo",
]

DEFAULT_ENTRIES = 150
"""About the size of the project path's story alone (the points story comes on top)."""
DEFAULT_SEED = 2026
BATCH_SIZE = 250
"""Transactions per `Ledger.submit` call: one database transaction and one checkpoint each."""
KEYS_FOLDER = "demo-keys"
ROUND_ENTRIES = 70
"""An upper bound on the entries one scaling round appends (typically about 60)."""
MAX_EXTRA_HOLDERS = 200

_KEY_DERIVATION = b"cdcer/demo-key/v1\x00"


@dataclass(frozen=True, slots=True)
class DemoParticipant:
    """A participant the demo registered, and where its (plain, demo-only) key file is."""

    id: str
    name: str
    roles: tuple[str, ...]
    key_id: str
    key_file: str


@dataclass(frozen=True, slots=True)
class DemoSummary:
    """What the demo appended: entries by kind, the participants and their key files, how fast."""

    origin: str
    entries: int
    log_size: int
    kinds: dict[str, int]
    participants: tuple[DemoParticipant, ...]
    keys_folder: str
    seed: int
    seconds: float

    @property
    def entries_per_second(self) -> float:
        return self.entries / self.seconds if self.seconds > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "entries": self.entries,
            "log_size": self.log_size,
            "kinds": dict(sorted(self.kinds.items())),
            "participants": [
                {"id": p.id, "name": p.name, "roles": list(p.roles), "key_id": p.key_id, "key_file": p.key_file}
                for p in self.participants
            ],
            "keys_folder": self.keys_folder,
            "seed": self.seed,
            "seconds": round(self.seconds, 3),
            "entries_per_second": round(self.entries_per_second, 1),
        }


def demo_key(authority_key: PrivateKey, seed: int, participant_id: str) -> PrivateKey:
    """The demo key of a participant: derived from the seed, keyed by the authority's secret.

    Deterministic for one registry and seed (so a demo can be rebuilt identically), yet unknown to
    anyone without the authority's key.
    """
    message = _KEY_DERIVATION + f"{seed}\x00{participant_id}".encode()
    return PrivateKey.from_seed(hmac.new(authority_key.seed, message, hashlib.sha256).digest())


def run_demo(
    ledger: Ledger,
    *,
    authority_key: PrivateKey,
    data_dir: Path,
    entries: int = DEFAULT_ENTRIES,
    seed: int = DEFAULT_SEED,
    today: date | None = None,
    batch_size: int = BATCH_SIZE,
    citizens: int = DEFAULT_CITIZENS,
    progress: Callable[[int, int], None] | None = None,
) -> DemoSummary:
    """Append the demo story, its project path scaled to about ``entries`` entries, to a founded registry.

    The points story (`demo.points`) comes on top: about 2.5 entries for each of ``citizens`` point
    accounts, and one attested batch per provider and day for the last days its rules were in force.
    Writes each new participant's key to ``<data_dir>/demo-keys/<id>.key`` (plain files, labelled
    demo). ``progress(done, target)`` is called after each batch. Raises `DemoError` when the
    registry or the key does not fit, `DemoRefused` when the registry refuses a transaction.
    """
    if entries < 1 or batch_size < 1 or citizens < 1:
        raise DemoError("entries, batch_size and citizens must be positive")
    builder = _Builder(
        ledger,
        authority_key=authority_key,
        keys_folder=data_dir / KEYS_FOLDER,
        seed=seed,
        today=today or datetime.now(UTC).date(),
        batch_size=batch_size,
        target=max(entries, DEFAULT_ENTRIES) + 3 * citizens,
        progress=progress,
    )
    builder.check_keys()
    points = PointsStory(builder, citizens)
    now = datetime.now(UTC)
    # A points rule applies from the day it is published, never before, and a day is attested once it is
    # over: the attested days are those since the log's last entry, which it may append at its own time.
    start = builder.log_time
    days = [now.date() - timedelta(days=back) for back in range(DAYS, 0, -1)]
    days = [day for day in days if day >= start.date()]
    if days:
        builder.at(start)
    builder.aside(lambda: points.opening(start.date() if days else now.date()))
    builder.aside(lambda: points.days(days, now))
    builder.at(None)
    builder.story()
    builder.aside(lambda: points.market(datetime.now(UTC).date(), BIKE_METHODOLOGY, builder._verifiers[0]))
    builder.scale(entries)
    return builder.finish()


# --- the cast and the catalogue -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Methodology:
    code: str
    title: str
    sector: str
    annual: tuple[int, int]  # typical estimated annual reductions of one project, tCO2e
    titles: tuple[str, ...]  # project title templates; {district} is filled in


METHODOLOGIES = (
    _Methodology(
        "CDCER-PV",
        "Distributed photovoltaic generation (分布式光伏发电)",
        "energy",
        (600, 6000),
        (
            "Rooftop PV on {district} industrial park warehouses ({zh}工业园屋顶光伏)",
            "Distributed PV on {district} school rooftops ({zh}校园分布式光伏)",
            "Carport PV at {district} logistics hub ({zh}物流园车棚光伏)",
        ),
    ),
    _Methodology(
        "CDCER-METRO",
        "Energy saving in urban rail transit (城市轨道交通节能)",
        "transport",
        (4000, 18000),
        (
            "Metro regenerative braking energy recovery, {district} section ({zh}段再生制动能量回馈)",
            "Metro station ventilation and lighting retrofit in {district} ({zh}地铁站通风照明节能改造)",
        ),
    ),
    _Methodology(
        "CDCER-FOREST",
        "Forestry carbon sink (林业碳汇)",
        "forestry",
        (2000, 12000),
        (
            "Longquanshan urban forest afforestation, {district} ({zh}龙泉山城市森林碳汇)",
            "Degraded hillside reforestation in {district} ({zh}荒坡造林碳汇)",
        ),
    ),
    _Methodology(
        "CDCER-BIOGAS",
        "Rural household and farm biogas (农村沼气利用)",
        "agriculture and waste",
        (400, 3000),
        (
            "Pig farm biogas digesters in {district} ({zh}养殖场沼气工程)",
            "Household biogas for {district} villages ({zh}农村户用沼气)",
        ),
    ),
    _Methodology(
        "CDCER-EVCHG",
        "Electric vehicle charging replacing fuel (新能源汽车充电替代燃油)",
        "transport",
        (1000, 8000),
        (
            "Public EV charging network in {district} ({zh}公共充电网络)",
            "Electric bus depot charging, {district} ({zh}电动公交场站充电)",
        ),
    ),
)
_BY_CODE = {m.code: m for m in METHODOLOGIES}
BIKE_METHODOLOGY = _Methodology(
    "CDCER-BIKE",
    "Shared bicycles replacing short car trips (共享单车替代机动车短途出行)",
    "transport",
    (800, 4000),
    ("Shared bicycle fleet in {district} ({zh}共享单车)",),
)
"""The bike-share operator's project: it claims the rides' reductions, so the bike-km points rule only rewards."""

DISTRICTS = (
    ("Jinjiang", "锦江区"),
    ("Qingyang", "青羊区"),
    ("Jinniu", "金牛区"),
    ("Wuhou", "武侯区"),
    ("Chenghua", "成华区"),
    ("Longquanyi", "龙泉驿区"),
    ("Qingbaijiang", "青白江区"),
    ("Xindu", "新都区"),
    ("Wenjiang", "温江区"),
    ("Shuangliu", "双流区"),
    ("Pidu", "郫都区"),
    ("Xinjin", "新津区"),
    ("Tianfu New Area", "天府新区"),
    ("Jianyang", "简阳市"),
    ("Dujiangyan", "都江堰市"),
    ("Pengzhou", "彭州市"),
    ("Qionglai", "邛崃市"),
    ("Chongzhou", "崇州市"),
    ("Jintang", "金堂县"),
    ("Dayi", "大邑县"),
    ("Pujiang", "蒲江县"),
)
_ZH = dict(DISTRICTS)

VERIFIERS = (
    ("tianfu-certification", "Tianfu Carbon Certification Centre (天府碳认证中心)"),
    ("shu-verification", "Sichuan Shu Environmental Verification Co. (蜀环核查)"),
)
OWNERS = (
    ("pidu-solar", "Pidu Distributed Solar Co. (郫都分布式光伏)", "CDCER-PV"),
    ("chengdu-metro-energy", "Chengdu Metro Energy Services (成都轨道节能)", "CDCER-METRO"),
    ("longquanshan-forestry", "Longquanshan Forest Carbon Co. (龙泉山林业碳汇)", "CDCER-FOREST"),
    ("xinjin-biogas", "Xinjin Rural Biogas Cooperative (新津农村沼气合作社)", "CDCER-BIOGAS"),
    ("tianfu-ev-charging", "Tianfu EV Charging Network (天府新能源汽车充电)", "CDCER-EVCHG"),
)
ORGANISERS = (
    ("tianfu-expo", "Tianfu International Expo Events (天府国际会展)"),
    ("chengdu-marathon", "Chengdu Marathon Organising Committee (成都马拉松组委会)"),
)
HOLDERS = (
    ("jinjiang-brewery", "Jinjiang Craft Brewery (锦江精酿)"),
    ("green-tianfu-fund", "Green Tianfu Citizens' Fund (绿色天府公益基金)"),
)
BUSINESSES = (
    ("hotpot", "Hotpot Restaurants (火锅)"),
    ("teahouse", "Teahouse (茶馆)"),
    ("logistics", "Logistics (物流)"),
    ("hotel", "Hotel (酒店)"),
    ("mall", "Shopping Mall (商场)"),
    ("pharma", "Pharmaceuticals (制药)"),
    ("software", "Software Park (软件园)"),
    ("bank", "Rural Commercial Bank (农商银行)"),
)
INDIVIDUALS = ("Li Na (李娜)", "Wang Jun (王军)", "Zhang Min (张敏)", "Liu Yang (刘洋)", "Chen Jing (陈静)")
THEMES = (
    ("Green Finance", "绿色金融"),
    ("Low-Carbon Cities", "低碳城市"),
    ("Panda Ecology", "大熊猫生态"),
    ("Smart Energy", "智慧能源"),
    ("Sustainable Tourism", "可持续旅游"),
    ("Circular Economy", "循环经济"),
    ("Park City", "公园城市"),
    ("Clean Transport", "绿色交通"),
)
VENUES = {
    EventKind.FORUM: ("Tianfu International Conference Center", "Chengdu Financial City Exhibition Hall"),
    EventKind.CONFERENCE: (
        "Chengdu Century City International Convention Center",
        "Tianfu International Conference Center",
    ),
    EventKind.EXHIBITION: ("Western China International Expo City", "Chengdu Century City New Exhibition Center"),
    EventKind.SPORTS: ("Dong'an Lake Sports Park", "Jincheng Greenway", "Phoenix Mountain Sports Park"),
    EventKind.PERFORMANCE: ("Chengdu Financial City Performing Arts Center", "Sichuan Provincial Gymnasium"),
}


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# --- the builder ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    actor: str
    payload: BaseModel
    expect: dict[str, Any]


@dataclass(slots=True)
class _Event:
    id: str
    organiser: str
    name: str
    entry: int  # the log index of its registration, which its claim names
    footprint_kg: int = 0
    retired: int = 0


@dataclass
class _Builder:
    """Plans the story on its own books (ids, balances) and submits it in batches as it goes."""

    ledger: Ledger
    authority_key: PrivateKey
    keys_folder: Path
    seed: int
    today: date
    batch_size: int
    target: int
    progress: Callable[[int, int], None] | None
    rng: random.Random = field(init=False)
    origin: str = field(init=False)
    authority: str = field(init=False)
    signers: dict[str, TransactionSigner] = field(init=False)
    participants: list[DemoParticipant] = field(default_factory=list)
    balance: Counter[str] = field(default_factory=Counter)
    queue: list[_Pending] = field(default_factory=list)
    uploads: list[tuple[str, str, list[PointRecord]]] = field(default_factory=list)
    """Points batches' records (provider, batch id, records) to upload before the queue is submitted."""
    clock: datetime | None = None
    """The time the queue is signed and appended at; None: now."""
    set_aside: int = 0
    """Entries planned by the points story, which `scale` does not count toward ``entries``."""
    kinds: Counter[str] = field(default_factory=Counter)
    planned: int = 0
    appended: int = 0
    started: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        state = self.ledger.state()
        if state.size == 0 or state.origin is None:
            raise DemoError("the registry has no genesis entry yet; create it with `cdcer init`")
        key = state.keys.get(self.authority_key.key_id)
        if key is None or key.revoked_at is not None:
            raise DemoError(f"key {self.authority_key.key_id} is not a valid key of this registry")
        authority = state.participants[key.participant_id]
        if Role.AUTHORITY.value not in authority.roles or authority.status != "active":
            raise DemoError(f"key {self.authority_key.key_id} belongs to {authority.id}, not an active authority")
        self.rng = random.Random(self.seed)
        self.origin = state.origin
        self.authority = authority.id
        self.signers = {authority.id: TransactionSigner(state.origin, authority.id, self.authority_key)}
        self._suffix = _free_suffix(set(state.participants))
        self._methodologies = {code: m.status for (code, version), m in state.methodologies.items() if version == "1.0"}
        self._projects = len(state.projects)
        self._reports = len(state.reports)
        self._first_index = state.size  # the demo's first transaction is appended at this index
        self.log_time = state.last_time or datetime.now(UTC)
        self._events = len(state.events)
        self._event_names: Counter[str] = Counter()
        self._names: dict[str, str] = {}
        self._holders: list[str] = []
        self._owners: list[tuple[str, str]] = []  # (owner, methodology code)
        self._organisers: list[str] = []
        self._verifiers: list[str] = []
        self.years = [self.today.year - 3, self.today.year - 2, self.today.year - 1]

    # ---- submitting ----------------------------------------------------------------------------------

    def send(self, actor: str, payload: BaseModel, **expect: Any) -> None:
        """Queue one transaction (``expect``: outcome details it must produce); submit when a batch is full."""
        self.queue.append(_Pending(actor, payload, expect))
        self.planned += 1
        if len(self.queue) >= self.batch_size:
            self.flush()

    def check_keys(self) -> None:
        """Write the story's participants' key files up front: a file in the way refuses the demo before
        anything is appended (the points story's opening is submitted before the project path's cast)."""
        for pid, *_ in (*VERIFIERS, *OWNERS, *ORGANISERS, *HOLDERS, *POINTS_CAST):
            participant = pid + self._suffix
            _write_demo_key(
                self.keys_folder / f"{participant}.key",
                demo_key(self.authority_key, self.seed, participant),
                participant,
            )

    def upload(self, provider: str, batch_id: str, records: list[PointRecord]) -> None:
        """Upload a points batch's records (as the provider's PUT would) before the queue goes in."""
        self.uploads.append((provider, batch_id, records))

    def at(self, clock: datetime | None) -> None:
        """Submit what is queued, then sign and append what follows at `clock` (None: now)."""
        if clock != self.clock:
            self.flush()
            self.clock = clock

    def aside(self, act: Callable[[], None]) -> None:
        """Plan `act` (a part of the points story) without counting its entries toward ``entries``."""
        before = self.planned
        act()
        self.set_aside += self.planned - before

    def flush(self) -> None:
        if not self.queue:
            return
        # Signed now (or at the demo's clock, which the registry then appends at), so every transaction is
        # fresh when the registry sees it.
        now = self.clock or datetime.now(UTC)
        if self.uploads:
            with write_transaction(self.ledger.engine) as conn:
                for provider, batch_id, records in self.uploads:
                    store.upload_point_records(
                        conn, batch_id=batch_id, provider=provider, offset=0, records=records, now=format_utc(now)
                    )
            self.uploads.clear()
        txs = [self.signers[p.actor].sign(p.payload, at=now) for p in self.queue]
        results = self.ledger.submit(txs, now=self.clock)
        refused = [(tx, r) for tx, r in zip(txs, results, strict=True) if isinstance(r, RuleViolation)]
        if refused:
            tx, violation = refused[0]
            appended = self.appended + len(results) - len(refused)
            raise DemoRefused(
                f"the registry refused the demo's {tx.body.kind} by {tx.body.actor} ({appended} demo entries "
                f"are appended): {violation.code}: {violation.message}"
            )
        for pending, tx, result in zip(self.queue, txs, results, strict=True):
            assert not isinstance(result, RuleViolation)
            self.appended += 1
            self.kinds[tx.body.kind] += 1
            details = result.outcome.details if result.outcome is not None else {}
            for name, value in pending.expect.items():
                if details.get(name) != value:
                    # Someone else appended meanwhile, so the ids the demo predicted are taken.
                    raise DemoRefused(
                        f"entry {result.index} ({tx.body.kind}) gave {name} {details.get(name)!r}, the demo expected "
                        f"{value!r}; is something else writing to this registry?"
                    )
        self.queue.clear()
        if self.progress is not None:
            self.progress(self.appended, max(self.target, self.planned))

    def finish(self) -> DemoSummary:
        self.flush()
        seconds = time.perf_counter() - self.started
        return DemoSummary(
            origin=self.origin,
            entries=self.appended,
            log_size=self.ledger.size(),
            kinds=dict(self.kinds),
            participants=tuple(self.participants),
            keys_folder=str(self.keys_folder),
            seed=self.seed,
            seconds=seconds,
        )

    # ---- participants and methodologies --------------------------------------------------------------

    def register(self, base_id: str, name: str, *roles: Role) -> str:
        pid = base_id + self._suffix
        key = demo_key(self.authority_key, self.seed, pid)
        path = self.keys_folder / f"{pid}.key"
        _write_demo_key(path, key, pid)
        self.signers[pid] = TransactionSigner(self.origin, pid, key)
        self.participants.append(DemoParticipant(pid, name, tuple(r.value for r in roles), key.key_id, str(path)))
        self._names[pid] = name
        payload = ParticipantRegister(participant_id=pid, name=name, roles=roles, public_keys=(key.public_key.b64(),))
        self.send(self.authority, payload, participant_id=pid)
        return pid

    def publish(self, methodology: _Methodology) -> None:
        status = self._methodologies.get(methodology.code)
        if status == "active":
            return  # a demo appended before: its methodologies are reused
        if status is not None:
            raise DemoError(f"methodology {methodology.code} 1.0 is withdrawn in this registry; the demo needs it")
        payload = MethodologyPublish(
            code=methodology.code,
            version="1.0",
            title=methodology.title,
            sector=methodology.sector,
            document_sha256=_sha(f"CDCER methodology {methodology.code} 1.0: {methodology.title}"),
        )
        self.send(self.authority, payload)
        self._methodologies[methodology.code] = "active"

    # ---- projects and issuance -----------------------------------------------------------------------

    def details(self, methodology: _Methodology, district: str, *, start_year: int, years: int) -> ProjectDetails:
        template = self.rng.choice(methodology.titles)
        title = template.format(district=district, zh=_ZH[district])
        annual = self.rng.randint(*methodology.annual)
        return ProjectDetails(
            methodology_code=methodology.code,
            methodology_version="1.0",
            title=title,
            district=district,
            description=f"{title}. Estimated {annual:,} tCO2e a year under {methodology.code} 1.0 "
            f"({methodology.title}); demo data.",
            crediting_start=date(start_year, 1, 1),
            crediting_end=date(start_year + years - 1, 12, 31),
            estimated_annual_reductions=annual,
            documents=(_sha(f"project design document: {title}"),),
        )

    def submit_project(self, owner: str, details: ProjectDetails) -> str:
        self._projects += 1
        pid = f"P{self._projects:04d}"
        self.send(owner, ProjectSubmit(details=details), project_id=pid)
        return pid

    def validate(self, verifier: str, pid: str, opinion: Opinion = Opinion.POSITIVE) -> None:
        statement = (
            "The project design meets the methodology's applicability conditions and additionality test."
            if opinion is Opinion.POSITIVE
            else "The baseline is not supported by the evidence submitted; additionality is not demonstrated."
        )
        payload = ProjectValidate(
            project_id=pid, opinion=opinion, opinion_sha256=_sha(f"validation {pid} {opinion}"), statement=statement
        )
        self.send(verifier, payload)

    def decide(self, pid: str, decision: ProjectDecision, reason: str) -> None:
        state = {
            ProjectDecision.REGISTER: "registered",
            ProjectDecision.REJECT: "rejected",
            ProjectDecision.REQUEST_CHANGES: "changes_requested",
        }[decision]
        self.send(self.authority, ProjectDecide(project_id=pid, decision=decision, reason=reason), state=state)

    def registered_project(
        self, owner: str, methodology: _Methodology, district: str, verifier: str
    ) -> tuple[str, int]:
        details = self.details(methodology, district, start_year=self.years[0] - 1, years=_crediting_years(methodology))
        pid = self.submit_project(owner, details)
        self.validate(verifier, pid)
        self.decide(pid, ProjectDecision.REGISTER, "Positive validation; registered.")
        return pid, details.estimated_annual_reductions

    def report(self, owner: str, pid: str, start: date, end: date, claimed: int, verifier: str) -> str:
        self._reports += 1
        rid = f"MR{self._reports:04d}"
        payload = ReportSubmit(
            project_id=pid,
            period_start=start,
            period_end=end,
            claimed=claimed,
            verifier=verifier,
            documents=(_sha(f"monitoring report {pid} {start}..{end}"),),
        )
        self.send(owner, payload, report_id=rid)
        return rid

    def verify_and_issue(self, owner: str, rid: str, claimed: int, verifier: str) -> None:
        verified = max(1, claimed * self.rng.randint(90, 100) // 100)  # never more than claimed
        self.send(
            verifier,
            ReportVerify(
                report_id=rid,
                verified=verified,
                opinion_sha256=_sha(f"verification {rid}"),
                statement=f"Verified {verified:,} of the {claimed:,} tCO2e claimed, after a site visit.",
            ),
        )
        self.send(self.authority, Issue(report_id=rid), quantity=verified)
        self.balance[owner] += verified

    def issue_year(self, owner: str, pid: str, year: int, annual: int, verifier: str) -> None:
        claimed = max(1, annual * self.rng.randint(85, 110) // 100)
        rid = self.report(owner, pid, date(year, 1, 1), date(year, 12, 31), claimed, verifier)
        self.verify_and_issue(owner, rid, claimed, verifier)

    # ---- units -----------------------------------------------------------------------------------------

    def transfer(self, sender: str, to: str, quantity: int, memo: str = "") -> None:
        assert 0 < quantity <= self.balance[sender], (sender, quantity, self.balance[sender])
        self.send(sender, Transfer(to=to, selection=Selection(quantity=quantity), memo=memo), quantity=quantity)
        self.balance[sender] -= quantity
        self.balance[to] += quantity

    def sale(self, to: str, low: int, high: int) -> None:
        """An owner holding enough (else the richest) sells a quantity to ``to`` (a buyer or organiser)."""
        owners = [o for o, _ in self._owners if self.balance[o] >= high]
        owner = self.rng.choice(owners) if owners else self.richest([o for o, _ in self._owners])
        quantity = min(self.rng.randint(low, high), self.balance[owner])
        if quantity > 0:
            self.transfer(owner, to, quantity, memo=f"sale {self.rng.randint(10000, 99999)}")

    def buy(self, to: str, quantity: int) -> None:
        """``to`` buys exactly ``quantity`` units from the owners, the richest first."""
        while quantity > 0:
            owner = self.richest([o for o, _ in self._owners])
            part = min(quantity, self.balance[owner])
            if part == 0:
                raise DemoError(f"the demo's owners hold too few units for {to} to buy {quantity}")
            self.transfer(owner, to, part, memo=f"sale {self.rng.randint(10000, 99999)}")
            quantity -= part

    def richest(self, candidates: list[str]) -> str:
        return max(candidates, key=lambda who: (self.balance[who], who))

    def retire(
        self,
        holder: str,
        quantity: int,
        *,
        purpose: RetirementPurpose,
        beneficiary: str,
        reason: str,
        event_id: str | None = None,
        year: int | None = None,
    ) -> None:
        assert 0 < quantity <= self.balance[holder], (holder, quantity, self.balance[holder])
        payload = Retire(
            selection=Selection(quantity=quantity),
            beneficiary=beneficiary,
            purpose=purpose,
            event_id=event_id,
            year=year,
            reason=reason,
        )
        self.send(holder, payload, quantity=quantity)
        self.balance[holder] -= quantity

    def own_retirement(self, holder: str) -> None:
        """A company or an individual retires for its own footprint, or a voluntary cancellation."""
        if self.balance[holder] < 5:
            self.buy(holder, self.rng.randint(20, 200))
        name = self._names[holder]
        quantity = self.rng.randint(1, max(1, self.balance[holder] // 3))
        purpose = self.rng.choice(
            [RetirementPurpose.ORGANISATION, RetirementPurpose.INDIVIDUAL, RetirementPurpose.VOLUNTARY]
        )
        last_year = self.today.year - 1
        if purpose is RetirementPurpose.ORGANISATION:
            self.retire(
                holder,
                quantity,
                purpose=purpose,
                beneficiary=name,
                year=last_year,
                reason=f"Offsetting {last_year} scope 1 and 2 emissions",
            )
        elif purpose is RetirementPurpose.INDIVIDUAL:
            person = self.rng.choice(INDIVIDUALS)
            self.retire(
                holder, quantity, purpose=purpose, beneficiary=person, reason=f"{person}: family travel footprint"
            )
        else:
            self.retire(
                holder, quantity, purpose=purpose, beneficiary="Chengdu citizens", reason="Public-interest cancellation"
            )

    def cancel(self, holder: str, quantity: int, code: CancellationReason, reason: str) -> None:
        payload = Cancel(holder=holder, selection=Selection(quantity=quantity), reason_code=code, reason=reason)
        self.send(self.authority, payload, quantity=quantity)
        self.balance[holder] -= quantity

    def freeze(self, account: str, reason: str) -> None:
        self.send(self.authority, Freeze(target=FreezeTarget.ACCOUNT, target_id=account, reason=reason), frozen=True)

    def unfreeze(self, account: str, reason: str) -> None:
        self.send(self.authority, Unfreeze(target=FreezeTarget.ACCOUNT, target_id=account, reason=reason), frozen=False)

    # ---- events ------------------------------------------------------------------------------------------

    def event(
        self,
        organiser: str,
        kind: EventKind,
        theme: tuple[str, str],
        *,
        end: date,
        days: int,
        attendees: int,
    ) -> _Event:
        start = end - timedelta(days=days - 1)
        name = _event_name(kind, theme, start.year)
        self._event_names[name] += 1
        if self._event_names[name] > 1:
            name = f"{name} ({self._event_names[name]})"
        self._events += 1
        eid = f"E{self._events:04d}"
        payload = EventRegister(
            name=name,
            event_kind=kind,
            venue=self.rng.choice(VENUES[kind]),
            start_date=start,
            end_date=end,
            expected_attendees=attendees,
        )
        entry = self._first_index + self.planned  # the index this registration will be appended at
        self.send(organiser, payload, event_id=eid)
        return _Event(eid, organiser, name, entry)

    def footprint(self, event: _Event, stage: FootprintStage, sources: dict[FootprintSource, int]) -> None:
        note = (
            "Estimated following the national guideline for carbon-neutral large events."
            if stage is FootprintStage.PLANNED
            else "Final accounting from venue meters, ticketing surveys and supplier invoices."
        )
        self.send(event.organiser, EventFootprint(event_id=event.id, stage=stage, sources=sources, method_note=note))
        if stage is FootprintStage.FINAL:
            event.footprint_kg = sum(sources.values())

    def planned_sources(self, kind: EventKind, attendees: int, days: int) -> dict[FootprintSource, int]:
        r = self.rng.randint
        travel = 60 if kind is EventKind.SPORTS else 25  # kgCO2e per attendee: runners come from further away
        return {
            FootprintSource.VENUE_ENERGY: attendees * days * r(2, 6),
            FootprintSource.ATTENDEE_TRANSPORT: attendees * r(travel // 2, travel),
            FootprintSource.STAFF_TRANSPORT: max(50, attendees // 20) * r(10, 30),
            FootprintSource.ACCOMMODATION: attendees * max(0, days - 1) * r(5, 15) + attendees * r(2, 6),
            FootprintSource.CATERING: attendees * days * r(2, 5),
            FootprintSource.MATERIALS: attendees * r(1, 3),
            FootprintSource.WASTE: attendees * days // 2 + 1,
        }

    def final_sources(self, planned: dict[FootprintSource, int]) -> dict[FootprintSource, int]:
        return {source: kg * self.rng.randint(88, 112) // 100 for source, kg in planned.items()}

    def neutralise(self, event: _Event, *, parts: int = 1, claim: bool = True) -> None:
        """Retire enough units for the event's final footprint (buying what is missing), then claim."""
        need = math.ceil(event.footprint_kg / UNITS_PER_CDCER_KG) - event.retired
        if not claim:
            need = max(1, need // 2)  # an event still collecting units: not yet covered
        if self.balance[event.organiser] < need:
            self.buy(event.organiser, need - self.balance[event.organiser])
        for part in range(parts):
            quantity = need // parts + (need % parts if part == parts - 1 else 0)
            if quantity <= 0:
                continue
            self.retire(
                event.organiser,
                quantity,
                purpose=RetirementPurpose.EVENT,
                beneficiary=event.name,
                event_id=event.id,
                reason=f"Carbon neutrality of {event.name}",
            )
            event.retired += quantity
        if claim:
            self.send(event.organiser, ClaimIssue(event_id=event.id, event_entry=event.entry), event_id=event.id)

    def past_event(self, organiser: str, kind: EventKind, *, ended_days_ago: int, days: int, attendees: int) -> _Event:
        theme = self.rng.choice(THEMES)
        event = self.event(
            organiser, kind, theme, end=self.today - timedelta(days=ended_days_ago), days=days, attendees=attendees
        )
        planned = self.planned_sources(kind, attendees, days)
        self.footprint(event, FootprintStage.PLANNED, planned)
        self.footprint(event, FootprintStage.FINAL, self.final_sources(planned))
        return event

    # ---- the story -------------------------------------------------------------------------------------

    def story(self) -> None:
        """About 150 entries: the cast, the methodologies, eight projects, issuance, trade, events, claims."""
        for methodology in METHODOLOGIES:
            self.publish(methodology)
        self._verifiers = [self.register(pid, name, Role.VERIFIER) for pid, name in VERIFIERS]
        self._owners = [(self.register(pid, name, Role.PROJECT_OWNER), code) for pid, name, code in OWNERS]
        self._organisers = [self.register(pid, name, Role.EVENT_ORGANISER) for pid, name in ORGANISERS]
        self._holders = [self.register(pid, name, Role.ACCOUNT_HOLDER) for pid, name in HOLDERS]
        solar, metro, forestry, biogas, ev = (owner for owner, _ in self._owners)
        v1, v2 = self._verifiers
        expo, marathon = self._organisers
        brewery, fund = self._holders
        pv, metro_m, forest_m, biogas_m, ev_m = METHODOLOGIES
        y1, y2, y3 = self.years

        # Four registered projects with three years of issuance each; the forest one was first sent back for changes.
        forest_details = self.details(forest_m, "Longquanyi", start_year=y1 - 1, years=30)
        forest_pid = self.submit_project(forestry, forest_details)
        self.decide(forest_pid, ProjectDecision.REQUEST_CHANGES, f"Add the {y1 - 5} land-use survey for the baseline.")
        self.send(forestry, ProjectResubmit(project_id=forest_pid, details=forest_details))
        self.validate(v2, forest_pid)
        self.decide(forest_pid, ProjectDecision.REGISTER, "Positive validation after resubmission; registered.")
        projects = [
            (solar, *self.registered_project(solar, pv, "Pidu", v1), v2),
            (metro, *self.registered_project(metro, metro_m, "Tianfu New Area", v2), v1),
            (forestry, forest_pid, forest_details.estimated_annual_reductions, v1),
            (ev, *self.registered_project(ev, ev_m, "Chenghua", v1), v2),
        ]
        for owner, pid, annual, verifier in projects:
            for year in self.years:
                self.issue_year(owner, pid, year, annual, verifier)
        # Biogas: a report rejected for missing evidence, then resubmitted and issued.
        biogas_pid, biogas_annual = self.registered_project(biogas, biogas_m, "Xinjin", v2)
        self.issue_year(biogas, biogas_pid, y1, biogas_annual, v1)
        self.issue_year(biogas, biogas_pid, y2, biogas_annual, v1)
        rejected = self.report(biogas, biogas_pid, date(y3, 1, 1), date(y3, 12, 31), biogas_annual, v1)
        self.send(v1, ReportReject(report_id=rejected, reason="Digester gas-meter calibration certificates missing."))
        again = self.report(biogas, biogas_pid, date(y3, 1, 1), date(y3, 12, 31), biogas_annual, v1)
        self.verify_and_issue(biogas, again, biogas_annual, v1)
        # A second solar project: two years issued, last year's report still awaiting verification.
        airport_pid, airport_annual = self.registered_project(solar, pv, "Shuangliu", v2)
        self.issue_year(solar, airport_pid, y1, airport_annual, v1)
        self.issue_year(solar, airport_pid, y2, airport_annual, v1)
        self.report(solar, airport_pid, date(y3, 1, 1), date(y3, 12, 31), airport_annual, v1)
        # A project with a negative opinion, rejected; and one still waiting for validation.
        rejected_pid = self.submit_project(ev, self.details(ev_m, "Jinniu", start_year=y1, years=10))
        self.validate(v2, rejected_pid, Opinion.NEGATIVE)
        self.decide(rejected_pid, ProjectDecision.REJECT, "Negative validation opinion: baseline not demonstrated.")
        self.submit_project(biogas, self.details(biogas_m, "Pujiang", start_year=y3, years=10))

        # Trade: owners sell to buyers and organisers; buyers pass some on.
        for _ in range(8):
            self.sale(brewery, 20, 300)
            self.sale(fund, 50, 500)
        for _ in range(2):
            self.sale(expo, 100, 400)
            self.sale(marathon, 200, 600)
        self.transfer(fund, expo, min(self.balance[fund], self.rng.randint(30, 80)), memo="donation for the forum")
        self.transfer(brewery, marathon, min(self.balance[brewery], self.rng.randint(20, 60)), memo="sponsor")

        # A buyer's account is frozen under review while the events close, then released.
        self.freeze(brewery, "Account review: change of legal representative pending verification.")
        forum = self.past_event(expo, EventKind.FORUM, ended_days_ago=60, days=2, attendees=1200)
        self.neutralise(forum)
        race = self.past_event(marathon, EventKind.SPORTS, ended_days_ago=33, days=1, attendees=30000)
        self.neutralise(race, parts=2)
        expo_fair = self.past_event(expo, EventKind.EXHIBITION, ended_days_ago=150, days=3, attendees=8000)
        self.neutralise(expo_fair)
        self.unfreeze(brewery, "Documents verified; review closed.")
        # A conference still collecting units (no claim yet), and an upcoming festival with a plan only.
        conference = self.past_event(expo, EventKind.CONFERENCE, ended_days_ago=20, days=2, attendees=2500)
        self.neutralise(conference, claim=False)
        festival = self.event(
            marathon,
            EventKind.PERFORMANCE,
            self.rng.choice(THEMES),
            end=self.today + timedelta(days=95),
            days=2,
            attendees=6000,
        )
        self.footprint(festival, FootprintStage.PLANNED, self.planned_sources(EventKind.PERFORMANCE, 6000, 2))

        # Own footprints: a company, an individual, a voluntary cancellation.
        last_year = self.today.year - 1
        self.retire(
            brewery,
            min(self.balance[brewery], 120),
            purpose=RetirementPurpose.ORGANISATION,
            beneficiary=HOLDERS[0][1],
            year=last_year,
            reason=f"Offsetting {last_year} brewing and delivery emissions",
        )
        self.retire(
            fund, 12, purpose=RetirementPurpose.INDIVIDUAL, beneficiary=INDIVIDUALS[0], reason="Family travel footprint"
        )
        self.retire(
            fund,
            100,
            purpose=RetirementPurpose.VOLUNTARY,
            beneficiary="Chengdu citizens",
            reason="Public-interest cancellation for Earth Day",
        )
        # A wildfire reverses part of the forest sink: the authority cancels units still held by the owner.
        self.cancel(
            forestry,
            min(self.balance[forestry], 150),
            CancellationReason.REVERSAL,
            "Wildfire on 12 ha of the Longquanshan project area reversed part of the stored carbon.",
        )

    # ---- scaling -----------------------------------------------------------------------------------------

    def scale(self, entries: int) -> None:
        """Rounds of mixed activity until about ``entries`` (besides the points story's) are planned; then a
        few sales to land on it."""
        rounds = 0
        while self.planned - self.set_aside + ROUND_ENTRIES <= entries:
            rounds += 1
            self.round(rounds)
        buyers = self._holders + self._organisers
        while self.planned - self.set_aside < entries:
            self.sale(self.rng.choice(buyers), 1, 50)

    def round(self, number: int) -> None:
        r = self.rng
        if number % 10 == 0 and len(self._holders) - len(HOLDERS) < MAX_EXTRA_HOLDERS:
            district, zh = r.choice(DISTRICTS)
            slug, business = r.choice(BUSINESSES)
            base = f"{district.lower().replace(' ', '-')}-{slug}-{number // 10}"
            self._holders.append(
                self.register(base, f"{district} {business} No. {number // 10} ({zh})", Role.ACCOUNT_HOLDER)
            )
        owner, code = self._owners[number % len(self._owners)]
        methodology = _BY_CODE[code]
        verifier = self._verifiers[number % 2]
        district = r.choice(DISTRICTS)[0]
        pid, annual = self.registered_project(owner, methodology, district, verifier)
        for year in self.years:
            self.issue_year(owner, pid, year, annual, self._verifiers[(number + 1) % 2])
        buyers = self._holders + self._organisers
        for _ in range(30):
            self.sale(r.choice(buyers), 5, 200)
        for _ in range(8):  # buyers pass units on, to other buyers or to organisers
            senders = [h for h in self._holders if self.balance[h] > 0]
            if not senders:
                break
            sender = r.choice(senders)
            to = r.choice([b for b in buyers if b != sender])
            self.transfer(sender, to, min(self.balance[sender], r.randint(1, 40)))
        kind = r.choice(
            [EventKind.FORUM, EventKind.CONFERENCE, EventKind.EXHIBITION, EventKind.SPORTS, EventKind.PERFORMANCE]
        )
        attendees = r.randint(3000, 20000) if kind is EventKind.SPORTS else r.randint(200, 5000)
        event = self.past_event(
            r.choice(self._organisers),
            kind,
            ended_days_ago=r.randint(7, 300),
            days=r.randint(1, 3),
            attendees=attendees,
        )
        self.neutralise(event, parts=r.randint(1, 2))
        for _ in range(3):
            holder = r.choice(self._holders)
            self.own_retirement(holder)
        if number % 20 == 0:
            holder = self.richest([o for o, _ in self._owners])
            self.cancel(
                holder,
                min(self.balance[holder], r.randint(5, 50)),
                CancellationReason.CORRECTION,
                "Re-verification found a metering error; the over-issued units are cancelled.",
            )
        if number % 25 == 0:
            account = r.choice(self._holders)
            self.freeze(account, "Routine account review.")
            self.unfreeze(account, "Review closed without findings.")


def _crediting_years(methodology: _Methodology) -> int:
    return 30 if methodology.code == "CDCER-FOREST" else 10


def _event_name(kind: EventKind, theme: tuple[str, str], year: int) -> str:
    en, zh = theme
    return {
        EventKind.FORUM: f"{year} Tianfu {en} Forum ({zh}论坛)",
        EventKind.CONFERENCE: f"{year} Chengdu {en} Conference ({zh}大会)",
        EventKind.EXHIBITION: f"{year} Western China {en} Expo ({zh}博览会)",
        EventKind.SPORTS: f"{year} Chengdu Marathon · {en} Run ({zh}马拉松)",
        EventKind.PERFORMANCE: f"{year} Tianfu {en} Music Festival ({zh}音乐节)",
    }.get(kind, f"{year} {en} ({zh})")


def _free_suffix(taken: set[str]) -> str:
    """'' for a registry without the demo's participants; else '-2', '-3'... so ids never collide."""
    bases = [pid for pid, *_ in (*VERIFIERS, *OWNERS, *ORGANISERS, *HOLDERS, *POINTS_CAST)]
    number = 1
    while True:
        suffix = "" if number == 1 else f"-{number}"
        if not any((base + suffix) in taken for base in bases):
            return suffix
        number += 1


def _write_demo_key(path: Path, key: PrivateKey, participant_id: str) -> None:
    """Write a demo key file; an existing file is fine if it holds this very key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        try:
            existing = read_key_file(path, passphrase=None)
        except KeyFileError as exc:
            raise DemoError(f"{path} exists and is not this demo's key ({exc}); move it away") from None
        if existing.key_id != key.key_id:
            raise DemoError(f"{path} holds another key than the demo's for {participant_id}; move it away")
        return
    try:
        write_key_file(path, key, passphrase=None, label=f"DEMO key of {participant_id} (not secret; development only)")
    except KeyFileError as exc:
        raise DemoError(str(exc)) from None
