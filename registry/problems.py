"""Every problem type the registry answers with, described for people in Chinese and English.

A problem's ``type`` is ``PROBLEM_TYPE_BASE + code`` (``/problems/insufficient_units``): a reference
relative to the registry that answered, so it names the same rule on every registry and, resolved
against the request's URL, opens the page that describes it (`registry.pages.problems`). The codes are
the ledger's rule codes (snake_case, `registry.transactions.errors` gives their statuses) and the
service's own (kebab-case, raised with a `registry.errors.RegistryError`). A test walks the source for
every code raised and checks that it is here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ledger.state.spec import AUTHORISATION_CODES, RULE_CODES
from registry.errors import PROBLEM_TYPE_BASE, status_title
from registry.transactions.errors import violation_status


@dataclass(frozen=True, slots=True)
class ProblemType:
    """One problem type: its status, and what it means and what to do, in each language."""

    code: str
    status: int
    zh: str
    en: str

    @property
    def uri(self) -> str:
        return PROBLEM_TYPE_BASE + self.code

    @property
    def title(self) -> str:
        return status_title(self.status)


# The ledger's rules: a transaction refused (POST /v1/transactions), nothing appended. (zh, en)
_RULES: Final[dict[str, tuple[str, str]]] = {
    "forbidden": (
        "无权执行此操作：对交易而言，签名者的角色不允许提交这类交易。",
        "Not allowed: for a transaction, the actor's roles do not allow its kind.",
    ),
    "unknown_key": (
        "交易所称的签名密钥未登记在该参与方名下。",
        "The transaction names a signing key that is not registered to its actor.",
    ),
    "revoked_key": ("签名密钥已被撤销，不能再签名。", "The signing key was revoked and may no longer sign."),
    "unknown_actor": ("交易的签名者不是已登记的参与方。", "The transaction's actor is not a registered participant."),
    "actor_suspended": (
        "该参与方已被暂停，暂停期间不能提交交易。",
        "The actor is suspended and may not transact until reinstated.",
    ),
    "bad_signature": (
        "Ed25519 签名与交易正文的 RFC 8785 规范字节不符。",
        "The Ed25519 signature does not verify over the body's RFC 8785 canonical bytes.",
    ),
    "conflict_of_interest": (
        "核查机构不能审定或核查与自己有利益关系的项目或报告。",
        "A verifier may not validate or verify a project or report it has an interest in.",
    ),
    "not_engaged": (
        "该核查机构未受此监测报告委托。",
        "The verifier was not engaged for this monitoring report.",
    ),
    "not_found": (
        "交易引用了登记簿中不存在的记录。",
        "The transaction names a record that does not exist in the registry.",
    ),
    "nonce_reused": (
        "该参与方已用过这个随机数（nonce）签名另一笔交易。",
        "The actor already used this nonce for another transaction.",
    ),
    "replay": ("这笔交易已经提交过。", "This transaction was already submitted."),
    "conflict": (
        "与登记簿的当前状态冲突（例如记录已存在）。",
        "The request conflicts with the registry's state (e.g. the record already exists).",
    ),
    "already_retired": ("这些减排量已被注销。", "These units are already retired."),
    "already_cancelled": ("这些减排量已被作废。", "These units are already cancelled."),
    "duplicate_key": (
        "该标识已被使用：公钥已经登记过，或该积分批次已经核证过。",
        "This identifier is taken: the public key is already registered, or the points batch already attested.",
    ),
    "invalid_state": (
        "记录的当前状态不允许这个操作（例如项目尚未登记、报告已核证）。",
        "The record's current state does not allow this step (e.g. a project not registered yet).",
    ),
    "insufficient_units": ("持有的可用减排量不足。", "The holder does not hold enough available units."),
    "insufficient_coverage": (
        "为活动注销的减排量不足以抵消其最终碳足迹。",
        "The units retired for the event do not cover its final footprint.",
    ),
    "not_held": ("所选序列号不在该持有者名下。", "The selected serials are not held by this holder."),
    "frozen": ("账户、项目或批次已被冻结。", "The account, project or batch is frozen."),
    "overlapping_period": (
        "监测期与该项目已有的报告重叠。",
        "The monitoring period overlaps one already reported for the project.",
    ),
    "no_final_footprint": ("活动尚未申报最终碳足迹。", "The event has not declared its final footprint yet."),
    "claim_window_closed": (
        "活动的碳中和声明期限已过。",
        "The window for the event's carbon-neutral claim has closed.",
    ),
    "too_early": (
        "现在做这一步还太早（例如活动尚未结束）。",
        "It is too early for this step (e.g. the event has not ended).",
    ),
    "period_not_ended": ("监测期尚未结束，不能提交报告。", "The monitoring period has not ended yet."),
    "last_authority": ("不能暂停最后一个有效的主管机构。", "The last active authority cannot be suspended."),
    "time_regression": (
        "交易时间早于该参与方上一笔交易。",
        "The transaction's time is earlier than the actor's previous one.",
    ),
    "out_of_order": ("条目未按顺序追加。", "The entry was not applied in log order."),
    "wrong_origin": ("交易是为另一个登记簿签名的。", "The transaction was signed for another registry (its origin)."),
    "stale_transaction": (
        "交易的签名时间与登记簿时钟相差过大；请重新签名。",
        "The transaction's signing time is too far from the registry's clock; sign it again.",
    ),
    "invalid_key": ("公钥格式无效。", "The public key is malformed."),
    "invalid_block": ("序列号区间无效。", "The serial block is not valid."),
    "invalid_recipient": ("接收方不能接收减排量。", "The recipient cannot receive units."),
    "invalid_transfer": ("转让无效（例如转给自己）。", "The transfer is not valid (e.g. to oneself)."),
    "invalid_verifier": ("所指定的不是有效的核查机构。", "The named verifier is not an active verifier."),
    "verified_exceeds_claimed": (
        "核证量不能超过申报量。",
        "The verified quantity may not exceed the claimed quantity.",
    ),
    "empty_footprint": ("碳足迹为空或为 0。", "The footprint is empty or zero."),
    "event_mismatch": ("声明引用的活动登记条目与活动不符。", "The claim names a registration entry of another event."),
    "outside_crediting_period": (
        "监测期不在项目的计入期内。",
        "The monitoring period lies outside the project's crediting period.",
    ),
    "genesis_missing": ("账本的第一个条目必须是登记簿创立。", "Entry 0 of the log must be the registry's genesis."),
    "genesis_not_first": ("登记簿创立只能是第一个条目。", "The registry's genesis is only valid as entry 0."),
    # The public path (carbon points) and one reduction, one claimant.
    "rule_version": (
        "积分规则的版本号必须是上一版本加一（新规则为 1）。",
        "A points rule's version must be the last one plus 1 (1 for a new rule).",
    ),
    "retroactive": (
        "积分规则的版本不能追溯生效：生效日不能早于发布当日，也不能早于上一版本。",
        "A points rule's version never applies retroactively: it takes effect on or after the day it is "
        "published, and after the version before it.",
    ),
    "invalid_rule": (
        "积分规则不一致：新版本不能改变所奖励的对象或被替代的排放源，规则也不能重复列出。",
        "The points rule is inconsistent: a new version cannot change what it rewards, and a rule is listed once.",
    ),
    "invalid_provider": ("所指定的参与方不是数据提供方。", "The named participant is not a data provider."),
    "out_of_scope": (
        "该数据提供方无权就此积分规则提供数据：既不能核证该规则下的批次，也不能为其授权。",
        "The data provider is not scoped to this points rule: it may not attest under it, nor be given consent for it.",
    ),
    "invalid_scope": (
        "项目的活动数据范围重复列出了同一排放源和对象。",
        "The project's scope lists one displaced source and subject twice.",
    ),
    "claimed_elsewhere": (
        "同一减排量只能有一个主张方：一条主张模式的积分规则已在该期间主张了这些减排量。",
        "One reduction, one claimant: a claim-mode points rule already claims these reductions for the period.",
    ),
    "records_missing": (
        "该批次的记录尚未上传：请先分块上传记录，再签署证明。",
        "No records are uploaded for this batch: upload them in chunks first, then sign the attestation.",
    ),
    "no_consent": (
        "某个积分账户未同意该数据提供方按此规则报送其活动。",
        "A point account has not consented to this provider attesting its activity under the rule.",
    ),
    "subject_rewarded": (
        "同一对象（账户日、车辆日、电表月）只能获得一次积分，无论由哪个提供方报送。",
        "A subject (an account's day, a vehicle's day, a meter's month) earns points once, whoever attests it.",
    ),
    "late_attestation": (
        "该日期已超出规则的补报期限。",
        "The day is past the rule's late window for attestations.",
    ),
    "insufficient_points": (
        "积分账户的余额不足。",
        "The point account does not hold enough points.",
    ),
    "not_expirable": (
        "这些积分仍在有效期内，尚不能过期。",
        "Those points are still within their lifetime and cannot expire yet.",
    ),
    "shorter_lifetime": (
        "积分发放后，有效期只能延长，不能缩短。",
        "Once points are awarded their lifetime may be lengthened, never shortened.",
    ),
    "out_of_stock": (
        "该兑换商品库存不足。",
        "The offer does not have that many items left.",
    ),
    "limit_reached": (
        "该账户已达到此兑换商品的限兑数量。",
        "The account has reached the offer's per-account limit.",
    ),
    "offer_closed": (
        "该兑换商品未上架或不在有效期内。",
        "The offer is withdrawn or outside its validity dates.",
    ),
    "scene_not_approved": (
        "该低碳场景未获批准或已过有效期。",
        "The low-carbon scene is not approved, or its approval has lapsed.",
    ),
    "not_in_force": (
        "该积分规则在此日期未生效。",
        "The points rule is not in force on that day.",
    ),
    "root_mismatch": (
        "上传的记录与证明所承诺的数量、总量或默克尔根不一致。",
        "The uploaded records do not match the count, total or Merkle root the attestation commits to.",
    ),
    "invalid_batch": (
        "批次中有无效记录：数量、重复账户、重复对象或对象承诺有误。",
        "A record of the batch is invalid: its quantity, a repeated account or subject, or its subject commitment.",
    ),
}

_UNDESCRIBED: Final = (
    "登记簿按该规则拒绝了这笔交易，未写入账本；原因见响应的 detail。",
    "The ledger refused the transaction under this rule and appended nothing; the detail says why.",
)

# The service's own problems. (status, zh, en)
_SERVICE: Final[dict[str, tuple[int, str, str]]] = {
    "bad-request": (400, "请求有误。", "The request is not valid."),
    "invalid-cursor": (
        400,
        "分页游标无效：请使用上一页返回的 next_cursor，或不带游标取第一页。",
        "The cursor is not one this list handed out: pass the previous page's next_cursor, or none.",
    ),
    "invalid-range": (400, "范围无效（起点大于终点，或超出账本）。", "The range is empty or reversed."),
    "invalid-time": (400, "时间超出 UTC 的 1 至 9999 年。", "The time lies outside the years 1 to 9999 in UTC."),
    "invalid-serial": (
        400,
        "既不是序列号也不是序列号区间（例如 CDCER-P0007-2023-001-000042）。",
        "Neither a serial nor a serial block (e.g. CDCER-P0007-2023-001-000042).",
    ),
    "size-beyond-log": (400, "所请求的大小超出账本的条目数。", "The size asked for is beyond the log's entries."),
    "index-beyond-size": (400, "条目序号不在该大小的树中。", "The leaf index is not in a tree of that size."),
    "malformed-json": (
        400,
        "请求正文不是有效的 JSON（UTF-8、无重复键、嵌套不超过 32 层）。",
        "The body is not valid JSON.",
    ),
    "malformed-cosignature": (400, "见证者联署行格式有误。", "The cosignature line is malformed."),
    "incomplete-body": (
        400,
        "请求正文尚未完整到达，连接就已关闭。",
        "The connection closed before the whole body arrived.",
    ),
    "malformed-http": (400, "HTTP 请求格式有误。", "The HTTP request is malformed."),
    "unauthorized": (401, "需要签名的请求。", "The request must be authenticated."),
    "signature-required": (
        401,
        "账户查询须由持有者、主管机构或审计方以 RFC 9421 HTTP 消息签名。",
        "Account reads must be signed (RFC 9421) by the holder, the authority or an auditor.",
    ),
    "account-read-forbidden": (
        403,
        "签名者无权查看该账户。",
        "The signer may not read this account: only its holder, the authority or an auditor.",
    ),
    "unknown-witness": (
        403,
        "联署者不是已登记的见证者，或密钥不符。",
        "The cosigner is not a registered witness with that key.",
    ),
    "invalid-cosignature": (
        403,
        "联署签名与检查点文本不符。",
        "The cosignature does not verify over the checkpoint's text.",
    ),
    "not-found": (404, "没有这个页面或记录。", "There is no such page or record."),
    "no-checkpoint": (404, "登记簿尚未签署检查点（账本为空）。", "The registry has not signed a checkpoint yet."),
    "no-checkpoint-at-size": (404, "没有在该大小签署的检查点。", "No checkpoint was signed at that size."),
    "no-verifier-key": (
        404,
        "登记簿尚未创立，还没有验证密钥。",
        "The registry has not been founded: no verifier key yet.",
    ),
    "serial-not-found": (404, "序列号超出该批次的范围。", "The serials lie beyond their batch."),
    "method-not-allowed": (405, "该地址不支持这个 HTTP 方法。", "This address does not accept that HTTP method."),
    "request-timeout": (408, "请求未在时限内完整到达。", "The request did not arrive whole within the time limit."),
    "already-cosigned": (409, "该见证者已联署过这个检查点。", "This witness already cosigned this checkpoint."),
    "content-too-large": (413, "请求正文超过大小限制（默认 64 KiB）。", "The request body is over the size limit."),
    "request-head-too-large": (431, "请求头过大。", "The request's head is too large."),
    "invalid-request": (422, "请求无效。", "The request is not valid."),
    "validation-error": (
        422,
        "请求参数或正文不符合 API 的模式。",
        "A parameter or the body does not match the API's schema.",
    ),
    "invalid-value": (
        422,
        "参数中的值登记簿无法查询（例如超出整数范围）。",
        "A parameter holds a value the registry cannot look up.",
    ),
    "invalid-transaction": (422, "交易正文不符合交易的模式。", "The transaction body does not match its schema."),
    "error": (500, "出错了。", "Something went wrong."),
    "internal-server-error": (500, "登记簿内部出错。", "The registry failed internally."),
    "integrity-failure": (
        500,
        "登记簿存储的账本未通过完整性检查；运营方须运行 cdcer audit verify 并修复。",
        "The registry's stored log failed an integrity check; its operator must audit and repair it.",
    ),
    "service-unavailable": (503, "服务暂不可用，请稍后重试。", "The service is unavailable; try again later."),
    "storage-unavailable": (503, "数据库不可用，请稍后重试。", "The database is unavailable; try again later."),
    "read-only": (
        503,
        "登记簿为只读（未配置账本签名密钥）。",
        "The registry is read-only: no log signing key is configured.",
    ),
    "shutting-down": (503, "登记簿正在关闭，请稍后重试。", "The registry is shutting down; try again later."),
    "append-outcome-unknown": (
        503,
        "交易可能已追加，也可能没有；再次提交同一交易即可确定（已追加的会返回原回执）。",
        "The transaction may or may not be in the log: send it again (an appended one gets its receipt).",
    ),
    "integrity-check-failed": (
        503,
        "追加前的完整性检查失败，交易未追加。",
        "An integrity check failed before the append; the transaction was not appended.",
    ),
}

# Records a lookup can miss: the problem is ``<record>-not-found``. (zh noun, en noun, where they are listed)
RECORDS: Final[dict[str, tuple[str, str, str]]] = {
    "participant": ("参与方", "participant", "/v1/participants"),
    "methodology": ("方法学", "methodology", "/methodologies"),
    "project": ("项目", "project", "/projects"),
    "batch": ("签发批次", "batch", "/v1/batches"),
    "retirement": ("注销", "retirement", "/retirements"),
    "cancellation": ("作废", "cancellation", "/v1/cancellations"),
    "event": ("活动", "event", "/events"),
    "claim": ("碳中和声明", "claim", "/claims"),
    "account": ("账户", "account", "/v1/participants"),
}


def _catalogue() -> dict[str, ProblemType]:
    assert not set(_RULES) & set(_SERVICE), set(_RULES) & set(_SERVICE)
    # A rule the ledger declares but this table does not describe yet still has its page.
    undescribed = dict.fromkeys({*AUTHORISATION_CODES, *RULE_CODES} - set(_RULES), _UNDESCRIBED)
    types = {
        code: ProblemType(code, violation_status(code), zh, en) for code, (zh, en) in (_RULES | undescribed).items()
    }
    types |= {code: ProblemType(code, status, zh, en) for code, (status, zh, en) in _SERVICE.items()}
    for record, (zh_noun, en_noun, listing) in RECORDS.items():
        code = f"{record}-not-found"
        types[code] = ProblemType(
            code,
            404,
            f"登记簿中没有这个{zh_noun}；全部{zh_noun}见 {listing}。",
            f"There is no such {en_noun} in the registry; they are listed at {listing}.",
        )
    return dict(sorted(types.items()))


PROBLEM_TYPES: Final[dict[str, ProblemType]] = _catalogue()
"""Every problem type, by code."""
