"""The registry's state machine: the state that replaying the log builds, and how each entry changes it.

`State.authorise` decides whether an actor's key may sign a transaction at a given entry (invariant 5);
`State.apply` applies one transaction through its kind's handler (`ledger.state.kinds`) or raises a
`RuleViolation` at the first broken rule, without changing anything. `State.dirty` names the rows an
apply changed, so storage writes only those.
"""

from __future__ import annotations

import bisect
import hashlib
from collections import deque
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from ledger.errors import RuleViolation
from ledger.keys import PublicKey
from ledger.state.context import Context
from ledger.state.kinds import HANDLERS, KIND_ROLES
from ledger.state.outcomes import Outcome
from ledger.state.records import (
    Attestation,
    Batch,
    Block,
    Cancellation,
    Claim,
    Consent,
    Event,
    Key,
    Methodology,
    Offer,
    Participant,
    PointAccount,
    PointLot,
    PointsPolicySet,
    PointsRule,
    PointTotals,
    Project,
    ProjectScopes,
    ProviderRules,
    Redemption,
    Report,
    Retirement,
    Scene,
    Witness,
    record_key,
)
from ledger.transactions import KeyRevoke, RegistryGenesis, TransactionBody, format_utc

FRESHNESS = timedelta(minutes=15)
"""A transaction's client time must lie within this much of its acceptance time. Together with
nonces this bounds replay detection to a sliding window, so the audit needs bounded memory."""


