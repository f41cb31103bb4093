"""The audit: verify a whole ledger from its entries, checkpoints and (when given) its projection tables.

The audit streams the log once, in order, keeping only O(log n) tree state, the replayed registry
state and a bounded window of nonces, and reports every finding with the entry it concerns:

(1) entry encoding: every entry decodes strictly (canonical JSON, exact fields), says its own index,
    and its stored leaf hash is SHA-256(0x00 || bytes);
(2) chain hashes: each entry names the previous chain hash and its stored chain hash is
    SHA-256(chain_{i-1} || leaf_hash_i);
(3) checkpoints: the Merkle root recomputed from the entries equals the root of every stored
    checkpoint, each checkpoint is a valid signed note by the registry's key for its origin, and no
    checkpoint claims more entries than the log holds;
(4) consistency: each checkpoint extends the one before (a consistency proof built from the stored
    tree nodes verifies between their roots), so the log was never forked or rewritten;
(5) signatures: each entry was signed by the key the authority had registered for its actor and not
    revoked at that entry (checked in worker processes, spread over all cores);
(6) roles: the actor was active and had the role the transaction kind needs;
(7) replay: applying every entry to a fresh state passes every rule, and every invariant of SPEC
    section 3 holds at the end;
(8) projections: the database's projection tables equal the replayed state, row for row, its
    unit movements (the serials' histories) equal those the replay derives, entry by entry, the columns
    the store keeps beside each entry's bytes (acceptance time, actor, nonce, kind, transaction hash:
    what receipts of re-sent transactions and certificates are looked up by) equal the entry's own, and
    the registry's recorded origin and verifier key are those its genesis entry names.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import nacl.exceptions
import nacl.signing
from pydantic import ValidationError

from ledger.checkpoint import open_checkpoint
from ledger.encoding import b64encode
from ledger.errors import EncodingError, LedgerError, NoteError, ProofError, RuleViolation
from ledger.heap import HeapSettler
from ledger.history import Movement, movement_row, movements
from ledger.invariants import Finding, check_all
from ledger.log import GENESIS_CHAIN, ChainHash, Entry, StoredEntry, chain_hash, decode_entry
from ledger.merkle import (
    Frontier,
    Hash,
    NodeReader,
    consistency_proof,
    frontier_from_last_leaf,
    leaf_hash,
    verify_consistency,
)
from ledger.note import NoteVerifier
from ledger.points_batch import PointRecord
from ledger.state import RECORD_TYPES, Outcome, State
from ledger.storage.tables import record_row
from ledger.transactions import (
    PointsAttest,
    PointsClawback,
    PointsExpire,
    PointsRedeem,
    RedemptionCancel,
    RedemptionFulfil,
    RegistryGenesis,
    TransactionBody,
    format_utc,
    signing_message,
)

MAX_REPORTED_FINDINGS = 1000
POINTS_BALANCE_KINDS = (PointsAttest, PointsExpire, PointsClawback, PointsRedeem, RedemptionFulfil, RedemptionCancel)
"""The kinds whose replay needs the point balances, hence every attested batch's private records."""
PARALLEL_THRESHOLD = 4096  # below this many entries, verifying inline beats starting workers
CHUNK = 2048


@dataclass(frozen=True, slots=True)
class SourceCheckpoint:
    """A stored checkpoint: its size, the root stored beside it, and the signed note."""

    size: int
    root_hash: bytes
    note: bytes


