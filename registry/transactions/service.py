"""The write path's rules at the HTTP edge: read a signed transaction, admit it, append it, report its fate.

A request is refused as early and as cheaply as possible, in this order, and only what passes every step
reaches the next:

1. the body's size (`read_body`: the declared length, then the bytes as they arrive);
2. its JSON: UTF-8, well-formed, no duplicate keys, nested at most `MAX_JSON_DEPTH` levels
   (`parse_signed_transaction`);
3. the wire form and the body's schema and types (`SignedTransaction.from_json`);
4. `Admission.check`, over one read of the database and nothing else: the nonce (a re-sent transaction
   passes on to its original receipt, a reused nonce is refused), the origin, the client's time, the
   actor, its key (known to be the actor's, not revoked) and its role, exactly as the ledger checks
   them; and only then the Ed25519 signature;
5. the sequencer, which appends under the log's write lock and checks everything again there, with the
   business rules; only the signature is not verified twice when the key the ledger authorises is the
   one step 4 verified it with (`Ledger.submit`'s ``verified_keys``).

So a flood of transactions with bad signatures costs a read and a signature check each and never takes
the write lock; a transaction that fails a cheap check costs no signature check at all. The admission's
counters (`cdcer_signature_verifications_total`) and the sequencer's (`cdcer_sequencer_transactions_total`,
``cdcer_sequencer_batches_total``) are served on ``/metrics`` by `WritePathCollector`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import queue
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from itertools import accumulate
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, Metric
from sqlalchemy import Connection, Engine, select
from starlette.requests import ClientDisconnect

from ledger.errors import EncodingError, IntegrityError, RuleViolation, SignatureError, StorageError
from ledger.keys import PublicKey
from ledger.ledger import Receipt, tx_hash
from ledger.state import Key, Participant, State
from ledger.storage import store
from ledger.storage.engine import read_transaction
from ledger.storage.tables import PROJECTIONS, log_entries
from ledger.transactions import SignedTransaction
from registry.errors import BadRequest, RegistryError, ServiceUnavailable
from registry.transactions.errors import TransactionRefused
from registry.transactions.sequencer import AppendOutcomeUnknown, Sequencer, SequencerClosed, batches

MAX_JSON_DEPTH = 32
"""Arrays and objects nested deeper than this are refused (a transaction needs 5 levels)."""


class ContentTooLarge(RegistryError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, "Content too large", f"the request body is over the limit of {limit} bytes", "content-too-large"
        )


class InvalidTransaction(RegistryError):
    def __init__(self, detail: str) -> None:
        super().__init__(422, "Invalid request", detail, "invalid-transaction")


async def read_body(chunks: AsyncIterator[bytes], *, declared_length: str | None, limit: int) -> bytes:
    """The request body, refusing (413) one over `limit` bytes without reading all of it."""
    if declared_length is not None and declared_length.isdigit() and int(declared_length) > limit:
        raise ContentTooLarge(limit)
    body = bytearray()
    try:
        async for chunk in chunks:
            body += chunk
            if len(body) > limit:
                raise ContentTooLarge(limit)
    except ClientDisconnect:
        # The client went away (or the server's request timeout closed the connection) mid-body.
        raise BadRequest("the connection closed before the whole request body arrived", "incomplete-body") from None
    return bytes(body)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"duplicate key {key!r}")
        found[key] = value
    return found


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*+"')
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_DEPTH_STEP = [0] * 256
for _opening in b"[{":
    _DEPTH_STEP[_opening] = 1
for _closing in b"]}":
    _DEPTH_STEP[_closing] = -1


def nested_deeper_than(document: bytes, limit: int) -> bool:
    """Whether arrays and objects nest more than `limit` levels deep in a well-formed JSON document.

    Linear, in steps that run in C: strings out, brackets kept, the running depth's maximum.
    """
    if document.count(b"[") + document.count(b"{") <= limit:
        return False  # too few to nest that deep (brackets inside strings only add to the count)
    brackets = _JSON_STRING.sub(b"", document).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0) > limit


def parse_signed_transaction(raw: bytes) -> SignedTransaction:
    """The signed transaction in a request body: malformed JSON is a 400, a malformed transaction a 422."""
    try:
        value = json.loads(raw.decode("utf-8"), object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except UnicodeDecodeError as exc:
        detail = f"the request body is not UTF-8 ({exc.reason} at byte {exc.start})"
        raise BadRequest(detail, "malformed-json") from None
    except RecursionError:
        raise BadRequest("the request body is JSON nested too deeply", "malformed-json") from None
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}", "malformed-json") from None
    # Well-formed, so its strings are terminated and the depth scan is linear.
    if nested_deeper_than(raw, MAX_JSON_DEPTH):
        detail = f"the request body is JSON nested too deeply (over {MAX_JSON_DEPTH} levels)"
        raise BadRequest(detail, "malformed-json")
    try:
        return SignedTransaction.from_json(value)
    except EncodingError as exc:
        raise InvalidTransaction(str(exc)) from None


_TAIL = select(log_entries.c.idx, log_entries.c.accepted_at).order_by(log_entries.c.idx.desc()).limit(1)
_PARTICIPANTS = PROJECTIONS[Participant.TABLE]
_KEYS = PROJECTIONS[Key.TABLE]


@dataclasses.dataclass(frozen=True, slots=True)
class _Read:
    """What authorising a batch of transactions reads, in four statements whatever the batch's size: the
    log's last entry (None before the genesis), the entries that used the batch's nonces, and its actors
    and keys."""

    last_index: int
    last_time: datetime
    used: dict[tuple[str, str], tuple[int, bytes]]
    participants: dict[str, Participant]
    keys: dict[str, Key]


def _read(conn: Connection, txs: Sequence[SignedTransaction]) -> _Read | None:
    tail = conn.execute(_TAIL).first()
    if tail is None:
        return None
    actors = sorted({tx.body.actor for tx in txs})
    key_ids = sorted({tx.body.key_id for tx in txs})
    participants = {}
    for row in conn.execute(select(_PARTICIPANTS).where(_PARTICIPANTS.c.id.in_(actors))).mappings():
        participants[row["id"]] = Participant(**{**row, "roles": tuple(json.loads(row["roles"]))})
    rows = conn.execute(select(_KEYS).where(_KEYS.c.key_id.in_(key_ids))).mappings()
    keys = {row["key_id"]: Key(**row) for row in rows}
    return _Read(
        last_index=int(tail.idx),
        last_time=datetime.fromisoformat(str(tail.accepted_at)[:-1]).replace(tzinfo=UTC),
        used=store.find_nonces(conn, ((tx.body.actor, tx.body.nonce) for tx in txs)),
        participants=participants,
        keys=keys,
    )


Verdict = RuleViolation | PublicKey | None
"""What the admission says of a transaction: the rule it breaks; else the key its signature verified with
(the ledger need not verify it again), or None (nothing checked here: the ledger alone decides)."""


class Admission:
    """The write path's gate before the sequencer: every cheap check, then the signature (thread-safe).

    It answers as the ledger would (same codes, same messages, same order) from one read of the
    database, so a transaction it refuses would have been refused under the write lock too; what it
    passes the ledger checks again there (the database may move in between).

    Requests hand their transaction to `submit` and wait on a future; one thread checks whatever is
    queued in one read transaction (`check_many`), so a busy registry neither opens a transaction per
    request nor keeps a pool of threads fighting over the interpreter.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 256) -> None:
        self.engine = engine
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._origin: str | None = None  # recorded once by the genesis, never changed
        self._queue: queue.SimpleQueue[tuple[SignedTransaction, Future[Verdict]] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.signature_checks = 0
        """Ed25519 verifications done here so far (for tests and metrics)."""

    def check(self, tx: SignedTransaction, *, now: datetime | None = None) -> Verdict:
        """The admission's verdict on one transaction (see `Verdict`)."""
        return self.check_many([tx], now=now)[0]

    def check_many(self, txs: Sequence[SignedTransaction], *, now: datetime | None = None) -> list[Verdict]:
        """The verdict on each transaction, read in one read transaction (each judged on its own)."""
        with read_transaction(self.engine) as conn:
            if self._origin is None:
                self._origin = store.get_meta(conn, "origin")
            read = _read(conn, txs) if txs else None
        when = now or datetime.now(UTC)
        found = [self._authorise(read, tx, when) for tx in txs]
        verdicts: list[Verdict] = []
        for tx, key in zip(txs, found, strict=True):
            if not isinstance(key, PublicKey):
                verdicts.append(key)
                continue
            with self._lock:
                self.signature_checks += 1
            try:
                tx.verify(key)
            except SignatureError as exc:
                verdicts.append(RuleViolation("bad_signature", str(exc)))
                continue
            verdicts.append(key)
        return verdicts

    def submit(self, tx: SignedTransaction) -> Future[Verdict]:
        """Queue `tx` for the admission's thread (started on first use); the future holds its verdict, or
        the `StorageError` of a failed read."""
        future: Future[Verdict] = Future()
        with self._lock:
            if self._closed:
                raise SequencerClosed("the registry is shutting down; send the transaction again later")
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="cdcer-admission", daemon=True)
                self._thread.start()
            self._queue.put((tx, future))
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Judge what is queued, then stop the thread (submissions meanwhile raise `SequencerClosed`).

        A later `submit` starts a new thread: an app's lifespan may run again (as in tests).
        """
        with self._lock:
            if self._closed or self._thread is None:
                return
            self._closed = True
            thread = self._thread
            self._queue.put(None)
        thread.join(timeout)
        with self._lock:
            if not thread.is_alive():  # else it still owns the queue: it stays the thread, closed
                self._thread = None
                self._closed = False

    def _run(self) -> None:
        for batch in batches(self._queue, max_batch=self.max_batch, max_wait=0.0):
            live = [(tx, future) for tx, future in batch if future.set_running_or_notify_cancel()]
            if not live:
                continue  # every client of the batch went away
            try:
                verdicts = self.check_many([tx for tx, _ in live])
            except Exception as exc:  # every request of the batch learns why it was not judged
                for _, future in live:
                    future.set_exception(exc)
                continue
            for (_, future), verdict in zip(live, verdicts, strict=True):
                future.set_result(verdict)

    def _authorise(self, read: _Read | None, tx: SignedTransaction, now: datetime) -> PublicKey | RuleViolation | None:
        """The key that must have signed `tx`, the rule it breaks, or None (nothing to check here)."""
        body = tx.body
        origin = self._origin
        if read is None or origin is None:
            return None  # no genesis yet: the ledger alone decides what entry 0 may be
        used = read.used.get((body.actor, body.nonce))
        if used is not None:
            if used[1] == tx_hash(tx):
                return None  # re-sent as it was appended: the ledger answers with the original receipt
            return RuleViolation(
                "nonce_reused",
                f"nonce {body.nonce} of {body.actor} was already used by entry {used[0]} for a different transaction",
            )
        if body.origin != origin:
            return RuleViolation("wrong_origin", f"transaction is for registry {body.origin!r}, this is {origin!r}")
        # The state as far as authorising this actor goes: the log's size and last time, the actor, the key.
        state = State()
        state.origin = origin
        state.size = read.last_index + 1
        state.last_time = read.last_time
        participant = read.participants.get(body.actor)
        if participant is not None:
            state.participants[body.actor] = participant
        key = read.keys.get(body.key_id)
        if key is not None:
            state.keys[body.key_id] = key
        try:
            return state.authorise(body, index=state.size, accepted_at=max(now, state.last_time))
        except RuleViolation as exc:
            return exc


async def admit(admission: Admission, tx: SignedTransaction) -> PublicKey | None:
    """Refuse `tx` before the sequencer if a cheap check or its signature fails (a problem), else return
    the key its signature verified with (None: not checked here)."""
    try:
        verdict = await asyncio.wrap_future(admission.submit(tx))
    except SequencerClosed as exc:
        raise ServiceUnavailable(str(exc), "shutting-down") from None
    except StorageError as exc:
        raise ServiceUnavailable(f"the transaction was not appended: {exc}", "storage-unavailable") from None
    if isinstance(verdict, RuleViolation):
        raise TransactionRefused(verdict)
    return verdict


async def append(sequencer: Sequencer, tx: SignedTransaction, *, verified_by: PublicKey | None = None) -> Receipt:
    """Append `tx` through the sequencer's next batch: its receipt, or the refusal as a problem.

    `verified_by`: the key `admit` verified the signature with, so the ledger need not verify it again.
    """
    verified_key = None if verified_by is None else verified_by.raw
    try:
        result = await asyncio.wrap_future(sequencer.submit(tx, verified_key=verified_key))
    except SequencerClosed as exc:
        raise ServiceUnavailable(str(exc), "shutting-down") from None
    except AppendOutcomeUnknown as exc:
        raise ServiceUnavailable(str(exc), "append-outcome-unknown") from None
    except StorageError as exc:
        raise ServiceUnavailable(f"the transaction was not appended: {exc}", "storage-unavailable") from None
    except IntegrityError as exc:
        raise ServiceUnavailable(f"the transaction was not appended: {exc}", "integrity-check-failed") from None
    if isinstance(result, RuleViolation):
        raise TransactionRefused(result)
    return result


class WritePathCollector:
    """Prometheus counters of the write path's cost: signature checks, and what reached the write lock."""

    def __init__(self, admission: Admission, sequencer: Callable[[], Sequencer | None]) -> None:
        self.admission = admission
        self.sequencer = sequencer

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        verifications, transactions, batches = self._families()
        sequencer = self.sequencer()
        verifications.add_metric([], self.admission.signature_checks)
        transactions.add_metric([], 0 if sequencer is None else sequencer.submitted)
        batches.add_metric([], 0 if sequencer is None else sequencer.batches)
        return [verifications, transactions, batches]

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "cdcer_signature_verifications",
                "Transaction signatures verified before the sequencer (only once every cheap check passed)",
            ),
            CounterMetricFamily(
                "cdcer_sequencer_transactions",
                "Transactions handed to the sequencer, which appends under the log's write lock (never one "
                "refused by a cheap check or its signature)",
            ),
            CounterMetricFamily(
                "cdcer_sequencer_batches",
                "Batches the sequencer submitted to the ledger, each one database transaction holding the write lock",
            ),
        )