class State:
    """The registry state that replaying the log builds, and the rules every transaction must pass."""

    def __init__(self) -> None:
        self.origin: str | None = None
        self.registry_vkey: str | None = None
        self.size = 0  # entries applied so far (the next entry's index)
        self.participants: dict[str, Participant] = {}
        self.keys: dict[str, Key] = {}
        self.witnesses: dict[str, Witness] = {}
        self.methodologies: dict[tuple[str, str], Methodology] = {}
        self.projects: dict[str, Project] = {}
        self.reports: dict[str, Report] = {}
        self.reports_by_project: dict[str, list[str]] = {}
        self.batches: dict[str, Batch] = {}
        self.batch_count: dict[tuple[str, int], int] = {}
        self.retirements: dict[str, Retirement] = {}
        self.cancellations: dict[str, Cancellation] = {}
        self.events: dict[str, Event] = {}
        self.claims: dict[str, Claim] = {}
        # The public path: points rules by (rule, version) and each rule's latest version, providers' rules,
        # point accounts, consents by (account, provider, rule).
        self.points_rules: dict[tuple[str, int], PointsRule] = {}
        self.rule_versions: dict[str, int] = {}
        self.provider_rules: dict[str, ProviderRules] = {}
        self.point_accounts: dict[str, PointAccount] = {}
        self.consents: dict[tuple[str, str, str], Consent] = {}
        self.project_scopes: dict[str, ProjectScopes] = {}
        # Attested batches, each account's lots by (account, month) with its months in order, and totals.
        self.attestations: dict[str, Attestation] = {}
        self.points_policy: dict[int, PointsPolicySet] = {}
        self.point_lots: dict[tuple[str, str], PointLot] = {}
        self.lot_months: dict[str, list[str]] = {}
        self.point_totals: dict[str, PointTotals] = {}
        self.scenes: dict[str, Scene] = {}
        self.offers: dict[str, Offer] = {}
        self.redemptions: dict[str, Redemption] = {}
        # Derived only in memory (the log replays them): the subjects rewarded in each period, with the
        # batch that rewarded them; what each batch awarded each account; the points each account earned
        # under each rule per day, month and year (the caps); the items each account ordered of each offer
        # in orders not cancelled (kept by `_put`, so the per-account limit costs no scan).
        self.rewarded_subjects: dict[str, dict[str, str]] = {}
        self.batch_awards: dict[str, dict[str, int]] = {}
        self.earned: dict[tuple[str, str, str], int] = {}
        self.ordered: dict[tuple[str, str], int] = {}
        # Units: every block of a batch, sorted by first serial; and each holder's held blocks.
        self.blocks: dict[str, list[Block]] = {}
        self._firsts: dict[str, list[int]] = {}
        self.held: dict[str, set[tuple[str, int]]] = {}
        # Each holder's held blocks by age (vintage, issuance order, first serial), and running totals,
        # so balances and "oldest serials first" cost O(blocks moved), not O(blocks held).
        self._held_order: dict[str, list[tuple[int, int, str, int]]] = {}
        self._balances: dict[str, int] = {}
        # Replay protection: (actor, nonce) digests of the last FRESHNESS window of entries.
        # Nonce digests bucketed by the minute of acceptance; whole buckets expire together. A set of
        # small ints per minute costs ~60 bytes a transaction, whatever the log's length.
        self._nonce_buckets: deque[tuple[int, set[int]]] = deque()
        self.last_time: datetime | None = None
        self.dirty: set[tuple[str, tuple[Any, ...]]] = set()
        self._by_table: dict[str, dict[Any, Any]] = {
            Participant.TABLE: self.participants,
            Key.TABLE: self.keys,
            Witness.TABLE: self.witnesses,
            Methodology.TABLE: self.methodologies,
            Project.TABLE: self.projects,
            Report.TABLE: self.reports,
            Batch.TABLE: self.batches,
            Retirement.TABLE: self.retirements,
            Cancellation.TABLE: self.cancellations,
            Event.TABLE: self.events,
            Claim.TABLE: self.claims,
            PointsRule.TABLE: self.points_rules,
            ProviderRules.TABLE: self.provider_rules,
            PointAccount.TABLE: self.point_accounts,
            Consent.TABLE: self.consents,
            ProjectScopes.TABLE: self.project_scopes,
            Attestation.TABLE: self.attestations,
            PointsPolicySet.TABLE: self.points_policy,
            PointLot.TABLE: self.point_lots,
            PointTotals.TABLE: self.point_totals,
            Scene.TABLE: self.scenes,
            Offer.TABLE: self.offers,
            Redemption.TABLE: self.redemptions,
        }

    # ---- reading ------------------------------------------------------------------------------------

    def records(self, table: str) -> Iterator[Any]:
        """Every record of one projection table, in primary-key order."""
        source: dict[Any, Any] = self._by_table.get(table, {})
        if table == Block.TABLE:
            for bid in sorted(self.blocks):
                yield from self.blocks[bid]
            return
        for key in sorted(source):
            yield source[key]

    def lookup(self, table: str, key: tuple[Any, ...]) -> Any | None:
        """One record by table and primary key, or None if it no longer exists."""
        if table == Block.TABLE:
            found = self._find_block(key[0], key[1])
            return found if found is not None and found.first == key[1] else None
        single = key[0] if len(key) == 1 else key
        return self._by_table[table].get(single)

    def balance(self, holder: str) -> int:
        """Units an account holds now."""
        return self._balances.get(holder, 0)

    def held_blocks(self, holder: str) -> Iterator[Block]:
        """An account's held blocks, oldest serials first (lazily: stop when you have enough).

        Do not change the state while iterating.
        """
        for _, _, bid, first in self._held_order.get(holder, ()):
            block = self._find_block(bid, first)
            assert block is not None
            assert block.first == first
            yield block

    def _age(self, block: Block) -> tuple[int, int, str, int]:
        batch = self.batches[block.batch_id]
        return (batch.vintage, batch.sequence, block.batch_id, block.first)

    def _hold(self, block: Block) -> None:
        self.held.setdefault(block.holder, set()).add((block.batch_id, block.first))
        bisect.insort(self._held_order.setdefault(block.holder, []), self._age(block))
        self._balances[block.holder] = self._balances.get(block.holder, 0) + block.quantity

    def _unhold(self, block: Block) -> None:
        self.held[block.holder].discard((block.batch_id, block.first))
        order = self._held_order[block.holder]
        age = self._age(block)
        pos = bisect.bisect_left(order, age)
        if pos < len(order) and order[pos] == age:
            del order[pos]
        self._balances[block.holder] -= block.quantity

    def _find_block(self, bid: str, serial: int) -> Block | None:
        firsts = self._firsts.get(bid)
        if not firsts:
            return None
        pos = bisect.bisect_right(firsts, serial) - 1
        if pos < 0:
            return None
        block = self.blocks[bid][pos]
        return block if block.first <= serial <= block.last else None

    # ---- authorisation (invariant 5) ------------------------------------------------------------------

    def authorise(self, body: TransactionBody, *, index: int, accepted_at: datetime) -> PublicKey:
        """Check origin, freshness, replay, actor, key and role; return the key that must have signed.

        The caller verifies the signature with the returned key. Raises `RuleViolation`.
        """
        if index != self.size:
            raise RuleViolation("out_of_order", f"entry {index} applied when {self.size} was expected")
        if self.last_time is not None and accepted_at < self.last_time:
            raise RuleViolation(
                "time_regression",
                f"acceptance time {format_utc(accepted_at)} is before the previous entry's "
                f"{format_utc(self.last_time)}",
            )
        if abs(body.created_at - accepted_at) > FRESHNESS:
            raise RuleViolation(
                "stale_transaction",
                f"transaction time {format_utc(body.created_at)} is more than "
                f"{int(FRESHNESS.total_seconds() // 60)} minutes from the registry's time "
                f"{format_utc(accepted_at)}; sign it again with the current time",
            )
        digest = _nonce_digest(body.actor, body.nonce)
        self._expire_nonces(accepted_at)
        if any(digest in seen for _, seen in self._nonce_buckets):
            raise RuleViolation(
                "replay",
                f"nonce {body.nonce} of {body.actor} was already used in the last "
                f"{int(2 * FRESHNESS.total_seconds() // 60)} minutes",
            )
        if isinstance(body.payload, RegistryGenesis) and index == 0:
            key = PublicKey.from_b64(body.payload.authority_public_key)
            if key.key_id != body.key_id:
                raise RuleViolation("unknown_key", f"genesis names key {body.key_id} but carries {key.key_id}")
            return key
        if index == 0:
            raise RuleViolation("genesis_missing", "entry 0 must be registry.genesis")
        if body.origin != self.origin:
            raise RuleViolation("wrong_origin", f"transaction is for registry {body.origin!r}, this is {self.origin!r}")
        actor = self.participants.get(body.actor)
        if actor is None:
            raise RuleViolation("unknown_actor", f"no participant {body.actor!r} is registered")
        if actor.status != "active":
            raise RuleViolation("actor_suspended", f"participant {body.actor} is suspended")
        stored = self.keys.get(body.key_id)
        if stored is None or stored.participant_id != body.actor:
            raise RuleViolation("unknown_key", f"key {body.key_id} is not registered to {body.actor}")
        if stored.revoked_at is not None:
            raise RuleViolation(
                "revoked_key", f"key {body.key_id} of {body.actor} was revoked at entry {stored.revoked_at}"
            )
        allowed = KIND_ROLES[body.kind]
        roles = set(actor.roles)
        self_revoke = (
            isinstance(body.payload, KeyRevoke) and body.payload.participant_id == body.actor
        )  # anyone may revoke their own (stolen) key
        if not self_revoke and not roles & {r.value for r in allowed}:
            needed = " or ".join(sorted(r.value for r in allowed))
            raise RuleViolation("forbidden", f"{body.kind} needs the role {needed}; {body.actor} has {sorted(roles)}")
        if isinstance(body.payload, RegistryGenesis):  # an authority's, after the role check: others get forbidden
            raise RuleViolation("genesis_not_first", "registry.genesis is only valid as entry 0")
        return PublicKey.from_b64(stored.public_key)

    def skip(self, index: int) -> None:
        """Count entry ``index`` as seen without applying it (the audit, after reporting it as bad)."""
        self.size = index + 1

    def _expire_nonces(self, now: datetime) -> None:
        # Keep one extra minute so a bucket is dropped only when all of it is past the window.
        horizon = _minute(now - 2 * FRESHNESS) - 1
        while self._nonce_buckets and self._nonce_buckets[0][0] < horizon:
            self._nonce_buckets.popleft()

    # ---- applying ----------------------------------------------------------------------------------------

    def apply(self, body: TransactionBody, *, index: int, accepted_at: datetime, attachment: Any = None) -> Outcome:
        """Apply one authorised transaction as entry ``index``; raise `RuleViolation` and change nothing.

        Call `authorise` first (and verify the signature with the key it returns). `attachment` is what
        the transaction commits to without carrying it: a `points.attest` batch's records
        (`ledger.points_batch.PointRecord`s, in order), which its handler checks against the root.
        """
        if index != self.size:
            raise RuleViolation("out_of_order", f"entry {index} applied when {self.size} was expected")
        handler = HANDLERS[type(body.payload)]
        ctx = Context(state=self, body=body, index=index, time=accepted_at, attachment=attachment)
        outcome = handler(ctx)
        # Every check has passed: commit the planned changes.
        ctx.commit()
        minute = _minute(accepted_at)
        if not self._nonce_buckets or self._nonce_buckets[-1][0] != minute:
            self._nonce_buckets.append((minute, set()))
        self._nonce_buckets[-1][1].add(_nonce_digest(body.actor, body.nonce))
        self.last_time = accepted_at
        self.size = index + 1
        return outcome

    # ---- mutation primitives used by _Context.commit ----------------------------------------------

    def _put(self, record: Any) -> None:
        table = record.TABLE
        key = record_key(record)
        if table == Block.TABLE:
            self._put_block(record)
        else:
            target = self._table(table)
            if table == Report.TABLE and key[0] not in target:
                # The index the overlap rule reads: kept here so it changes only on commit.
                self.reports_by_project.setdefault(record.project_id, []).append(key[0])
            if table == PointsRule.TABLE:
                self.rule_versions[record.rule_id] = max(self.rule_versions.get(record.rule_id, 0), record.version)
            if table == PointLot.TABLE and key not in target:
                bisect.insort(self.lot_months.setdefault(record.account_id, []), record.month)
            if table == Redemption.TABLE:
                self._count_order(target.get(key[0]), -1)
                self._count_order(record, 1)
            target[key[0] if len(key) == 1 else key] = record
        self.dirty.add((table, key))

    def _remove(self, table: str, key: tuple[Any, ...]) -> None:
        target = self._table(table)
        removed = target.pop(key[0] if len(key) == 1 else key, None)
        if table == Redemption.TABLE:
            self._count_order(removed, -1)
        if table == PointLot.TABLE:
            months = self.lot_months[key[0]]
            months.remove(key[1])
            if not months:
                del self.lot_months[key[0]]
        self.dirty.add((table, key))

    def _count_order(self, order: Redemption | None, sign: int) -> None:
        """Add (`sign` 1) or take away (-1) an order's items in `ordered`, unless it was cancelled."""
        if order is None or order.state == "cancelled":
            return
        key = (order.account_id, order.offer_id)
        count = self.ordered.get(key, 0) + sign * order.quantity
        if count:
            self.ordered[key] = count
        else:
            self.ordered.pop(key, None)  # no zero counts: as a replay that never saw the order

    def _table(self, table: str) -> dict[Any, Any]:
        return self._by_table[table]

    def _put_block(self, block: Block) -> None:
        blocks = self.blocks.setdefault(block.batch_id, [])
        firsts = self._firsts.setdefault(block.batch_id, [])
        pos = bisect.bisect_left(firsts, block.first)
        if pos < len(firsts) and firsts[pos] == block.first:
            old = blocks[pos]
            if old.state == "held":
                self._unhold(old)
            blocks[pos] = block
        else:
            blocks.insert(pos, block)
            firsts.insert(pos, block.first)
        if block.state == "held":
            self._hold(block)

    def _drop_block(self, bid: str, first: int) -> None:
        firsts = self._firsts[bid]
        pos = bisect.bisect_left(firsts, first)
        old = self.blocks[bid][pos]
        if old.state == "held":
            self._unhold(old)
        del self.blocks[bid][pos]
        del firsts[pos]
        self.dirty.add((Block.TABLE, (bid, first)))


def _nonce_digest(actor: str, nonce: str) -> int:
    # 64 bits: a false "replay" needs a collision among the ~10^6 nonces of one window (p < 10^-7).
    return int.from_bytes(hashlib.sha256(f"{actor}\x00{nonce}".encode()).digest()[:8], "big")


def _minute(when: datetime) -> int:
    return int(when.timestamp()) // 60
