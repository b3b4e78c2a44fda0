"""The demoter (host/runtime/priority.py) with real OS thread priorities: a run past
``after_s`` is demoted, gets its priority back before its deadline and when it ends;
a short run is never touched."""

from __future__ import annotations

import os
import threading
import time

import pytest

from host.runtime.priority import DEMOTED_NICE, Demoter, set_nice
from tests.conftest import eventually


def nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def can_restore() -> bool:
    """Raising a thread's priority back needs CAP_SYS_NICE (or RLIMIT_NICE)."""
    probe: list[bool] = []

    def run() -> None:
        tid = threading.get_native_id()
        probe.append(set_nice(tid, 5) and set_nice(tid, 0))

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return probe[0]


pytestmark = pytest.mark.skipif(not can_restore(), reason="thread priorities cannot be raised")


class Guest:
    """A thread that runs a 'guest' between ``enter`` and ``leave`` with a deadline
    ``timeout_s`` away, until ``finish()``."""

    def __init__(self, demoter: Demoter, timeout_s: float) -> None:
        self._go_on = threading.Event()
        self.after: int | None = None  # the thread's nice value once it left
        self.tid = 0
        self._thread = threading.Thread(target=self._run, args=(demoter, timeout_s))
        self._thread.start()
        assert eventually(lambda: self.tid != 0, 3.0, 0.005)

    def _run(self, demoter: Demoter, timeout_s: float) -> None:
        self.tid = threading.get_native_id()
        token = demoter.enter(timeout_s)
        self._go_on.wait(10)
        demoter.leave(token)
        self.after = nice_of(self.tid)

    def nice(self) -> int:
        return nice_of(self.tid)

    def finish(self) -> int | None:
        """End the run; the thread's nice value after ``leave``."""
        self._go_on.set()
        self._thread.join()
        return self.after


def test_a_long_run_is_demoted_then_restored_when_it_ends() -> None:
    demoter = Demoter(after_s=0.05, interval_s=0.01)
    try:
        guest = Guest(demoter, 10.0)
        assert eventually(lambda: guest.nice() == DEMOTED_NICE, 3.0, 0.005)
        assert guest.finish() == 0
    finally:
        demoter.stop()


def test_a_demoted_run_gets_its_priority_back_before_its_deadline() -> None:
    demoter = Demoter(after_s=0.05, interval_s=0.01)
    try:
        guest = Guest(demoter, 1.0)  # demoted from 50 ms, restored from 970 ms
        assert eventually(lambda: guest.nice() == DEMOTED_NICE, 3.0, 0.005)
        # restored while the guest still runs: near its deadline, so it reaches the
        # epoch check on time instead of waiting for a core
        assert eventually(lambda: guest.nice() == 0, 3.0, 0.005)
        assert guest.after is None
        assert guest.finish() == 0
    finally:
        demoter.stop()


def test_a_short_run_is_never_demoted() -> None:
    demoter = Demoter(after_s=2.0, interval_s=0.01)  # far above the 20 ms each run takes
    try:
        for _ in range(5):
            guest = Guest(demoter, 10.0)
            time.sleep(0.02)
            assert guest.nice() == 0
            assert guest.finish() == 0
    finally:
        demoter.stop()


def test_a_run_too_short_to_be_demoted_is_not_tracked() -> None:
    """An inline run (a 3 ms budget) would be restored before it could be demoted:
    ``enter`` leaves it alone (no thread id read, nothing for the watcher)."""
    demoter = Demoter(after_s=0.05, interval_s=0.01)
    try:
        assert demoter.enter(0.003) == 0
        assert demoter.enter(0.08) == 0  # demoted past 50 ms, restored 30 ms before 80
        token = demoter.enter(0.081)
        assert token == threading.get_native_id()
        demoter.leave(token)
    finally:
        demoter.stop()
