"""A bounded cache of built certificates (and of what was made of them), one per app instance.

A certificate rests on the log up to the latest signed checkpoint and on that checkpoint's cosignatures,
all of which are only ever appended to: built twice from the same checkpoint and the same cosignatures, it
comes out the same. So it is kept under a key that names them, and a new checkpoint or a new cosignature
is a new key (the old one ages out). Building one reads its entries, their inclusion proofs and the key
provenance back to entry 0; with the cache a certificate costs that once per checkpoint, however often it
is downloaded or its page opened.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

MAX_ITEMS = 256
"""Certificates (and verdicts) kept per app instance; the least recently used is dropped first."""


@dataclass(frozen=True, slots=True)
class CacheInfo:
    hits: int
    misses: int
    size: int
    maxsize: int


class LruCache(Generic[K, V]):
    """At most `maxsize` values, the least recently used dropped first; safe to share between threads."""

    def __init__(self, maxsize: int = MAX_ITEMS) -> None:
        if maxsize < 1:
            raise ValueError(f"a cache holds at least one value, not {maxsize}")
        self.maxsize = maxsize
        self._values: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0

    def get_or_build(self, key: K, build: Callable[[], V | None]) -> V | None:
        """The value kept under `key`, else `build()`'s, kept unless it is None (which is not cached)."""
        with self._lock:
            if key in self._values:
                self._hits += 1
                self._values.move_to_end(key)
                return self._values[key]
            self._misses += 1
        # Built outside the lock, so one slow build does not hold up the others. Two requests may build the
        # same key at once; both values are equal, and the later replaces the earlier.
        value = build()
        if value is not None:
            with self._lock:
                self._values[key] = value
                self._values.move_to_end(key)
                while len(self._values) > self.maxsize:
                    self._values.popitem(last=False)
        return value

    def info(self) -> CacheInfo:
        """Hits, misses and size so far (like `functools.lru_cache`'s ``cache_info``)."""
        with self._lock:
            return CacheInfo(self._hits, self._misses, len(self._values), self.maxsize)
