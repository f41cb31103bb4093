"""The demo's public path: carbon points for Chengdu citizens (碳惠天府), on the same log as the projects.

`PointsStory` drives the demo's `_Builder` (the same queue, signers and batches), in three acts:

- `opening`: the authority registers three data providers (a bike-share operator, the transit card
  operator, the power utility), a platform operator, four merchants and a scene evaluator; publishes a
  reward-only bike-km rule (the bike operator's own project claims those reductions) and two claim-mode
  rules (metro trips, household electricity saved), a points policy, and scopes each provider to its
  rule; the platform opens a few thousand pseudonymous citizen accounts (random ids from the seeded
  RNG, no personal data) with their consents; merchants apply for scenes, the evaluator scores them,
  the authority approves three and rejects one.
- `days`: for each of the last days the rules were in force, the providers upload each day's records
  (`ledger.storage.store.upload_point_records`) and attest them (`points.attest`, with the batch root
  from `ledger.points_batch.batch_root`) early the next morning; the heaviest riders and commuters hit
  the daily caps. Attestations need log time after the day attested and rules never apply
  retroactively, so these days exist only on a registry whose log began before them: on a registry
  founded today there are none, and no points are awarded.
- `market`: the bike operator's project is registered and declares the scope the bike rule leaves to
  it; merchants publish offers; citizens with enough points redeem; merchants fulfil most orders, one
  is cancelled at the holder's request, a few stay pending; a scene is suspended after a complaint.

No lot is old enough to expire: the demo attests at most the last `DAYS` days and the policy keeps
points redeemable for twelve months, so there is no `points.expire` run.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from demo.errors import DemoError
from ledger.points_batch import PointRecord, batch_root, subject_commitment
from ledger.transactions import (
    ClaimMode,
    ClaimScope,
    OfferPublish,
    Opinion,
    PointAccountKind,
    PointAccountOpen,
    PointsAttest,
    PointsConsent,
    PointsPolicy,
    PointsRedeem,
    PointsRulePublish,
    PointsSubject,
    ProjectScope,
    ProviderScope,
    RedemptionCancel,
    RedemptionFulfil,
    Role,
    SceneApply,
    SceneCategory,
    SceneDecide,
    SceneEvaluate,
    SceneSuspend,
)

if TYPE_CHECKING:
    from demo import _Builder, _Methodology

DEFAULT_CITIZENS = 2000
"""Citizen point accounts the platform opens: about 2.5 entries each with their consents."""
DAYS = 7
"""The most recent days attested (those the rules were already in force on)."""
LIFETIME_MONTHS = 12
ATTESTED_AT = time(2, 0, tzinfo=UTC)
"""When, the morning after, a day's batches are attested (or now, if that is earlier)."""

BIKE_SHARE = ("chengdu-bike-share", "Chengdu Shared Bicycle Operations Co. (成都共享单车运营)")
TRANSIT_CARD = ("tianfu-transit-card", "Tianfu Transit Card Co. (天府通)")
UTILITY = ("chengdu-power-supply", "Chengdu Power Supply Company (成都供电公司)")
PLATFORM = ("tanhui-tianfu", "Tanhui Tianfu Carbon Points Platform (碳惠天府)")
EVALUATOR = ("sichuan-scene-evaluation", "Sichuan Low-Carbon Scene Evaluation Centre (四川低碳场景评价中心)")
MERCHANTS = (
    ("peoples-park-teahouse", "People's Park Teahouse (人民公园茶社)"),
    ("yulin-hotpot", "Yulin Hotpot Kitchen (玉林火锅)"),
    ("chunxi-green-mall", "Chunxi Road Green Mall (春熙路绿色商场)"),
    ("jinli-boutique-hotel", "Jinli Boutique Hotel (锦里精品酒店)"),
)

CAST = (BIKE_SHARE, TRANSIT_CARD, UTILITY, PLATFORM, *MERCHANTS, EVALUATOR)


@dataclass(frozen=True, slots=True)
class _Rule:
    id: str
    provider: tuple[str, str]
    title: str
    unit: str
    factor_g: int
    source: str
    caps: tuple[int, int, int]  # daily, monthly, annual
    mode: ClaimMode
    subject: PointsSubject
    displaced: str
    share: float  # of citizens who consent to this provider under this rule