class AuditSource(Protocol):
    """Where the audit reads a ledger from: a database, a registry over HTTP, or an export file."""

    def entries(self) -> Iterator[StoredEntry]:
        """Every entry from index 0, in order."""

    def checkpoints(self) -> Sequence[SourceCheckpoint]:
        """Every stored checkpoint, smallest size first."""

    def node_reader(self) -> NodeReader | None:
        """The stored tree nodes, if the source has them (used for step 4)."""

    def projection_rows(self, table: str) -> Iterator[dict[str, Any]] | None:
        """Rows of a projection table, if the source has them (used for step 8)."""

    def movement_rows(self) -> Iterator[dict[str, Any]] | None:
        """The stored unit movements in (entry, batch, first) order, if the source has them (step 8)."""

    def entry_index_rows(self) -> Iterator[dict[str, Any]] | None:
        """The columns stored beside each entry (``idx``, ``accepted_at``, ``actor``, ``nonce``, ``kind``,
        ``tx_hash``) in index order, if the source has them (step 8)."""

    def registry_meta(self) -> Mapping[str, str] | None:
        """The registry's recorded settings (``origin``, ``vkey``), if the source has them (step 8)."""

    holds_point_records: bool
    """Whether the source holds the points batches' private records at all (a database does; the public log
    over HTTP and an export do not, by design: they are served to the holder, the authority and auditors)."""

    def point_records(self, batch_id: str, provider: str) -> Sequence[PointRecord] | None:
        """The records `provider` uploaded for points batch `batch_id`, if the source has them (step 7).

        From a source that holds them, a batch without its records is a finding; from one that does not,
        the points balances are not replayed (`AuditReport.points_not_replayed`)."""


@dataclass(slots=True)
class AuditReport:
    """What the audit found. ``verified`` is true only when there is no finding at all."""

    entries: int = 0
    checkpoints: int = 0
    signatures_checked: int = 0
    root_hash: bytes = b""
    findings: list[Finding] = field(default_factory=list)
    finding_count: int = 0
    projections_checked: bool = False
    points_not_replayed: int = 0
    """Entries that award, spend or expire points, checked for chain, tree, key, role and signature but not
    replayed, because the source does not hold the batches' private records (the public log, an export)."""

    @property
    def verified(self) -> bool:
        """No finding: the ledger verifies."""
        return self.finding_count == 0

    @property
    def first_bad_index(self) -> int | None:
        """The smallest entry index any finding names."""
        indexes = [f.index for f in self.findings if f.index is not None]
        return min(indexes) if indexes else None

    def first_finding(self) -> Finding | None:
        """The finding about the earliest entry (or the first finding if none names an entry)."""
        with_index = [f for f in self.findings if f.index is not None]
        if with_index:
            return min(with_index, key=lambda f: f.index if f.index is not None else -1)
        return self.findings[0] if self.findings else None

    def add(self, step: str, message: str, index: int | None = None) -> None:
        """Record a finding (keeping the first MAX_REPORTED_FINDINGS in full)."""
        self.finding_count += 1
        if len(self.findings) < MAX_REPORTED_FINDINGS:
            self.findings.append(Finding(step, message, index))

    def to_json(self) -> dict[str, Any]:
        """A machine-readable report."""
        first = self.first_finding()
        return {
            "verified": self.verified,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "signatures_checked": self.signatures_checked,
            "root_hash": b64encode(self.root_hash),
            "projections_checked": self.projections_checked,
            "points_not_replayed": self.points_not_replayed,
            "first_bad_index": self.first_bad_index,
            "first_finding": None if first is None else str(first),
            "finding_count": self.finding_count,
            "findings": [{"step": f.invariant, "index": f.index, "message": f.message} for f in self.findings],
        }


def _verify_chunk(items: Sequence[tuple[int, bytes, bytes, bytes]]) -> list[int]:
    """Worker: the indexes whose signature does not verify (public key, message, signature)."""
    bad = []
    for index, public_key, message, signature in items:
        try:
            nacl.signing.VerifyKey(public_key).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.CryptoError, ValueError, TypeError):
            bad.append(index)
    return bad


