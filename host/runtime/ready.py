"""Python instances made before the request that uses them, and dropped after it.

Instantiating the shared Python runtime (fourteen core modules linked together,
thousands of function-table entries filled) and tearing an instance down (unmapping
every page the call wrote) cost more than a small handler's whole run, and neither
depends on anything a request brings. So a background thread does both: it keeps a
few never-used instances of the runtime ready, and drops the stores of finished
invocations after their response has gone back. An invocation takes a ready instance
if there is one and instantiates inline otherwise; either way each instance serves
exactly one invocation and is then destroyed, so nothing of one call reaches another.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from host.runtime.priority import set_nice

log = logging.getLogger("nimbus.runtime")

#: instances kept ready (each maps the runtime's memory image copy-on-write: a few
#: pages of RSS until it runs)
DEPTH = 2
#: used stores waiting to be dropped; beyond this the invoking thread drops its own
MAX_PENDING_DROPS = 16
#: the thread's nice value (0 is the default, 19 the lowest priority)
READY_NICE = 10


class ReadyInstances:
    """A few fresh instances made ahead by one background thread, which also drops
    used stores. ``make`` returns ``(store, handle export)`` of a new instance."""

    def __init__(self, make: Callable[[], tuple[Any, Any]], depth: int = DEPTH) -> None:
        self._make = make
        self._depth = depth
        self._ready: deque[tuple[Any, Any]] = deque()
        self._used: deque[Any] = deque()
        self._wake = threading.Event()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="nimbus-python-ready", daemon=True)
        self._thread.start()

    def take(self) -> tuple[Any, Any] | None:
        """A never-used ``(store, func)``, or None when none is ready yet."""
        try:
            return self._ready.popleft()
        except IndexError:
            return None

    def drop(self, store: Any) -> bool:
        """Hand a used store over to be closed in the background (its instance and
        memory freed); False (the caller closes it) when the thread is behind or
        stopped."""
        if self._stopped or len(self._used) >= MAX_PENDING_DROPS:
            return False
        self._used.append(store)
        self._wake.set()
        return True

    def close(self) -> None:
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout=5)
        self._ready.clear()
        self._used.clear()

    def _run(self) -> None:
        # below the threads that serve requests: this work can wait for an idle core
        set_nice(threading.get_native_id(), READY_NICE)
        while True:
            self._wake.clear()
            if self._stopped:
                return
            while self._used:
                self._used.popleft().close()
            if len(self._ready) < self._depth:
                try:
                    self._ready.append(self._make())
                except Exception as e:  # invocations instantiate inline, as without us
                    log.warning("Python instances cannot be made ahead: %s", e)
                    self._stopped = True
                    return
                continue
            self._wake.wait()
