"""Python instances made before the request that uses them, and dropped after it.

Instantiating the shared Python runtime (fourteen core modules linked together,
thousands of function-table entries filled) and tearing an instance down (unmapping
every page the call wrote) cost more than a small handler's whole run, and neither
depends on anything a request brings. So a background thread does both while no
Python invocation is running: it keeps a few never-used instances of the runtime
ready, and closes the stores of finished invocations after their response has gone.
An invocation takes a ready instance if there is one and instantiates inline
otherwise; either way each instance serves exactly one invocation and is then
destroyed, so nothing of one call reaches another.

The thread waits for idle moments because doing this work beside a running guest
costs that guest more than it saves: unmapping pages on one core interrupts the other
to flush its TLB, and the two contend for the process's memory map (measured: back to
back calls were ~10% slower with the work done concurrently, spaced calls ~30% faster
with it done in between).
"""

from __future__ import annotations

import logging
import threading
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


class ReadyInstances:
    """A few fresh instances made ahead by one background thread, which also closes
    used stores, both between invocations. ``make`` returns ``(store, handle
    export)`` of a new instance. Every ``take`` is paired with a ``release``."""

    def __init__(
        self,
        make: Callable[[], tuple[Any, Any]],
        depth: int = DEPTH,
        first: tuple[Any, Any] | None = None,
    ) -> None:
        """``first``: an instance made already (never used), handed out first."""
        self._make = make
        self._depth = depth
        self._ready: deque[tuple[Any, Any]] = deque([first] if first else [])
        self._used: deque[Any] = deque()
        self._running = 0  # invocations between take and release
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._started = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="nimbus-python-ready", daemon=True)
        self._thread.start()

    def take(self, eligible: bool = True) -> tuple[Any, Any] | None:
        """An invocation starts: a never-used ``(store, func)`` if ``eligible`` and
        one is ready, else None (the caller instantiates)."""
        with self._lock:
            self._running += 1
        self._started.set()
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
            idle = self._running == 0
            if store is not None and not self._stopped and len(self._used) < MAX_PENDING:
                self._used.append(store)
                store = None
        if idle:
            self._wake.set()
        return store

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5)
        for store in self._used:
            store.close()
        self._ready.clear()
        self._used.clear()

    def _idle(self) -> bool:
        with self._lock:
            return self._running == 0

    def _run(self) -> None:
        # at the default priority: it works only while no invocation runs, and a lower
        # one starved it on a loaded machine (nice 10 got ~3% of a core beside seven
        # busy processes, so calls found nothing ready)
        settled = False
        while True:
            self._wake.clear()
            if self._stopped:
                return
            if not self._idle():
                self._wake.wait()
                settled = False
                continue
            if not settled:
                self._started.clear()
                if self._started.wait(SETTLE_S):
                    continue  # another invocation came at once: not idle yet
                settled = True
                continue
            if self._used:
                self._used.popleft().close()
                continue
            if len(self._ready) < self._depth:
                try:
                    self._ready.append(self._make())
                except Exception as e:  # invocations instantiate inline, as without us
                    log.warning("Python instances cannot be made ahead: %s", e)
                    self._stopped = True
                    return
                continue
            self._wake.wait()
            settled = False