RULES = (
    _Rule(
        "bike-km",
        BIKE_SHARE,
        "Shared bicycle riding (共享单车骑行), per km",
        "km",
        98,
        "Chengdu carbon-inclusion methodology for shared bicycles, 2023 edition; car trip baseline",
        (2000, 40000, 300000),
        ClaimMode.REWARD_ONLY,  # the operator's own project claims these reductions
        PointsSubject.ACCOUNT_DAY,
        "short-car-trips",
        0.55,
    ),
    _Rule(
        "metro-trip",
        TRANSIT_CARD,
        "Metro and bus trips by transit card (地铁公交出行), per trip",
        "trip",
        350,
        "Chengdu carbon-inclusion methodology for public transport, 2023 edition; car commute baseline",
        (1000, 25000, 250000),
        ClaimMode.CLAIM,
        PointsSubject.ACCOUNT_DAY,
        "car-commutes",
        0.7,
    ),
    _Rule(
        "power-saving",
        UTILITY,
        "Household electricity saved against the same month last year (家庭节电), per kWh",
        "kwh",
        570,
        "Sichuan grid emission factor published by the provincial ecology department",
        (10000, 10000, 100000),
        ClaimMode.CLAIM,
        PointsSubject.METER_MONTH,
        "grid-electricity",
        0.3,
    ),
)


@dataclass(frozen=True, slots=True)
class _Scene:
    id: str
    merchant: int  # index in MERCHANTS
    name: str
    category: SceneCategory
    district: str
    address: str
    score: int
    offers: tuple[tuple[str, int, int, int], ...]  # title, price in points, stock, per-account limit


