"""Instances made ahead: each serves one invocation, used stores are closed in the
background, and the background work waits while an invocation runs."""

from __future__ import annotations

import itertools
import time
from typing import Any

import wasmtime

from host.runtime.ready import ReadyInstances
from tests.conftest import eventually


def _closed(store: wasmtime.Store) -> bool:
    try:
        store.ptr()
    except ValueError:
        return True
    return False


class _Maker:
    """Real stores, numbered in the order they were made."""

    def __init__(self) -> None:
        self.engine = wasmtime.Engine()
        self.made: list[tuple[wasmtime.Store, int]] = []
        self._n = itertools.count()

    def __call__(self) -> tuple[Any, Any]:
        item = (wasmtime.Store(self.engine), next(self._n))
        self.made.append(item)
        return item


def test_each_instance_serves_one_invocation_and_is_closed_after() -> None:
    make = _Maker()
    ready = ReadyInstances(make, depth=2)
    try:
        assert eventually(lambda: len(make.made) == 2)
        served = []
        for _ in range(5):
            taken = ready.take()
            assert taken is not None
            store, n = taken
            served.append(n)
            assert not _closed(store)
            assert ready.release(store) is None  # the background closes it
            assert eventually(lambda s=store: _closed(s))
            want = len(served) + 2  # the slot refilled
            assert eventually(lambda w=want: len(make.made) >= w)
        assert len(set(served)) == len(served)  # never one instance twice
    finally:
        ready.close()


def test_no_background_work_while_an_invocation_runs() -> None:
    make = _Maker()
    ready = ReadyInstances(make, depth=2)
    try:
        assert eventually(lambda: len(make.made) == 2)
        taken = ready.take()
        assert taken is not None
        time.sleep(0.3)
        assert len(make.made) == 2  # one slot free, but an invocation is running
        assert ready.release(taken[0]) is None
        assert eventually(lambda: len(make.made) == 3 and _closed(taken[0]))
    finally:
        ready.close()


def test_an_ineligible_invocation_gets_nothing_but_still_counts() -> None:
    make = _Maker()
    ready = ReadyInstances(make, depth=1)
    try:
        assert eventually(lambda: len(make.made) == 1)
        assert ready.take(eligible=False) is None
        own = wasmtime.Store(make.engine)
        assert ready.release(own) is None
        assert eventually(lambda: _closed(own))
        assert ready.take() is not None  # the ready one is still there
    finally:
        ready.close()


def test_after_close_the_caller_closes_its_own_store() -> None:
    make = _Maker()
    ready = ReadyInstances(make, depth=1)
    assert eventually(lambda: len(make.made) == 1)
    ready.close()
    assert ready.take() is None
    own = wasmtime.Store(make.engine)
    assert ready.release(own) is own
