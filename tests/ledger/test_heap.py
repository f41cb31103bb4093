"""The heap settler freezes long-lived objects once enough entries have accumulated."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from ledger.heap import HeapSettler


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_settles_only_when_enough_entries_accumulate() -> None:
    keep = [[i] for i in range(1000)]  # long-lived objects the collector tracks
    settler = HeapSettler(every=100)
    settler.grew(99)
    assert gc.get_freeze_count() == 0
    settler.grew(1)
    frozen = gc.get_freeze_count()
    assert frozen >= len(keep)
    settler.grew(50)
    assert gc.get_freeze_count() == frozen  # the count starts again after settling