class _SignatureChecker:
    """Ships signature checks to worker processes in chunks, with a bounded number in flight."""

    def __init__(self, report: AuditReport, workers: int) -> None:
        self.report = report
        self.workers = workers
        self.pending: list[tuple[int, bytes, bytes, bytes]] = []
        self.inflight: deque[Future[list[int]]] = deque()
        self.pool: ProcessPoolExecutor | None = None

    def add(self, index: int, public_key: bytes, message: bytes, signature: bytes) -> None:
        self.pending.append((index, public_key, message, signature))
        self.report.signatures_checked += 1
        if len(self.pending) >= CHUNK:
            self._flush()

    def _flush(self) -> None:
        items, self.pending = self.pending, []
        if not items:
            return
        # A small log is verified inline: starting worker processes would cost more than it saves.
        if self.workers <= 1 or (self.pool is None and self.report.signatures_checked <= PARALLEL_THRESHOLD):
            self._record(_verify_chunk(items))
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(max_workers=self.workers)
        self.inflight.append(self.pool.submit(_verify_chunk, items))
        while len(self.inflight) > 2 * self.workers:
            self._record(self.inflight.popleft().result())

    def _record(self, bad: list[int]) -> None:
        for index in bad:
            self.report.add("signatures", "the actor's signature does not verify with its registered key", index)

    def finish(self) -> None:
        self._flush()
        while self.inflight:
            self._record(self.inflight.popleft().result())
        if self.pool is not None:
            self.pool.shutdown()


