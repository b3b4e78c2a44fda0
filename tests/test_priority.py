"""The demoter (host/runtime/priority.py) with real OS thread priorities: a run past
``after_s`` is demoted, gets its priority back before its deadline and when it ends;
a short run is never touched."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import pytest

from host.runtime.priority import DEMOTED_NICE, Demoter, set_nice


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


def eventually(check: Callable[[], bool], within_s: float = 3.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.005)
    return False


def run_guest(demoter: Demoter, timeout_s: float, seen: dict[str, object]) -> threading.Thread:
    """A thread that runs a 'guest' with a deadline ``timeout_s`` away, between
    ``enter`` and ``leave``, until ``seen["go_on"]`` is set."""
    go_on = threading.Event()
    seen["go_on"] = go_on

    def run() -> None:
        tid = threading.get_native_id()
        seen["tid"] = tid
        token = demoter.enter(timeout_s)
        go_on.wait(10)
        demoter.leave(token)
        seen["after"] = nice_of(tid)

    t = threading.Thread(target=run)
    t.start()
    assert eventually(lambda: "tid" in seen)
    return t


def test_a_long_run_is_demoted_then_restored_when_it_ends() -> None:
    demoter = Demoter(after_s=0.05, interval_s=0.01)
    try:
        seen: dict[str, object] = {}
        t = run_guest(demoter, 10.0, seen)
        tid = seen["tid"]
        assert isinstance(tid, int)
        assert eventually(lambda: nice_of(tid) == DEMOTED_NICE)
        go_on = seen["go_on"]
        assert isinstance(go_on, threading.Event)
        go_on.set()
        t.join()
        assert seen["after"] == 0
    finally:
        demoter.stop()


def test_a_demoted_run_gets_its_priority_back_before_its_deadline() -> None:
    demoter = Demoter(after_s=0.05, interval_s=0.01)
    try:
        seen: dict[str, object] = {}
        t = run_guest(demoter, 0.3, seen)
        tid = seen["tid"]
        assert isinstance(tid, int)
        assert eventually(lambda: nice_of(tid) == DEMOTED_NICE)
        # restored while the guest still runs: near its deadline, so it reaches the
        # epoch check on time instead of waiting for a core
        assert eventually(lambda: nice_of(tid) == 0)
        assert "after" not in seen
        go_on = seen["go_on"]
        assert isinstance(go_on, threading.Event)
        go_on.set()
        t.join()
        assert seen["after"] == 0
    finally:
        demoter.stop()


def test_a_short_run_is_never_demoted() -> None:
    demoter = Demoter(after_s=0.2, interval_s=0.01)
    try:
        for _ in range(5):
            seen: dict[str, object] = {}
            t = run_guest(demoter, 10.0, seen)
            tid = seen["tid"]
            assert isinstance(tid, int)
            time.sleep(0.02)
            assert nice_of(tid) == 0
            go_on = seen["go_on"]
            assert isinstance(go_on, threading.Event)
            go_on.set()
            t.join()
    finally:
        demoter.stop()
