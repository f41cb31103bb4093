"""Group commit: one thread appends the transactions of concurrent requests in batches.

Requests hand their signed transaction to the `Sequencer` and wait on a future. Its thread takes
what is queued, waits a few milliseconds for more (or until `max_batch` are pending), submits the
batch to the ledger in one database transaction under one signed checkpoint, and resolves every
request's future with its receipt or rule violation. If the append fails (the database is down,
another process signed first, an integrity check refused), every request of that batch fails with
that exception and nothing of the batch is in the log.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, TypeVar

from ledger import heap
from ledger.errors import ConflictError, IntegrityError, LedgerError, RuleViolation, StorageError
from ledger.ledger import Ledger, Receipt
from ledger.storage.engine import make_engine
from ledger.transactions import SignedTransaction, decode_body
from registry.settings import Settings, ledger_from_settings

Result = Receipt | RuleViolation


class SequencerClosed(RuntimeError):
    """The sequencer stopped before appending the transaction (the service is shutting down)."""


T = TypeVar("T")


def batches(source: queue.SimpleQueue[T | None], *, max_batch: int, max_wait: float) -> Iterator[list[T]]:
    """The items of `source` in batches, until its stop mark (None), for a thread that serves them.

    Each batch waits for its first item, then takes more for up to `max_wait` seconds (0: only what is
    queued already) or until it holds `max_batch`. Everything queued before the stop mark is still served.
    """
    stopping = False
    while not stopping:
        first = source.get()
        if first is None:
            return
        batch = [first]
        deadline = time.monotonic() + max_wait
        while len(batch) < max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = source.get(timeout=remaining) if remaining > 0 else source.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stopping = True
                break
            batch.append(item)
        yield batch


@dataclass(frozen=True, slots=True)
class _Pending:
    tx: SignedTransaction
    verified_key: bytes | None
    future: Future[Result]


class Sequencer:
    """The one writer of an app's ledger: batches submissions from any thread."""

    def __init__(self, ledger: Ledger | None, *, max_batch: int = 500, max_wait: float = 0.002) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.ledger = ledger
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait)
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cdcer-sequencer", daemon=True)
        self.batches = 0
        """Batches submitted to the ledger so far (for tests and metrics)."""
        self.submitted = 0
        """Transactions handed to `submit` so far (for tests and metrics)."""

    def start(self) -> None:
        self._thread.start()

    def submit(self, tx: SignedTransaction, *, verified_key: bytes | None = None) -> Future[Result]:
        """Queue `tx`; the future resolves to its receipt or violation, or fails with the batch's exception.

        `verified_key`: the raw public key `tx`'s signature was already verified with (see `Ledger.submit`).
        """
        future: Future[Result] = Future()
        with self._lock:
            if self._closed:
                raise SequencerClosed("the registry is shutting down; send the transaction again later")
            self._queue.put(_Pending(tx, verified_key, future))
            self.submitted += 1
        return future

    def close(self, timeout: float | None = 30.0) -> None:
        """Append what is queued, then stop the thread; later submissions raise `SequencerClosed`."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(None)  # the stop mark
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Sequencer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the thread ------------------------------------------------------------------------------------

    def _run(self) -> None:
        for batch in batches(self._queue, max_batch=self.max_batch, max_wait=self.max_wait):
            self._commit(batch)

    def _commit(self, batch: list[_Pending]) -> None:
        # A request whose client went away (its future cancelled) is not appended.
        live = [p for p in batch if p.future.set_running_or_notify_cancel()]
        if not live:
            return
        self.batches += 1
        try:
            results = self._append(live)
        except Exception as exc:  # every request of the batch learns why nothing was appended
            for pending in live:
                pending.future.set_exception(exc)
            return
        for pending, result in zip(live, results, strict=True):
            pending.future.set_result(result)

    def _append(self, live: list[_Pending]) -> list[Result]:
        assert self.ledger is not None
        return self.ledger.submit([p.tx for p in live], verified_keys=[p.verified_key for p in live])


class ProcessSequencer(Sequencer):
    """A `Sequencer` whose appends run in a child process of their own, on another core.

    The batching stays here; each batch crosses a pipe as the transactions' bytes (and the keys their
    signatures were verified with), and the results come back in order. Up to `IN_FLIGHT` batches are on
    their way at once, so the child starts the next batch while this process answers the last one. The
    child builds its ledger from the same settings (database, key file, origin), holds the log's write
    lock like any other appender, and leaves when the pipe closes: when this sequencer closes, or when this
    process dies. If the child dies, the batches it was given fail with a `StorageError` (each one's
    database transaction was rolled back, or committed: a re-sent transaction then gets its original
    receipt) and the next batch starts a new child.
    """

    IN_FLIGHT = 2

    def __init__(self, settings: Settings, *, max_batch: int = 500, max_wait: float = 0.002) -> None:
        super().__init__(None, max_batch=max_batch, max_wait=max_wait)
        self.settings = settings
        self._child: BaseProcess | None = None
        self._pipe: Connection | None = None
        self._broken = False
        self._slots = threading.Semaphore(self.IN_FLIGHT)

    def start(self) -> None:
        self._spawn()
        super().start()

    def close(self, timeout: float | None = 30.0) -> None:
        super().close(timeout)
        self._stop_child(timeout)

    def _run(self) -> None:
        sent: queue.SimpleQueue[tuple[Connection, list[_Pending]] | None] = queue.SimpleQueue()
        receiver = threading.Thread(target=self._receive, args=(sent,), name="cdcer-appender-replies", daemon=True)
        receiver.start()
        try:
            for batch in batches(self._queue, max_batch=self.max_batch, max_wait=self.max_wait):
                live = [p for p in batch if p.future.set_running_or_notify_cancel()]
                if not live:
                    continue
                self._slots.acquire()
                self.batches += 1
                try:
                    pipe = self._working_pipe()
                    pipe.send([(p.tx.body_bytes, p.tx.signature, p.verified_key) for p in live])
                except LedgerError as exc:  # no child could be started: the batch learns why
                    self._slots.release()
                    _fail(live, exc)
                    continue
                except (OSError, ValueError) as exc:  # the child is gone: the batch never reached it
                    self._broken = True
                    self._slots.release()
                    _fail(live, StorageError(f"the append process has stopped ({exc.__class__.__name__})"))
                    continue
                sent.put((pipe, live))
        finally:
            sent.put(None)
            receiver.join()

    def _receive(self, sent: queue.SimpleQueue[tuple[Connection, list[_Pending]] | None]) -> None:
        """The replies, in the order the batches were sent."""
        while (item := sent.get()) is not None:
            pipe, live = item
            try:
                reply = pipe.recv()
            except (EOFError, OSError) as exc:
                self._broken = True
                _fail(live, _stopped(exc))
                continue
            finally:
                self._slots.release()
            if reply[0] == "error":
                _fail(live, _ERRORS.get(reply[1], StorageError)(reply[2]))
                continue
            for pending, result in zip(live, reply[1], strict=True):
                pending.future.set_result(result if isinstance(result, Receipt) else RuleViolation(*result))

    def _working_pipe(self) -> Connection:
        """The pipe to a live child: after one died, wait until its batches are answered, then start another."""
        if self._pipe is None or self._broken:
            others = self.IN_FLIGHT - 1  # this batch holds one slot already
            for _ in range(others):
                self._slots.acquire()
            try:
                self._stop_child(timeout=5.0)
                self._broken = False
                self._spawn()
            finally:
                for _ in range(others):
                    self._slots.release()
        assert self._pipe is not None
        return self._pipe

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        child = context.Process(target=_append_loop, args=(theirs, self.settings), name="cdcer-appender", daemon=True)
        child.start()
        theirs.close()
        try:
            ready = ours.poll(_CHILD_START_TIMEOUT) and ours.recv()
        except (EOFError, OSError):
            ready = None
        if ready != ("ready",):
            child.kill()
            child.join()
            ours.close()
            reason = ready[2] if isinstance(ready, tuple) and ready[0] == "error" else "it did not start"
            raise StorageError(f"the append process could not open the ledger: {reason}")
        self._child, self._pipe = child, ours

    def _stop_child(self, timeout: float | None) -> None:
        pipe, child = self._pipe, self._child
        self._pipe = self._child = None
        if pipe is not None:
            pipe.close()  # the child's next read ends: it leaves after the batch in hand
        if child is not None:
            child.join(timeout)
            if child.is_alive():
                child.kill()
                child.join()


def _fail(live: list[_Pending], exc: BaseException) -> None:
    for pending in live:
        pending.future.set_exception(exc)


class AppendOutcomeUnknown(StorageError):
    """The append process stopped during a batch: its transactions may or may not be in the log."""


def _stopped(exc: BaseException) -> AppendOutcomeUnknown:
    return AppendOutcomeUnknown(
        f"the append process stopped during the batch ({exc.__class__.__name__}): the transaction may or may not "
        "be in the log; send it again (one already appended gets its original receipt)"
    )


_CHILD_START_TIMEOUT = 60.0
_ERRORS: dict[str, type[LedgerError]] = {
    cls.__name__: cls for cls in (StorageError, ConflictError, IntegrityError, LedgerError)
}


def _append_loop(pipe: Connection, settings: Settings) -> None:
    """The child: open the ledger, then append each batch the pipe brings until it closes."""
    # Signals are the parent's business: the child leaves when its pipe closes, after the batch in hand.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    engine = make_engine(settings.database_url)
    try:
        ledger = ledger_from_settings(settings, engine)
        if ledger is None:
            raise StorageError("the settings name no log key file")
    except Exception as exc:
        pipe.send(("error", type(exc).__name__, str(exc)))
        engine.dispose()
        return
    pipe.send(("ready",))
    heap.settle()
    while True:
        try:
            batch = pipe.recv()
        except (EOFError, OSError):
            break
        try:
            txs = [SignedTransaction(body_bytes=b, signature=s, body=decode_body(b)) for b, s, _ in batch]
            results = ledger.submit(txs, verified_keys=[key for _, _, key in batch])
            reply: tuple[Any, ...] = (
                "results",
                [r if isinstance(r, Receipt) else (r.code, r.message) for r in results],
            )
        except Exception as exc:  # the batch is not in the log; the parent's requests learn why
            reply = ("error", type(exc).__name__, str(exc))
        try:
            pipe.send(reply)
        except (EOFError, OSError):
            break
    engine.dispose()