def audit(
    source: AuditSource,
    *,
    vkey: str | None = None,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Run steps (1) to (8) over a ledger and return every finding.

    ``vkey`` is the registry's verifier key as the auditor knows it; without it the key named in
    the genesis entry is used (which only proves self-consistency, not identity).
    """
    report = AuditReport()
    checkpoints = list(source.checkpoints())
    report.checkpoints = len(checkpoints)
    pending_cps = deque(checkpoints)
    verifier: NoteVerifier | None = _verifier(vkey, report) if vkey is not None else None
    state = State()
    frontier = Frontier.empty()
    records: Callable[[str, str], Sequence[PointRecord] | None] | None = (
        source.point_records if source.holds_point_records else None
    )
    running_chain = GENESIS_CHAIN
    if workers is None:
        workers = os.cpu_count() or 1
    checker = _SignatureChecker(report, workers)
    stored_moves = source.movement_rows()
    moves = None if stored_moves is None else _MovementCheck(stored_moves, report)
    stored_index = source.entry_index_rows()
    index_check = None if stored_index is None else _EntryIndexCheck(stored_index, report)
    heap = HeapSettler(every=100_000)
    try:
        for stored in source.entries():
            index = stored.index
            if index != report.entries:
                report.add("encoding", f"expected entry {report.entries} next, found entry {index}", report.entries)
                index = report.entries
            report.entries += 1
            # (1) entry encoding and leaf hash
            leaf = leaf_hash(stored.data)
            if stored.leaf_hash != leaf:
                report.add("encoding", "stored leaf hash does not match the entry's bytes", index)
            # (2) chain hash
            computed_chain = chain_hash(running_chain, leaf)
            if stored.chain_hash != computed_chain:
                report.add(
                    "chain",
                    f"chain hash mismatch: expected {computed_chain.hex()[:12]}…, "
                    f"stored {stored.chain_hash.hex()[:12]}…",
                    index,
                )
            # (3) the tree as the entries build it
            frontier.append(leaf)
            try:
                entry = decode_entry(stored.data, index=index)
            except EncodingError as exc:
                report.add("encoding", str(exc).removeprefix(f"entry {index}: "), index)
                entry = None
            if entry is not None and entry.prev_chain != running_chain:
                report.add("chain", "the entry names another previous chain hash than the log's", index)
            # When an entry's bytes were altered, resynchronise on the stored chain hash so the damage is
            # reported once, at that entry, and not again at every entry after it.
            altered = stored.chain_hash != computed_chain and stored.leaf_hash != leaf
            running_chain = ChainHash(stored.chain_hash) if altered else computed_chain
            applied = None
            body: TransactionBody | None = None
            if entry is None:
                state.skip(index)
            else:
                body, applied = _replay(entry, index, state, report, checker, verifier, records)
            if index_check is not None:
                index_check.expect(index, entry, body)  # (8) the columns stored beside the entry
            if moves is not None:
                # (8) the serials' histories, entry by entry, so memory stays flat whatever the log's length
                moves.expect(index, [] if applied is None else movements(index, *applied))
            if index == 0 and verifier is None and state.registry_vkey is not None:
                # No key given: the genesis entry's own key checks the checkpoints (self-consistency only),
                # from whatever source, not only from a database.
                verifier = _verifier(state.registry_vkey, report)
            while pending_cps and pending_cps[0].size == report.entries:
                _check_checkpoint(pending_cps.popleft(), frontier.root(), verifier, state, report)
            if report.entries % CHUNK == 0:
                heap.grew(CHUNK)
            if progress is not None and report.entries % CHUNK == 0:
                progress(report.entries)
        checker.finish()
    finally:
        if checker.pool is not None:
            checker.pool.shutdown(cancel_futures=True)
    if progress is not None:
        progress(report.entries)
    for cp in pending_cps:
        report.add(
            "checkpoints",
            f"checkpoint of size {cp.size} covers entries the log does not have (it holds {report.entries}): "
            "the log was truncated",
            report.entries,
        )
    report.root_hash = frontier.root()
    # (4) consistency between successive checkpoints, through the stored tree nodes
    _check_consistency(source.node_reader(), checkpoints, report)
    # (7) every invariant after replay
    for finding in check_all(state):
        report.add("invariants", finding.message, finding.index)
    # (8) projection tables equal the replay
    _check_projections(source, state, report)
    if moves is not None:
        moves.finish()
    if index_check is not None:
        index_check.finish()
    _check_registry_meta(source.registry_meta(), state, report)
    return report


_INDEX_COLUMNS = ("accepted_at", "actor", "nonce", "kind", "tx_hash")


class _EntryIndexCheck:
    """Step (8) for the columns stored beside each entry: a merge of the stored rows with the log, in order."""

    def __init__(self, rows: Iterator[dict[str, Any]], report: AuditReport) -> None:
        self.rows = rows
        self.report = report
        self.pending: dict[str, Any] | None = next(rows, None)

    def expect(self, index: int, entry: Entry | None, body: TransactionBody | None = None) -> None:
        """The stored row of entry `index` must hold the entry's own columns (`body`: its transaction, when
        the replay parsed it)."""
        while self.pending is not None and int(self.pending["idx"]) < index:
            self.pending = next(self.rows, None)  # a row for an entry the log does not have: reported there
        row = self.pending
        if row is None or int(row["idx"]) != index:
            self.report.add("index", "the log's index has no row for this entry", index)
            return
        self.pending = next(self.rows, None)
        if entry is None:
            return  # the entry itself is reported as undecodable
        derived = _index_columns(entry, body)
        if derived is None:
            return  # the transaction does not parse: reported by the replay
        if all(row[column] == derived[column] for column in _INDEX_COLUMNS):
            return
        for column in _INDEX_COLUMNS:
            stored = bytes(row[column]) if column == "tx_hash" else row[column]
            if stored != derived[column]:
                shown = stored.hex()[:12] + "…" if isinstance(stored, bytes) else repr(stored)
                wanted = derived[column].hex()[:12] + "…" if column == "tx_hash" else repr(derived[column])
                self.report.add("index", f"stored {column} {shown} differs from the entry's {wanted}", index)

    def finish(self) -> None:
        if self.pending is not None:
            self.report.add(
                "index", f"the log's index has a row for entry {self.pending['idx']}, which the log does not hold"
            )


def _index_columns(entry: Entry, body: TransactionBody | None = None) -> dict[str, Any] | None:
    """What the store must keep beside `entry`: its time, actor, nonce, kind and transaction hash."""
    if body is not None:
        actor, nonce, kind = body.actor, body.nonce, body.payload.kind
    else:
        try:
            parsed = json.loads(entry.body_bytes)
            actor, nonce, kind = parsed["actor"], parsed["nonce"], parsed["payload"]["kind"]
        except (ValueError, KeyError, TypeError):
            return None
    return {
        "accepted_at": format_utc(entry.accepted_at),
        "actor": actor,
        "nonce": nonce,
        "kind": kind,
        "tx_hash": hashlib.sha256(entry.body_bytes + b"\x00" + entry.signature).digest(),
    }


def _check_registry_meta(meta: Mapping[str, str] | None, state: State, report: AuditReport) -> None:
    """Step (8): the recorded origin and verifier key are those the genesis entry names."""
    if meta is None or state.registry_vkey is None or state.origin is None:
        return
    for name, expected in (("vkey", state.registry_vkey), ("origin", state.origin)):
        recorded = meta.get(name)
        if recorded != expected:
            report.add(
                "meta",
                f"the registry's recorded {name} is {recorded!r}, but its genesis entry names {expected!r}",
            )


def _verifier(vkey: str, report: AuditReport) -> NoteVerifier | None:
    try:
        return NoteVerifier.from_vkey(vkey)
    except NoteError as exc:
        report.add("checkpoints", f"registry verifier key is not usable: {exc}")
        return None


def _replay(
    entry: Any,
    index: int,
    state: State,
    report: AuditReport,
    checker: _SignatureChecker,
    verifier: NoteVerifier | None,
    records: Callable[[str, str], Sequence[PointRecord] | None] | None,
) -> tuple[TransactionBody | None, tuple[str, Outcome] | None]:
    """Steps (5) to (7) for one decoded entry: its transaction (None if it does not parse) and its actor and
    outcome (None when it could not be applied).

    Without `records` (a source that holds none), the entries that award, spend or expire points are checked
    up to their signature but not applied: their effect on the point balances depends on records the
    source does not have, and nothing else in the state depends on those balances."""
    try:
        body = TransactionBody.model_validate_json(entry.body_bytes)
    except ValidationError as exc:
        report.add("encoding", f"transaction does not parse: {exc.errors()[0]['msg']}", index)
        return None, None
    if index == 0 and isinstance(body.payload, RegistryGenesis) and verifier is not None:
        if body.payload.registry_vkey != verifier.verifier_key():
            report.add(
                "checkpoints",
                f"the genesis entry names registry key {body.payload.registry_vkey.split('+')[0]}+"
                f"{body.payload.registry_vkey.split('+')[1] if '+' in body.payload.registry_vkey else '?'}, "
                f"not the expected {verifier.verifier_key().split('+')[1]}",
                index,
            )
    # (5, 6) key validity and role at this entry
    try:
        key = state.authorise(body, index=index, accepted_at=entry.accepted_at)
    except RuleViolation as exc:
        report.add("roles" if exc.code in ("forbidden", "actor_suspended") else "keys", exc.message, index)
        state.skip(index)
        return body, None
    except LedgerError as exc:
        report.add("keys", str(exc), index)
        state.skip(index)
        return body, None
    if key.raw != entry.public_key:
        report.add("signatures", f"entry carries a public key other than the registered key {key.key_id}", index)
    checker.add(index, key.raw, signing_message(entry.body_bytes), entry.signature)
    # (7) the state machine
    outcome = None
    attachment = None
    if records is None and isinstance(body.payload, POINTS_BALANCE_KINDS):
        report.points_not_replayed += 1
        state.skip(index)
        state.dirty.clear()
        return body, None
    if records is not None and isinstance(body.payload, PointsAttest):
        attachment = records(body.payload.batch_id, body.actor)
        if attachment is None:
            report.add(
                "replay",
                f"the records of points batch {body.payload.batch_id} are not available to this audit; an "
                "auditor's or the authority's audit of the database or of a full export replays them",
                index,
            )
            state.skip(index)
            state.dirty.clear()
            return body, None
    try:
        outcome = state.apply(body, index=index, accepted_at=entry.accepted_at, attachment=attachment)
    except RuleViolation as exc:
        report.add("replay", f"{exc.code}: {exc.message}", index)
        state.skip(index)
    state.dirty.clear()
    return body, None if outcome is None else (body.actor, outcome)


def _check_checkpoint(
    cp: SourceCheckpoint, root: Hash, verifier: NoteVerifier | None, state: State, report: AuditReport
) -> None:
    where = cp.size - 1 if cp.size else None
    if cp.root_hash != root:
        report.add(
            "checkpoints",
            f"checkpoint of size {cp.size}: stored root {b64encode(cp.root_hash)} "
            f"but the entries give {b64encode(root)}",
            where,
        )
    if verifier is None:
        report.add("checkpoints", f"checkpoint of size {cp.size}: no registry key to verify it with", where)
        return
    try:
        signed = open_checkpoint(cp.note, verifier, origin=state.origin)
    except NoteError as exc:
        report.add("checkpoints", f"checkpoint of size {cp.size}: {exc}", where)
        return
    if signed.checkpoint.size != cp.size or signed.checkpoint.root_hash != root:
        report.add(
            "checkpoints",
            f"checkpoint of size {cp.size}: the signed note says size {signed.checkpoint.size}, root "
            f"{b64encode(signed.checkpoint.root_hash)}; the entries give {b64encode(root)}",
            where,
        )


def _check_consistency(reader: NodeReader | None, checkpoints: Sequence[SourceCheckpoint], report: AuditReport) -> None:
    if reader is None:
        return  # every root was recomputed from the entries themselves, which implies consistency
    usable = [cp for cp in checkpoints if 0 < cp.size <= report.entries]
    for old, new in zip(usable, usable[1:], strict=False):
        if old.size == new.size:
            continue
        try:
            proof = consistency_proof(reader, old.size, new.size)
            verify_consistency(
                old_size=old.size,
                new_size=new.size,
                old_root=old.root_hash,
                new_root=new.root_hash,
                proof=proof,
            )
        except ProofError as exc:
            report.add("consistency", f"checkpoints {old.size} -> {new.size}: {exc}", new.size - 1)


def _check_projections(source: AuditSource, state: State, report: AuditReport) -> None:
    for record_type in RECORD_TYPES:
        rows = source.projection_rows(record_type.TABLE)
        if rows is None:
            return
        report.projections_checked = True
        seen = 0
        for row in rows:
            seen += 1
            key = tuple(row[name] for name in record_type.KEY)
            record = state.lookup(record_type.TABLE, key)
            if record is None:
                report.add("projections", f"{record_type.TABLE} row {key} does not exist in the replayed state")
                continue
            expected = record_row(record)
            if _normalise(row) != _normalise(expected):
                differing = sorted(k for k in expected if _normalise_value(row.get(k)) != _normalise_value(expected[k]))
                # The table is what is wrong, not an entry: the finding names no entry index (so it never
                # masks the first bad entry of a damaged log); the message says which entry wrote the row.
                last = _record_entry(record)
                report.add(
                    "projections",
                    f"{record_type.TABLE} row {key} differs from the replayed state in {', '.join(differing)}"
                    + ("" if last is None else f" (the log last changed it at entry {last})"),
                )
        expected_count = sum(1 for _ in state.records(record_type.TABLE))
        if seen != expected_count:
            report.add("projections", f"{record_type.TABLE} has {seen} rows, the replayed state has {expected_count}")


class _MovementCheck:
    """Compares the stored unit movements with the replay's, streaming both in entry order.

    Like the projection findings, these name no entry index: the table is what is wrong, not the log.
    """

    def __init__(self, stored: Iterator[dict[str, Any]], report: AuditReport) -> None:
        self._stored = stored
        self._report = report
        self._next: dict[str, Any] | None = next(stored, None)
        report.projections_checked = True

    def expect(self, index: int, expected: list[Movement]) -> None:
        """The movements the replay derived for entry `index`: the stored ones must be the same."""
        stored: list[dict[str, Any]] = []
        while self._next is not None and self._next["entry"] <= index:
            if self._next["entry"] < index:
                self._orphan(self._next)
            else:
                stored.append(self._next)
            self._next = next(self._stored, None)
        wanted = [movement_row(m) for m in expected]
        if stored != wanted and [_normalise(r) for r in stored] != wanted:
            self._report.add(
                "projections",
                f"unit_movements of entry {index} differ from the log: stored {_describe(stored)}, "
                f"the entry gives {_describe(wanted)}",
            )

    def finish(self) -> None:
        """Rows left over name entries the log does not have."""
        while self._next is not None:
            self._orphan(self._next)
            self._next = next(self._stored, None)

    def _orphan(self, row: dict[str, Any]) -> None:
        self._report.add(
            "projections", f"unit_movements row {_describe([row])} names entry {row['entry']}, which moved nothing"
        )


def _describe(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "nothing"
    return "; ".join(
        f"{r['action']} {r['batch_id']} {r['first']}-{r['last']} {r['from_holder']}->{r['to_holder']}" for r in rows
    )


def _record_entry(record: Any) -> int | None:
    for name in ("updated_at", "entry", "issued_at", "registered_at", "published_at", "added_at"):
        value = getattr(record, name, None)
        if isinstance(value, int):
            return value
    return None


def _normalise(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _normalise_value(v) for k, v in row.items()}


def _normalise_value(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


# --- an extension of a log already verified --------------------------------------------------------------

EXTENSION_LIMITS = (
    "signatures were checked against the public key each new entry carries; that the key was registered "
    "to its actor and not revoked, the actor's role and every business rule need the state that only a "
    "replay from entry 0 builds (run the full audit for those)",
)


def audit_extension(
    *,
    old_size: int,
    old_root: bytes,
    last_old: StoredEntry | None,
    last_old_proof: Sequence[bytes],
    new_size: int,
    new_root: bytes,
    entries: Iterator[StoredEntry],
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Verify only the entries a log gained since a trusted checkpoint, with no earlier entry but the last.

    The caller has checked both checkpoints' signatures and the consistency proof between them. Here:
    (a) the old tree's frontier is rebuilt from its last entry and that entry's inclusion proof, so it is
    proven to be the old tree's; (1) each new entry decodes, says its index, and its leaf hash is its
    bytes'; (2) each names the chain hash its predecessor implies; (3) the new leaves extend the old
    tree to exactly the new root; (5) each is signed by the key it carries. What needs the replayed
    state (whose key that is, roles, rules) is not checked: `EXTENSION_LIMITS` says so in words.
    """
    report = AuditReport(checkpoints=2)
    if old_size == 0 or last_old is None:
        frontier, running_chain = Frontier.empty(), GENESIS_CHAIN
    else:
        try:
            frontier = frontier_from_last_leaf(
                leaf=last_old.leaf_hash, size=old_size, proof=last_old_proof, root=old_root
            )
            previous = decode_entry(last_old.data, index=old_size - 1)
        except (ProofError, EncodingError) as exc:
            report.add("checkpoints", f"the saved checkpoint's last entry does not check out: {exc}", old_size - 1)
            return report
        if leaf_hash(last_old.data) != last_old.leaf_hash:
            report.add("encoding", "stored leaf hash does not match the entry's bytes", old_size - 1)
            return report
        running_chain = chain_hash(previous.prev_chain, last_old.leaf_hash)
    expected = old_size
    for stored in entries:
        index = expected
        if stored.index != index:
            report.add("encoding", f"expected entry {index} next, found entry {stored.index}", index)
        expected += 1
        report.entries += 1
        leaf = leaf_hash(stored.data)  # (1)
        if stored.leaf_hash != leaf:
            report.add("encoding", "stored leaf hash does not match the entry's bytes", index)
        frontier.append(leaf)  # (3)
        try:
            entry = decode_entry(stored.data, index=index)
        except EncodingError as exc:
            report.add("encoding", str(exc).removeprefix(f"entry {index}: "), index)
            continue
        if entry.prev_chain != running_chain:  # (2)
            report.add("chain", "the entry names another previous chain hash than the log's", index)
        running_chain = chain_hash(running_chain, leaf)
        if stored.chain_hash != running_chain:
            report.add("chain", "stored chain hash does not follow from the previous entry", index)
        try:  # (5)
            nacl.signing.VerifyKey(entry.public_key).verify(signing_message(entry.body_bytes), entry.signature)
            report.signatures_checked += 1
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            report.add("signatures", "the entry's signature does not verify with the key it carries", index)
        if progress is not None and report.entries % CHUNK == 0:
            progress(report.entries)
    if expected != new_size:
        report.add("checkpoints", f"the new checkpoint covers {new_size} entries; {expected} were read", expected)
    elif frontier.root() != new_root:
        report.add(
            "checkpoints",
            f"the new entries do not extend the saved tree to the signed root {b64encode(new_root)} "
            f"(they give {b64encode(frontier.root())})",
            new_size - 1,
        )
    report.root_hash = frontier.root()
    return report
