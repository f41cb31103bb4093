"""Group commit: one thread appends the transactions of concurrent requests in batches.

Requests hand their signed transaction to the `Sequencer` and wait on a future. Its thread takes
what is queued, waits a few milliseconds for more (or until `max_batch` are pending), submits the
batch to the ledger in one database transaction under one signed checkpoint, and resolves every
request's future with its receipt or rule violation. If the append fails (the database is down,
another process signed first, an integrity check refused), every request of that batch fails with
that exception and nothing of the batch is in the log.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

from ledger.errors import RuleViolation
from ledger.ledger import Ledger, Receipt
from ledger.transactions import SignedTransaction

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

    def __init__(self, ledger: Ledger, *, max_batch: int = 500, max_wait: float = 0.002) -> None:
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
            results = self.ledger.submit([p.tx for p in live], verified_keys=[p.verified_key for p in live])
        except Exception as exc:  # every request of the batch learns why nothing was appended
            for pending in live:
                pending.future.set_exception(exc)
            return
        for pending, result in zip(live, results, strict=True):
            pending.future.set_result(result)
