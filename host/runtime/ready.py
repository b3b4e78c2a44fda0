"""Instances made before the request that uses them, and dropped after it.

A fresh instance of the shared Python runtime costs little to make but a lot to run
first: its call writes a few hundred pages of the interpreter's memory image, each a
copy-on-write fault, and tearing the instance down unmaps every one of them. Neither
depends on anything a request brings. So a background thread does both while no
invocation of that module is running: it keeps a few never-used instances ready
(each having run the runtime's warm-up, which writes most of those pages), and
closes the stores of finished invocations after their response has gone. An
invocation takes a ready instance if there is one and instantiates inline otherwise;
either way each instance serves exactly one invocation and is then destroyed, so
nothing of one call reaches another.

The thread waits for idle moments because doing this work beside a running guest
costs that guest more than it saves: unmapping pages on one core interrupts the other
to flush its TLB, and the two contend for the process's memory map (measured: back to
back calls were ~10% slower with the work done concurrently, spaced calls ~30% faster
with it done in between). The end of an invocation wakes it only when it has nothing
left to do (parked) or when invocations come spaced apart; while they come back to
back, it looks for a quiet moment on its own clock, backing off (each wake-up takes
the GIL from the calls: waking at every call cost calls back to back ~15%).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger("nimbus.runtime")

#: instances kept ready (each maps the runtime's memory image copy-on-write: a few
#: pages of RSS until it runs)
DEPTH = 2
#: used stores waiting to be closed (each holds the pages its call wrote); beyond this
#: the invoking thread closes its own
MAX_PENDING = 2
#: the thread starts working only once no invocation has started for this long:
#: calls back to back then never run beside it (each does its own work inline)
SETTLE_S = 0.001
#: while invocations keep running, the thread looks again after twice as long each
#: time, up to this: a few wake-ups a second, not one or two a call
MAX_SETTLE_S = 0.032
#: after an instance could not be made, the thread tries again this much later
RETRY_S = 1.0


class ReadyInstances:
    """A few fresh instances made ahead by one background thread, which also closes
    used stores, both between invocations. ``make`` returns ``(store, instance)``.
    Every ``take`` is paired with a ``release``."""

    def __init__(
        self,
        make: Callable[[], tuple[Any, Any]],
        depth: int = DEPTH,
        first: tuple[Any, Any] | None = None,
        memory_bytes: int = 0,
    ) -> None:
        """``first``: an instance made already (never used), handed out first;
        ``memory_bytes``: the memory cap instances are made under (an invocation
        under a smaller cap is not given one)."""
        self.memory_bytes = memory_bytes
        self._make = make
        self._depth = depth
        self._ready: deque[tuple[Any, Any]] = deque([first] if first else [])
        self._used: deque[Any] = deque()
        self._running = 0  # invocations between take and release
        self._takes = 0
        self._last_end = 0.0  # when the last invocation ended (monotonic)
        self._spaced = True  # the last invocation started SETTLE_S or more after one ended
        self._parked = False  # the thread waits for a release, having nothing to do
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="nimbus-python-ready", daemon=True)
        self._thread.start()

    def take(self, eligible: bool = True) -> tuple[Any, Any] | None:
        """An invocation starts: a never-used ``(store, instance)`` if ``eligible``
        and one is ready, else None (the caller instantiates)."""
        with self._lock:
            self._running += 1
            self._takes += 1
            self._spaced = time.monotonic() - self._last_end >= SETTLE_S
        if not eligible:
            return None
        try:
            return self._ready.popleft()
        except IndexError:
            return None

    def release(self, store: Any | None) -> Any | None:
        """The invocation is over: its store (if it got one) is closed in the
        background, instance and memory freed. Returns the store when the caller must
        close it (the thread is behind or stopped), else None."""
        with self._lock:
            self._running -= 1
            self._last_end = time.monotonic()
            if store is not None and not self._stopped and len(self._used) < MAX_PENDING:
                self._used.append(store)
                store = None
            wake = self._parked or (self._spaced and self._running == 0)
            self._parked = False
        if wake:
            self._wake.set()
        return store

    def close(self) -> None:
        with self._lock:
            self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5)
        with self._lock:
            left = [*self._used, *(store for store, _ in self._ready)]
            self._ready.clear()
            self._used.clear()
        for store in left:
            store.close()

    def _has_work(self) -> bool:
        return bool(self._used) or len(self._ready) < self._depth

    def _run(self) -> None:
        # at the default priority: it works only while no invocation runs, and a lower
        # one starved it on a loaded machine (nice 10 got ~3% of a core beside seven
        # busy processes, so calls found nothing ready)
        wait = SETTLE_S
        while not self._stopped:
            with self._lock:
                parked = self._parked = not self._has_work()
                self._wake.clear()
            if parked:  # until an invocation ends
                self._wake.wait()
                wait = SETTLE_S
                continue
            self._wake.wait(wait)
            with self._lock:
                running = self._running
                since_end = time.monotonic() - self._last_end
                takes = self._takes
            if running:  # back to back: look again later, not at every call
                wait = min(wait * 2, MAX_SETTLE_S)
                continue
            if since_end < SETTLE_S:  # just ended: another may come at once
                wait = SETTLE_S - since_end
                continue
            wait = SETTLE_S
            # quiet: work until an invocation starts or nothing is left
            while not self._stopped and self._takes == takes and self._has_work():
                if not self._step():  # invocations instantiate inline meanwhile
                    self._wake.wait(RETRY_S)
                    break

    def _step(self) -> bool:
        """One unit of work: close a used store, else make an instance; False when
        an instance could not be made (tried again after ``RETRY_S``)."""
        if self._used:
            self._used.popleft().close()
            return True
        try:
            self._ready.append(self._make())
        except Exception as e:  # e.g. every slot of the pooling allocator in use
            log.warning("an instance could not be made ahead (trying again): %s", e)
            return False
        return True
