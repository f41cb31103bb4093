"""The public pages' two languages: Chinese and English, chosen per request.

The language is, in order: ``?lang=`` on the request, the ``lang`` cookie the language switch sets, the
browser's ``Accept-Language``, and otherwise Chinese, the scheme's own language.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from starlette.requests import Request

Language = Literal["zh", "en"]
LANGUAGES: Final[tuple[Language, ...]] = ("zh", "en")
DEFAULT: Final[Language] = "zh"
COOKIE: Final = "lang"
_BY_NAME: Final[dict[str, Language]] = {language: language for language in LANGUAGES}

# Every text a page shows, by key: (Chinese, English). Domain words (states, purposes, sources) are here
# too, so a page never shows a raw code where a person expects a word.
TEXTS: Final[dict[str, tuple[str, str]]] = {
    "site": ("碳惠天府 CDCER 登记簿", "CDCER registry · Tanhui Tianfu"),
    "tagline": (
        "每一份核证减排量的签发、转让和注销，任何人都能离线核验。",
        "Every issuance, transfer and retirement of every credit, verifiable by anyone, offline.",
    ),
    "skip": ("跳到正文", "Skip to content"),
    "nav": ("主导航", "Main navigation"),
    "home": ("首页", "Home"),
    "methodologies": ("方法学", "Methodologies"),
    "projects": ("项目", "Projects"),
    "serials": ("序列号查询", "Serial lookup"),
    "retirements": ("注销", "Retirements"),
    "events": ("活动与会议", "Events and meetings"),
    "claims": ("碳中和声明", "Carbon-neutral claims"),
    "log": ("账本", "The log"),
    "language": ("语言", "Language"),
    "switch_to": ("English", "中文"),
    "totals": ("总计", "Totals"),
    "projects_registered": ("已登记项目", "Registered projects"),
    "units_issued": ("已签发 (tCO2e)", "Units issued (tCO2e)"),
    "units_retired": ("已注销 (tCO2e)", "Units retired (tCO2e)"),
    "units_cancelled": ("已作废 (tCO2e)", "Units cancelled (tCO2e)"),
    "claims_count": ("碳中和声明", "Carbon-neutral claims"),
    "over_time": ("逐年签发与注销", "Issuance and retirement by year"),
    "issued": ("签发", "Issued"),
    "retired": ("注销", "Retired"),
    "chart_empty": ("尚无签发或注销。", "Nothing issued or retired yet."),
    "chart_issued": ("签发量（按减排量年份）", "Issued, by vintage"),
    "chart_retired": ("注销量（按所抵消的年份）", "Retired, by the year it was for"),
    "chart_axis": ("年份", "Year"),
    "chart_desc": (
        "每年的签发量与注销量（tCO2e）。签发量按减排量年份统计；注销量按其所抵消的年份统计："
        "机构注销按其申报年度，活动注销按活动结束的年份，个人和自愿注销按注销日期所在的年份。",
        "Units issued and retired per year (tCO2e). Issuance counts in its vintage year; a retirement counts "
        "in the year it was for: an organisation's reporting year, the year an event ended, and for an "
        "individual's or a voluntary retirement the year it was made.",
    ),
    "code": ("代码", "Code"),
    "version": ("版本", "Version"),
    "title": ("名称", "Title"),
    "sector": ("领域", "Sector"),
    "status": ("状态", "Status"),
    "document": ("文件 SHA-256", "Document SHA-256"),
    "published_at": ("发布条目", "Published at entry"),
    "search": ("搜索", "Search"),
    "search_projects": ("按名称或编号搜索", "Search by title or id"),
    "methodology": ("方法学", "Methodology"),
    "district": ("区县", "District"),
    "state": ("状态", "State"),
    "any": ("全部", "Any"),
    "filter": ("筛选", "Filter"),
    "next_page": ("下一页", "Next page"),
    "none_found": ("没有符合条件的记录。", "Nothing matches."),
    "project": ("项目", "Project"),
    "owner": ("业主", "Owner"),
    "description": ("简介", "Description"),
    "crediting_period": ("计入期", "Crediting period"),
    "estimated": ("预计年减排量 (tCO2e)", "Estimated annual reductions (tCO2e)"),
    "validator": ("审定机构", "Validator"),
    "batches": ("签发批次", "Batches"),
    "batch": ("批次", "Batch"),
    "vintage": ("年份", "Vintage"),
    "quantity": ("数量", "Quantity"),
    "issued_time": ("签发时间", "Issued"),
    "reports": ("监测报告", "Monitoring reports"),
    "report": ("报告", "Report"),
    "period": ("监测期", "Period"),
    "claimed": ("申报 (tCO2e)", "Claimed (tCO2e)"),
    "verified_qty": ("核证 (tCO2e)", "Verified (tCO2e)"),
    "history": ("历程", "History"),
    "entry": ("账本条目", "Log entry"),
    "what": ("事项", "What"),
    "h_submitted": ("项目提交", "Project submitted"),
    "h_updated": ("最近一次状态变更：{state}", "Latest change of state: {state}"),
    "h_report": ("监测报告 {id} 提交", "Monitoring report {id} submitted"),
    "h_issued": ("批次 {id} 签发 {quantity} tCO2e", "Batch {id} issued: {quantity} tCO2e"),
    "serial_label": ("序列号或序列号区间", "Serial or serial block"),
    "serial_example": ("例如 CDCER-P0001-2023-001-000042", "e.g. CDCER-P0001-2023-001-000042"),
    "look_up": ("查询", "Look up"),
    "held_by": ("现持有", "Held now"),
    "holder": ("持有者", "Holder"),
    "block": ("序列号区间", "Serial block"),
    "from": ("从", "From"),
    "to": ("到", "To"),
    "time": ("时间", "Time"),
    "beneficiary": ("受益方", "Beneficiary"),
    "purpose": ("用途", "Purpose"),
    "reason": ("理由", "Reason"),
    "event": ("活动", "Event"),
    "organiser": ("组织方", "Organiser"),
    "kind": ("类型", "Kind"),
    "venue": ("地点", "Venue"),
    "dates": ("日期", "Dates"),
    "attendees": ("预计人数", "Expected attendees"),
    "footprint": ("碳足迹 (kgCO2e)", "Footprint (kgCO2e)"),
    "footprint_final": ("最终碳足迹", "Final footprint"),
    "footprint_planned": ("计划碳足迹", "Planned footprint"),
    "source": ("排放源", "Source"),
    "total": ("合计", "Total"),
    "retired_units": ("已为其注销 (tCO2e)", "Units retired for it (tCO2e)"),
    "claim": ("碳中和声明", "Carbon-neutral claim"),
    "no_claim": ("尚无碳中和声明。", "No carbon-neutral claim yet."),
    "claim_title": ("碳中和声明 {id}", "Carbon-neutral claim {id}"),
    "claim_statement": (
        "{organiser} 为“{event}”注销了 {units} 吨 CDCER，抵消其最终碳足迹 {kg} kgCO2e。",
        "{organiser} retired {units} CDCER (t) for “{event}”, covering its final footprint of {kg} kgCO2e.",
    ),
    "units": ("注销量 (tCO2e)", "Units retired (tCO2e)"),
    "issued_at": ("声明时间", "Claimed"),
    "retired_blocks": ("注销的序列号区间", "Retired serial blocks"),
    "entries": ("所依据的账本条目", "The log entries it rests on"),
    "role": ("作用", "Role"),
    "verification": ("实时核验", "Live verification"),
    "verified": ("已核验", "Verified"),
    "not_verified": ("未通过核验", "Not verified"),
    "verified_detail": (
        "全部 {count} 个条目的包含证明均与最新签名检查点（大小 {size}）吻合，签名密钥 {key}。",
        "All {count} entries' inclusion proofs match the latest signed checkpoint (size {size}), key {key}.",
    ),
    "checkpoint_size": ("检查点大小", "Checkpoint size"),
    "key_id": ("登记簿密钥", "Registry key"),
    "checked_at": ("核验时间", "Checked at"),
    "limits": ("离线核验无法证明、需完整审计的内容", "What only a full audit proves"),
    "downloads": ("下载", "Downloads"),
    "download_json": ("JSON 证明包（可离线核验）", "JSON proof bundle (verifies offline)"),
    "download_pdf": ("PDF 证书", "PDF certificate"),
    "qr_alt": ("打开本页的二维码：{url}", "QR code that opens this page: {url}"),
    "verify_yourself": ("自行核验", "Verify it yourself"),
    "checkpoint": ("最新签名检查点", "Latest signed checkpoint"),
    "log_size": ("条目数", "Entries"),
    "root_hash": ("根哈希", "Root hash"),
    "signatures": ("签名", "Signatures"),
    "signer": ("签名者", "Signer"),
    "registry_signer": ("登记簿", "the registry"),
    "witness": ("见证者", "witness"),
    "no_cosignatures": ("该检查点尚无见证者联署。", "No witness has cosigned this checkpoint yet."),
    "vkey": ("验证密钥", "Verifier key"),
    "how_to_verify": ("用 cdcer 核验", "How to verify with cdcer"),
    "how_to_text": (
        "安装 cdcer 后，用登记簿的地址和验证密钥即可核验整个账本，并在以后只核验新增条目：",
        "With cdcer installed, the registry's URL and its verifier key are all you need to verify the whole "
        "log, and later only what is new:",
    ),
    "not_found": ("未找到", "Not found"),
    "bad_request": ("请求有误", "Bad request"),
    "error": ("出错了", "Something went wrong"),
    "back_home": ("返回首页", "Back to the home page"),
    "error_detail": ("详细信息（英文）", "Detail"),
    "about_problem": ("关于问题类型 {code}", "About the problem type {code}"),
    "problem_types": ("问题类型", "Problem types"),
    "problem_types_intro": (
        "登记簿拒绝请求时，返回 RFC 9457 问题详情（application/problem+json），其 type 为 /problems/<代码>，"
        "指向下列说明页。被拒绝的交易不会写入账本。",
        "When the registry refuses a request it answers RFC 9457 problem details (application/problem+json) "
        "whose type is /problems/<code>, the page that describes it below. A refused transaction appends nothing.",
    ),
    "problem_type": ("问题类型 {code}", "Problem type {code}"),
    "http_status": ("HTTP 状态", "HTTP status"),
    "meaning": ("含义", "Meaning"),
    "problem_example": ("响应示例", "What a response looks like"),
    "all_problem_types": ("全部问题类型", "All problem types"),
    "certificate": ("证书", "Certificate"),
    "retirement": ("注销", "Retirement"),
    "actions": ("操作", "Action"),
    "retirement_title": ("注销 {id}", "Retirement {id}"),
    "retirement_statement": (
        "{holder} 为“{beneficiary}”注销了 {quantity} 吨 CDCER。",
        "{holder} retired {quantity} CDCER (t) for “{beneficiary}”.",
    ),
    "retired_by": ("注销方", "Retired by"),
    "year_of": ("{year} 年度", "the year {year}"),
    "verifier": ("核查机构", "Verifier"),
    "verify_steps": (
        "下载 JSON 证明包，用登记簿的验证密钥（由登记簿另行公布，下方亦列出）离线核验：",
        "Download the JSON proof bundle and check it offline with the registry's verifier key (published by "
        "the registry out of band, and shown below):",
    ),
    "project_units": ("减排量去向", "Units of this project"),
    "units_outstanding": ("未注销 (tCO2e)", "Outstanding (tCO2e)"),
    "roles": ("角色", "Roles"),
    "frozen": ("已冻结", "frozen"),
    "registered_entry": ("登记条目", "Registered at entry"),
    "projects_owned": ("拥有的项目", "Projects owned"),
    "projects_validated": ("审定的项目", "Projects validated"),
    "events_organised": ("组织的活动", "Events organised"),
    "retirements_made": ("所做的注销", "Retirements made"),
    "all_as_json": ("查看全部（JSON）", "All of them (JSON)"),
    "no_public_record": ("尚无公开记录。", "Nothing public yet."),
    "o_authority": ("主管部门", "authority"),
    "o_verifier": ("核查机构", "verifier"),
    "o_project_owner": ("项目业主", "project owner"),
    "o_event_organiser": ("活动组织方", "event organiser"),
    "o_account_holder": ("账户持有者", "account holder"),
    "pdf_claim_title": ("碳中和证书", "Carbon Neutrality Certificate"),
    "pdf_retirement_title": ("注销证明", "Retirement Certificate"),
    "certificate_no": ("证书编号 {id}", "Certificate No. {id}"),
    "certifies": ("兹证明", "This is to certify that"),
    "claim_certifies": (
        "已实现碳中和：{organiser}为其在本登记簿注销 {units} 吨 CDCER 核证减排量（1 CDCER = 1 tCO2e），"
        "抵消其申报的最终碳足迹 {kg} kgCO2e。",
        "is carbon neutral: {organiser} retired {units} CDCER (1 CDCER = 1 tCO2e) on this registry, covering "
        "its declared final footprint of {kg} kgCO2e.",
    ),
    "retirement_certifies": (
        "为 {holder} 在本登记簿注销的 {quantity} 吨 CDCER 核证减排量（1 CDCER = 1 tCO2e）的受益方，{purpose}。",
        "is the beneficiary of {quantity} CDCER (1 CDCER = 1 tCO2e) retired on this registry by {holder}, {purpose}.",
    ),
    "pp_event_named": ("用于“{event}”的碳中和", "for the carbon neutrality of “{event}”"),
    "pp_event": ("用于活动碳中和", "for the carbon neutrality of an event"),
    "pp_organisation_year": ("用于该机构 {year} 年度的碳中和", "for the organisation's carbon neutrality in {year}"),
    "pp_organisation": ("用于机构碳中和", "for an organisation's carbon neutrality"),
    "pp_individual": ("用于个人碳中和", "for an individual's carbon neutrality"),
    "pp_voluntary": ("作为自愿注销", "as a voluntary retirement"),
    "seal_ring": ("碳惠天府成都核证减排量登记簿", "CDCER REGISTRY · TANHUI TIANFU · CHENGDU"),
    "seal_centre": ("证书专用章", "CERTIFIED"),
    "scan_to_verify": ("扫码查看并实时核验", "Scan to view and verify"),
    "annex_title": ("证书 {id} 附页", "Annex to certificate {id}"),
    "verify_offline": ("离线核验（VKEY 为上述验证密钥）", "Verify offline (VKEY: the key above)"),
    "issued_on": ("签发日期 {date}", "Issued {date}"),
    # the points path: rules, scenes, offers, attested batches
    "points_rules": ("碳积分规则", "Points rules"),
    "scenes": ("低碳场景", "Low-carbon scenes"),
    "offers": ("积分兑换", "Offers"),
    "points_path": ("碳积分", "Carbon points"),
    "points_intro": (
        "市民的低碳出行和低碳生活由数据提供方按日核证为批次，依规则换算为碳积分，可在经评价的低碳场景兑换商品和服务。"
        "每个批次只公开其统计值和记录的默克尔根，不公开任何个人记录或积分账户。",
        "Citizens' low-carbon trips and habits are attested by data providers, one day at a time, as batches; a "
        "rule turns them into carbon points, redeemed for goods and services at evaluated low-carbon scenes. A batch "
        "is public only as its totals and the Merkle root of its records, never a personal record or a point account.",
    ),
    "points_rules_intro": (
        "主管部门发布的每条规则的每个版本。新版本只在其生效日之后适用，从不追溯，也不改变规则奖励的对象。",
        "Every version of every rule the authority published. A new version applies only from its effective "
        "date, never retroactively, and never changes what the rule rewards.",
    ),
    "rule": ("规则", "Rule"),
    "activity_unit": ("活动单位", "Activity unit"),
    "emission_factor": ("排放因子 (gCO2e/单位)", "Emission factor (gCO2e per unit)"),
    "factor_source": ("因子来源", "Factor source"),
    "points_per_gram": ("每克积分", "Points per gram"),
    "points_per_unit": ("每单位积分", "Points per unit"),
    "caps": ("上限（日 / 月 / 年）", "Caps (day / month / year)"),
    "late_window": ("补报期限", "Late window"),
    "days_n": ("{n} 天", "{n} days"),
    "claim_mode": ("主张方式", "Claim mode"),
    "points_subject": ("奖励对象", "Subject"),
    "displaced_source": ("替代的排放源", "Displaced source"),
    "effective": ("生效日期", "Effective"),
    "open_ended": ("至今", "open-ended"),
    "claim_modes": ("主张方式说明", "What the claim modes mean"),
    "cm_reward_only": ("仅奖励", "reward only"),
    "cm_claim": ("主张减排量", "claim"),
    "cm_means_reward_only": (
        "积分只奖励低碳行为，其对应的减排量不可用于碳中和（不可主张），积分也不能抵消任何排放。",
        "The points reward the activity; the reductions behind them are not claimable toward "
        "carbon neutrality, and the points offset nothing.",
    ),
    "cm_means_claim": (
        "规则主张其奖励的活动所对应的减排量，可用于碳中和；同一活动数据在同一时期不能再被减排项目主张（一项减排只有一个主张方）。",
        "The rule claims the reductions of the activity it rewards: they are claimable toward carbon "
        "neutrality, and no project may claim the same activity data for the same period (one claimant per "
        "reduction).",
    ),
    "sj_account_day": ("账户·日", "account per day"),
    "sj_vehicle_day": ("车辆·日", "vehicle per day"),
    "sj_meter_month": ("电表·月", "meter per month"),
    "scenes_intro": (
        "商户申请、第三方评价机构评价、主管部门决定的低碳场景，包括未获批准和已撤销的。",
        "Places merchants applied for, evaluated by a scene evaluator and decided by the authority, including "
        "those rejected or revoked.",
    ),
    "scene": ("场景", "Scene"),
    "name": ("名称", "Name"),
    "merchant": ("商户", "Merchant"),
    "category": ("类别", "Category"),
    "address": ("地址", "Address"),
    "applied_entry": ("申请条目", "Applied at entry"),
    "evaluation": ("评价", "Evaluation"),
    "evaluator": ("评价机构", "Evaluator"),
    "score": ("得分", "Score"),
    "opinion": ("评价意见", "Opinion"),
    "evaluated_entry": ("评价条目", "Evaluated at entry"),
    "not_evaluated": ("尚未评价。", "Not evaluated yet."),
    "decision": ("决定", "Decision"),
    "decided_entry": ("决定条目", "Decided at entry"),
    "not_decided": ("主管部门尚未决定。", "The authority has not decided yet."),
    "valid_until": ("有效期至", "Valid until"),
    "validity": ("有效期", "Validity"),
    "scene_offers": ("本场景的兑换", "Offers at this scene"),
    "op_positive": ("肯定", "positive"),
    "op_negative": ("否定", "negative"),
    "c_restaurant": ("餐厅", "restaurant"),
    "c_mall": ("商场", "mall"),
    "c_hotel": ("酒店", "hotel"),
    "c_scenic_spot": ("景区", "scenic spot"),
    "c_office": ("办公场所", "office"),
    "c_other": ("其他", "other"),
    "offers_intro": (
        "商户在已批准的低碳场景发布、可用碳积分兑换的商品和服务，包括已撤回的。",
        "Goods and services merchants offer for carbon points at approved low-carbon scenes, including withdrawn ones.",
    ),
    "offer": ("兑换", "Offer"),
    "price_points": ("所需积分", "Price (points)"),
    "stock": ("剩余库存", "Stock left"),
    "per_account_limit": ("每个账户限兑", "Limit per account"),
    "offer_published_entry": ("发布条目", "Published at entry"),
    "batch_title": ("积分批次 {id}", "Points batch {id}"),
    "batch_intro": (
        "数据提供方为一天、一条规则核证的一个批次。本页只列出账本条目所承诺的统计值和默克尔根；各条记录不公开，"
        "持有者可离线核验自己的记录：记录 → 批次根 → 条目 → 检查点。",
        "One day's batch, attested by a data provider under one rule. This page shows only the totals and the "
        "Merkle root the log entry commits to; the records stay private, and a holder verifies its own offline: "
        "record → batch root → entry → checkpoint.",
    ),
    "provider": ("数据提供方", "Data provider"),
    "rule_version": ("规则与版本", "Rule and version"),
    "day": ("日期", "Day"),
    "record_count": ("记录数", "Records"),
    "total_quantity": ("活动总量", "Total activity"),
    "batch_root": ("批次根（RFC 6962）", "Batch root (RFC 6962)"),
    "points_awarded": ("已发放积分", "Points awarded"),
    "points_capped": ("超出上限未发放", "Points above the caps, not awarded"),
    "points_clawed_back": ("已追回积分", "Points clawed back"),
    "reduction": ("减排量 (gCO2e)", "Reduction (gCO2e)"),
    "claimable": ("可用于碳中和", "Claimable"),
    "yes": ("是", "yes"),
    "no": ("否", "no"),
    "attested_entry": ("核证条目", "Attested at entry"),
    "v_n": ("第 {n} 版", "version {n}"),
    # states, purposes, kinds, sources, entry roles
    "s_submitted": ("已提交", "submitted"),
    "s_validated": ("已审定", "validated"),
    "s_registered": ("已登记", "registered"),
    "s_rejected": ("已驳回", "rejected"),
    "s_changes_requested": ("需修改", "changes requested"),
    "s_suspended": ("已暂停", "suspended"),
    "s_closed": ("已关闭", "closed"),
    "s_verified": ("已核证", "verified"),
    "s_issued": ("已签发", "issued"),
    "s_active": ("有效", "active"),
    "s_withdrawn": ("已撤回", "withdrawn"),
    "s_held": ("持有中", "held"),
    "s_retired": ("已注销", "retired"),
    "s_cancelled": ("已作废", "cancelled"),
    "s_transferred": ("已转让", "transferred"),
    "s_claimed": ("已用于声明", "claimed"),
    "s_applied": ("已申请", "applied"),
    "s_evaluated": ("已评价", "evaluated"),
    "s_approved": ("已批准", "approved"),
    "s_revoked": ("已撤销", "revoked"),
    "p_event": ("活动碳中和", "event"),
    "p_organisation": ("机构碳中和", "organisation"),
    "p_individual": ("个人碳中和", "individual"),
    "p_voluntary": ("自愿注销", "voluntary"),
    "k_conference": ("会议", "conference"),
    "k_exhibition": ("展览", "exhibition"),
    "k_sports": ("体育赛事", "sports"),
    "k_performance": ("演出", "performance"),
    "k_forum": ("论坛", "forum"),
    "k_other": ("其他", "other"),
    "f_venue_energy": ("场馆能耗", "venue energy"),
    "f_attendee_transport": ("参会者交通", "attendee transport"),
    "f_staff_transport": ("工作人员交通", "staff transport"),
    "f_accommodation": ("住宿", "accommodation"),
    "f_catering": ("餐饮", "catering"),
    "f_materials": ("物料", "materials"),
    "f_waste": ("废弃物", "waste"),
    "f_other": ("其他", "other"),
    "r_genesis": ("登记簿创立（验证密钥）", "registry genesis (its verifier key)"),
    "r_key": ("签名密钥登记", "signing key registered"),
    "r_role": ("角色授予", "role granted"),
    "r_report": ("监测报告", "monitoring report"),
    "r_verification": ("核查意见", "verification"),
    "r_issuance": ("签发", "issuance"),
    "r_event": ("活动登记", "event registered"),
    "r_footprint": ("最终碳足迹申报", "final footprint declared"),
    "r_retirement": ("注销", "retirement"),
    "r_claim": ("碳中和声明", "carbon-neutral claim"),
}


@dataclass(frozen=True, slots=True)
class Translator:
    """The texts of one language: ``t("key", name=value)`` fills ``{name}`` placeholders."""

    language: Language

    def __call__(self, key: str, /, **values: object) -> str:
        zh, en = TEXTS[key]
        text = zh if self.language == "zh" else en
        return text.format(**values) if values else text

    def word(self, prefix: str, code: str | None) -> str:
        """A domain code (a state, purpose, kind or source) in words; an unknown code as it is."""
        if code is None:
            return ""
        key = f"{prefix}_{code}"
        return self(key) if key in TEXTS else code.replace("_", " ")

    @property
    def other(self) -> Language:
        return "en" if self.language == "zh" else "zh"


def choose(request: Request) -> Language:
    """The language of this request's page (see the module docstring)."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(COOKIE)):
        if candidate is not None and candidate in _BY_NAME:
            return _BY_NAME[candidate]
    return _from_accept_language(request.headers.get("accept-language", ""))


def _from_accept_language(header: str) -> Language:
    best: tuple[float, Language] | None = None
    for part in header.split(","):
        name, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        primary = _BY_NAME.get(name.strip().lower().split("-")[0])
        if primary is not None and (best is None or quality > best[0]):
            best = (quality, primary)
    return best[1] if best is not None else DEFAULT