SCENES = (
    _Scene(
        "peoples-park-teahouse",
        0,
        "People's Park Heming Teahouse (人民公园鹤鸣茶社)",
        SceneCategory.RESTAURANT,
        "Qingyang",
        "12 Shaocheng Road, People's Park",
        88,
        (("A pot of jasmine tea (茉莉花茶一壶)", 800, 2000, 2), ("Refill cup with tea (自带杯续茶)", 300, 5000, 5)),
    ),
    _Scene(
        "yulin-hotpot",
        1,
        "Yulin Hotpot Kitchen, low-carbon dining (玉林火锅低碳餐厅)",
        SceneCategory.RESTAURANT,
        "Wuhou",
        "Yulin West Road",
        81,
        (("Vegetable platter (素菜拼盘)", 1500, 600, 1),),
    ),
    _Scene(
        "chunxi-green-mall",
        2,
        "Chunxi Road Green Mall (春熙路绿色商场)",
        SceneCategory.MALL,
        "Jinjiang",
        "Chunxi Road",
        84,
        (("Reusable shopping bag (环保购物袋)", 500, 3000, 3), ("Two hours of parking (停车两小时)", 2500, 400, 1)),
    ),
    _Scene(
        "jinli-boutique-hotel",
        3,
        "Jinli Boutique Hotel (锦里精品酒店)",
        SceneCategory.HOTEL,
        "Wuhou",
        "Jinli Ancient Street",
        52,  # single-use amenities in every room: a negative opinion, rejected
        (),
    ),
)
SUSPENDED = "chunxi-green-mall"


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class PointsStory:
    """The public path's acts, planned on the builder's queue; its own RNG keeps the project path's draws."""

    b: _Builder
    citizens: int
    rng: random.Random = field(init=False)
    ids: dict[str, str] = field(default_factory=dict)  # base id -> registered id (with the builder's suffix)
    rules: dict[str, str] = field(default_factory=dict)  # base rule id -> published rule id
    accounts: list[str] = field(default_factory=list)
    consents: dict[str, list[str]] = field(default_factory=dict)  # base rule id -> consenting accounts
    meters: dict[str, str] = field(default_factory=dict)
    published: date = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(f"{self.b.seed}/points")

    # ---- the opening (on the log's clock) ----------------------------------------------------------------

    def opening(self, published: date) -> None:
        """The cast, the rules in force from `published`, the policy, scopes, accounts, consents, scenes."""
        b = self.b
        self.published = published
        state = b.ledger.state()
        for pid, name in (BIKE_SHARE, TRANSIT_CARD, UTILITY):
            roles = (Role.DATA_PROVIDER, Role.PROJECT_OWNER) if pid == BIKE_SHARE[0] else (Role.DATA_PROVIDER,)
            self.ids[pid] = b.register(pid, name, *roles)
        self.ids[PLATFORM[0]] = b.register(*PLATFORM, Role.PLATFORM_OPERATOR)
        for pid, name in MERCHANTS:
            self.ids[pid] = b.register(pid, name, Role.MERCHANT)
        self.ids[EVALUATOR[0]] = b.register(*EVALUATOR, Role.SCENE_EVALUATOR)
        for rule in RULES:
            rule_id = rule.id + b._suffix
            if rule_id in state.rule_versions:
                raise_taken("points rule", rule_id)
            self.rules[rule.id] = rule_id
            daily, monthly, annual = rule.caps
            b.send(
                b.authority,
                PointsRulePublish(
                    rule_id=rule_id,
                    version=1,
                    title=rule.title,
                    activity_unit=rule.unit,
                    emission_factor_g=rule.factor_g,
                    factor_source=rule.source,
                    points_per_gram=1,
                    daily_cap=daily,
                    monthly_cap=monthly,
                    annual_cap=annual,
                    late_window_days=3,
                    claim_mode=rule.mode,
                    subject=rule.subject,
                    displaced_source=rule.displaced,
                    effective_from=published,
                ),
                rule_id=rule_id,
            )
        current = state.points_policy.get(1)
        if current is None or current.lifetime_months <= LIFETIME_MONTHS:
            b.send(b.authority, PointsPolicy(lifetime_months=LIFETIME_MONTHS), lifetime_months=LIFETIME_MONTHS)
        for rule in RULES:
            provider = self.ids[rule.provider[0]]
            b.send(b.authority, ProviderScope(provider=provider, rules=(self.rules[rule.id],)))
        self.open_accounts(set(state.point_accounts))
        self.scenes(set(state.scenes))

    def open_accounts(self, taken: set[str]) -> None:
        b, r = self.b, self.rng
        platform = self.ids[PLATFORM[0]]
        for rule in RULES:
            self.consents[rule.id] = []
        for _ in range(self.citizens):
            account = f"PA{r.getrandbits(64):016x}"
            while account in taken:
                account = f"PA{r.getrandbits(64):016x}"
            taken.add(account)
            self.accounts.append(account)
            b.send(platform, PointAccountOpen(account_id=account, account_kind=PointAccountKind.CITIZEN))
            for rule in RULES:
                if r.random() < rule.share:
                    provider = self.ids[rule.provider[0]]
                    b.send(
                        platform,
                        PointsConsent(account_id=account, provider=provider, rule_id=self.rules[rule.id], granted=True),
                    )
                    self.consents[rule.id].append(account)
        for number, account in enumerate(self.consents["power-saving"]):
            self.meters[account] = f"5101{r.randrange(10**6):06d}{number:06d}"  # a household meter's number

    def scenes(self, taken: set[str]) -> None:
        b = self.b
        evaluator = self.ids[EVALUATOR[0]]
        for scene in SCENES:
            scene_id = scene.id + b._suffix
            if scene_id in taken:
                raise_taken("scene", scene_id)
            merchant = self.ids[MERCHANTS[scene.merchant][0]]
            b.send(
                merchant,
                SceneApply(
                    scene_id=scene_id,
                    name=scene.name,
                    category=scene.category,
                    district=scene.district,
                    address=f"{scene.address}, {scene.district}, Chengdu",
                    description="Demo data: a place applying for recognition as a low-carbon scene.",
                ),
                state="applied",
            )
            opinion = Opinion.POSITIVE if scene.score >= 60 else Opinion.NEGATIVE
            b.send(
                evaluator,
                SceneEvaluate(
                    scene_id=scene_id, score=scene.score, opinion=opinion, report_sha256=_sha(f"evaluation {scene_id}")
                ),
            )
            if opinion is Opinion.POSITIVE:
                until = self.published + timedelta(days=365)
                reason = "Positive evaluation: reusable tableware, sorted waste, metered energy."
                b.send(b.authority, SceneDecide(scene_id=scene_id, approve=True, valid_until=until, reason=reason))
            else:
                reason = "Negative evaluation: single-use amenities in every room."
                b.send(b.authority, SceneDecide(scene_id=scene_id, approve=False, reason=reason), state="rejected")

    # ---- the attested days (the clock walks forward) ------------------------------------------------------

    def days(self, days: list[date], now: datetime) -> None:
        """Upload and attest each day's batches the morning after (never later than `now`)."""
        for day in days:
            self.b.at(min(datetime.combine(day + timedelta(days=1), ATTESTED_AT), now))
            # An account's day is rewarded once, whichever provider attests it: the transit card operator
            # leaves out the day of an account the bike batch already rewards.
            rewarded: set[str] = set()
            for rule in RULES:
                if rule.subject is PointsSubject.METER_MONTH and day != days[-1]:
                    continue  # a meter's month is rewarded once: the utility attests its readings on the last day
                self.attest(rule, day, rewarded)

    def attest(self, rule: _Rule, day: date, rewarded: set[str]) -> None:
        b, r = self.b, self.rng
        provider = self.ids[rule.provider[0]]
        rule_id = self.rules[rule.id]
        records = []
        for account in self.consents[rule.id]:
            if rule.subject is PointsSubject.ACCOUNT_DAY and account in rewarded:
                continue
            if rule.id == "bike-km":
                if r.random() < 0.4:
                    km = r.randint(18, 40) if r.random() < 0.06 else r.randint(1, 12)  # a few ride far: capped
                    records.append(self.record(rule, account, km, day))
            elif rule.id == "metro-trip":
                if r.random() < 0.5:
                    records.append(self.record(rule, account, r.choice((1, 2, 2, 2, 3, 4)), day))  # 3+: capped
            elif r.random() < 0.6:
                records.append(self.record(rule, account, r.randint(5, 30), day))  # 18+ kWh: capped
        if not records:
            return
        if rule.subject is PointsSubject.ACCOUNT_DAY:
            rewarded.update(record.account_id for record in records)
        batch_id = f"{provider}-{day:%Y%m%d}"
        b.upload(provider, batch_id, records)
        payload = PointsAttest(
            batch_id=batch_id,
            rule_id=rule_id,
            version=1,
            day=day,
            count=len(records),
            total_quantity=sum(record.quantity for record in records),
            root=batch_root(batch_id, records).hex(),
        )
        b.send(provider, payload, batch_id=batch_id, records=len(records))

    def record(self, rule: _Rule, account: str, quantity: int, day: date) -> PointRecord:
        if rule.subject is PointsSubject.METER_MONTH:
            subject = subject_commitment("meter_month", self.meters[account], day.strftime("%Y-%m"))
        else:
            subject = subject_commitment("account_day", account, day.isoformat())
        return PointRecord(account, quantity, subject)

    # ---- the market (now) ---------------------------------------------------------------------------------

    def market(self, today: date, bike_methodology: _Methodology, verifier: str) -> None:
        """The bike project and its scope; offers, redemptions, their fulfilment and a cancellation; a suspension."""
        b, r = self.b, self.rng
        owner = self.ids[BIKE_SHARE[0]]
        b.publish(bike_methodology)
        bike = RULES[0]
        project, _ = b.registered_project(owner, bike_methodology, "Wuhou", verifier)
        scope = ClaimScope(displaced_source=bike.displaced, subject=bike.subject)
        b.send(owner, ProjectScope(project_id=project, scopes=(scope,)))
        offers: list[tuple[str, str, int, int]] = []  # offer id, merchant, price, per-account limit
        for scene in SCENES:
            for number, (title, price, stock, limit) in enumerate(scene.offers, start=1):
                offer_id = f"{scene.id}{b._suffix}-{number}"
                merchant = self.ids[MERCHANTS[scene.merchant][0]]
                b.send(
                    merchant,
                    OfferPublish(
                        offer_id=offer_id,
                        scene_id=scene.id + b._suffix,
                        title=title,
                        price_points=price,
                        stock=stock,
                        per_account_limit=limit,
                        valid_from=today,
                        valid_until=today + timedelta(days=90),
                    ),
                    offer_id=offer_id,
                )
                offers.append((offer_id, merchant, price, limit))
        b.flush()  # the balances come from the attestations just appended
        state = b.ledger.state()
        balance = {a: state.point_totals[a].balance for a in self.accounts if a in state.point_totals}
        platform = self.ids[PLATFORM[0]]
        taken_orders = set(state.redemptions)
        orders: list[tuple[str, str]] = []  # order id, merchant
        for account in sorted(balance, key=lambda a: (-balance[a], a))[: max(1, len(self.accounts) // 25)]:
            for offer_id, merchant, price, limit in r.sample(offers, k=min(2, len(offers))):
                quantity = r.randint(1, limit)
                if balance[account] < price * quantity:
                    continue
                order = f"RO{r.getrandbits(64):016x}"
                while order in taken_orders:
                    order = f"RO{r.getrandbits(64):016x}"
                taken_orders.add(order)
                balance[account] -= price * quantity
                payload = PointsRedeem(order_id=order, offer_id=offer_id, account_id=account, quantity=quantity)
                b.send(platform, payload, order_id=order, points=price * quantity)
                orders.append((order, merchant))
        for number, (order, merchant) in enumerate(orders):
            if number == 1:
                reason = "The holder cancelled in the app before collecting."
                b.send(platform, RedemptionCancel(order_id=order, reason=reason), state="cancelled")
            elif number % 6 != 5:  # every sixth order is still waiting to be collected
                b.send(merchant, RedemptionFulfil(order_id=order), state="fulfilled")
        reason = "Complaint: single-use bags handed out again; suspended pending re-evaluation."
        b.send(b.authority, SceneSuspend(scene_id=SUSPENDED + b._suffix, reason=reason), state="suspended")


def raise_taken(what: str, found: str) -> None:
    raise DemoError(f"{what} {found} already exists in this registry, though the demo's participants do not")
