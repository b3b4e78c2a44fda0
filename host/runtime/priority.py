"""Keeping the host responsive while guests spin: long runs yield the CPU to short ones.

Guests run in parallel in OS threads without the GIL, so on a small machine a storm
of spinning guests competes for the cores with everything else: the event loop, the
epoch ticker that enforces their own deadlines, and fast functions. A watcher thread
lowers the OS priority (nice) of every thread whose guest has run longer than
``DEMOTE_AFTER_S``; the thread gets its priority back shortly before its deadline
(so that it reaches the epoch check and stops on time instead of waiting for a core)
and when the invocation ends. So a spinning guest still gets all idle CPU, but a
short request, the ticker and the event loop go first. The epoch ticker asks for a
higher priority than the default (it sleeps nearly all the time; when it wakes,
deadlines depend on it).

Only time spent in guest code counts: ``enter`` and ``leave`` surround the call into
the guest, never the host's own Python around it, and a demoted thread that calls a
host import is restored first (``wake``): a thread holding the GIL at a low priority
would stall every other thread waiting for it.

Linux applies nice per thread (``setpriority`` on a thread id); where the process may
not change priorities the watcher does nothing and says so once in the log.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("nimbus.runtime")

#: a guest running longer than this is demoted
DEMOTE_AFTER_S = 0.05
#: how often the watcher looks
WATCH_INTERVAL_S = 0.01
#: the nice value of a demoted thread (0 is the default, 19 the lowest priority)
DEMOTED_NICE = 19
#: a demoted thread is restored this long before its deadline
RESTORE_BEFORE_S = 0.03
#: the nice value the epoch ticker asks for (needs privileges; else it stays at 0)
TICKER_NICE = -10


def set_nice(tid: int, nice: int) -> bool:
    """Set thread ``tid``'s nice value; False where the OS does not allow it."""
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except (OSError, AttributeError):
        return False
    return True


class Demoter:
    """Tracks the threads running guests and demotes the long-running ones."""

    def __init__(
        self, after_s: float = DEMOTE_AFTER_S, interval_s: float = WATCH_INTERVAL_S
    ) -> None:
        self._after_s = after_s
        self._interval_s = interval_s
        #: thread id -> (when its guest started, its deadline), monotonic seconds
        self._running: dict[int, tuple[float, float]] = {}
        self._demoted: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        #: set when a tracked run starts: the watcher sleeps on it while none runs
        self._work = threading.Event()
        self._enabled = True
        self._thread = threading.Thread(target=self._watch, name="nimbus-demote", daemon=True)
        self._thread.start()

    def enter(self, timeout_s: float) -> int:
        """A guest of at most ``timeout_s`` starts in the current thread; the token
        to give ``leave`` (plain calls, not a context manager: this is the hot path).
        A run too short ever to be demoted (it would be restored before it is demoted:
        an inline run, for one) is not tracked, and costs no system call."""
        if timeout_s <= self._after_s + RESTORE_BEFORE_S:
            return 0
        tid = threading.get_native_id()
        if tid in self._running:  # nested: already tracked by the outer run
            return 0
        now = time.monotonic()
        self._running[tid] = (now, now + timeout_s)
        if not self._work.is_set():
            self._work.set()
        return tid

    def wake(self) -> None:
        """The current thread enters the host (a host import, under the GIL): a demoted
        thread gets its priority back at once, so it never holds the GIL at a low
        priority while others wait for it (the watcher demotes it again later)."""
        if self._demoted:
            tid = threading.get_native_id()
            if tid in self._demoted:
                with self._lock:
                    if tid in self._demoted:
                        self._demoted.discard(tid)
                        set_nice(tid, 0)

    def leave(self, token: int) -> None:
        """The run that ``enter`` returned ``token`` for has ended."""
        if not token:
            return
        with self._lock:
            del self._running[token]
            if token in self._demoted:
                self._demoted.discard(token)
                set_nice(token, 0)

    def _next_look(self) -> float:
        """When the watcher next has something to do: every ``interval_s`` while a
        thread is demoted (its restore is due before its deadline), else when the
        oldest running guest passes ``after_s`` (a guest that starts later is looked
        at within ``after_s`` of its start, so it is never late by more than
        ``interval_s``)."""
        if self._demoted:
            return self._interval_s
        now = time.monotonic()
        oldest = min((started for started, _ in list(self._running.values())), default=now)
        return min(max(oldest + self._after_s - now, self._interval_s), self._after_s)

    def _watch(self) -> None:
        while not self._stop.is_set():
            if not self._running and not self._demoted:
                # nothing to look at: sleep until a tracked run starts, not every
                # ``after_s`` (each wake-up takes the GIL from the threads serving)
                self._work.wait()
                self._work.clear()
                continue
            if self._stop.wait(self._next_look()):
                break
            if not self._enabled:
                continue
            now = time.monotonic()
            with self._lock:
                for tid, (started, deadline) in list(self._running.items()):
                    near_end = now >= deadline - RESTORE_BEFORE_S
                    if tid in self._demoted:
                        if near_end:
                            self._demoted.discard(tid)
                            set_nice(tid, 0)
                    elif not near_end and now - started > self._after_s:
                        if not set_nice(tid, DEMOTED_NICE):
                            log.warning("thread priorities cannot be changed here: not demoting")
                            self._enabled = False
                            break
                        self._demoted.add(tid)

    def stop(self) -> None:
        self._stop.set()
        self._work.set()
        self._thread.join(timeout=1)
