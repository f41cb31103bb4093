"""Keep Python's cyclic garbage collector off the registry state.

The replayed state holds millions of long-lived objects that never form cycles. Left in the
collector's generations, every full collection walks all of them, so the cost of an append or an
audited entry grows with the log. `settle` collects once, then freezes everything alive so later
collections only look at new objects. Objects freed by reference counting are still freed.
"""

from __future__ import annotations

import gc


class HeapSettler:
    """Settles the heap every ``every`` new entries (and at the first call after a big catch-up)."""

    def __init__(self, every: int = 50_000) -> None:
        self.every = every
        self._since = 0

    def grew(self, entries: int) -> None:
        """Count ``entries`` more entries in memory; settle when enough have accumulated."""
        self._since += entries
        if self._since >= self.every:
            settle()
            self._since = 0


def settle() -> None:
    """Collect garbage once, then move every surviving object out of the collector's reach."""
    gc.collect()
    gc.freeze()
