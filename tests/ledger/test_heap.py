"""The heap settler freezes long-lived objects once enough entries have accumulated.

The tests observe the settler's decisions (each call of `settle`) and the fate of objects they hold,
never `gc.get_freeze_count()`: that counts every frozen object of the process, and it drops whenever
any thread frees one, so a test reading it flakes under load.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ledger import heap
from ledger.heap import HeapSettler


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


@pytest.fixture
def settlements(monkeypatch: pytest.MonkeyPatch) -> list[None]:
    """One item per time the settler settles (the heap itself is left alone)."""
    calls: list[None] = []
    monkeypatch.setattr(heap, "settle", lambda: calls.append(None))
    return calls


def test_settles_only_when_enough_entries_accumulate(settlements: list[None]) -> None:
    settler = HeapSettler(every=100)
    settler.grew(99)
    assert len(settlements) == 0
    settler.grew(1)
    assert len(settlements) == 1
    settler.grew(50)
    settler.grew(49)
    assert len(settlements) == 1  # the count starts again after settling
    settler.grew(1)
    assert len(settlements) == 2


def test_a_big_catch_up_settles_once_and_starts_the_count_again(settlements: list[None]) -> None:
    settler = HeapSettler(every=100)
    settler.grew(0)
    assert len(settlements) == 0
    settler.grew(250)
    assert len(settlements) == 1
    settler.grew(99)  # not 250 - 100 = 150 carried over: the heap was settled after all 250
    assert len(settlements) == 1
    settler.grew(1)
    assert len(settlements) == 2


def is_frozen(obj: object) -> bool:
    """Whether the collector has let go of `obj` (`gc.get_objects` lists every tracked, unfrozen object)."""
    assert gc.is_tracked(obj)
    return all(tracked is not obj for tracked in gc.get_objects())


def test_settling_freezes_what_is_alive_and_not_what_comes_after() -> None:
    before = [[i] for i in range(3)]  # long-lived objects the collector tracks
    assert not any(is_frozen(item) for item in before)
    heap.settle()
    assert all(is_frozen(item) for item in before)
    after = [0]
    assert not is_frozen(after)
    gc.unfreeze()
    assert not any(is_frozen(item) for item in before)


class Node:
    """A container that can be in a reference cycle and be weakly referenced."""

    def __init__(self) -> None:
        self.other: Node | None = None


def test_settling_collects_garbage_before_freezing() -> None:
    """A cycle already unreachable is freed, not frozen for good."""
    first, second = Node(), Node()
    first.other, second.other = second, first
    gone = weakref.ref(first)
    enabled = gc.isenabled()
    gc.disable()  # no automatic collection (in any thread) frees the cycle before `settle` does
    try:
        del first, second
        assert gone() is not None
        heap.settle()
        assert gone() is None
    finally:
        if enabled:
            gc.enable()
