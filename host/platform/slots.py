"""Concurrency slots: how many invocations of each function run in this process, and
``max_concurrency`` enforced over them (Lambda's reserved concurrency, per worker).

Every invocation holds a slot of its function for the length of its run (the guest
and its commit). A function at its ``max_concurrency`` makes the next call wait for a
slot up to ``max_concurrency_wait`` (never past the call's own time limit, and not at
all for a call under a budget: it runs inline, on the event loop, and must not
block), then refuses it as ``Throttled`` (429 with ``Retry-After``; a trigger puts the
message back without spending an attempt). The counts are what ``nimbus ls`` and
``nimbus_in_flight`` show.
"""

from __future__ import annotations

import math
import threading
import time

from host.errors import Throttled
from host.manifest.functions import FunctionSpec


class Slots:
    """The running invocations of one process, by function."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: signalled when a slot of a function with ``max_concurrency`` frees up
        self._freed = threading.Condition(self._lock)
        self._running: dict[str, int] = {}

    def hold(self, spec: FunctionSpec, run_s: float | None, budgeted: bool) -> Slot:
        """A slot of ``spec``'s function, taken on entering the ``with`` block."""
        time_limit = spec.timeout_s if run_s is None else run_s
        wait_s = 0.0 if budgeted else min(spec.max_concurrency_wait_s, time_limit)
        return Slot(self, spec.name, spec.max_concurrency, wait_s)

    def running(self) -> dict[str, int]:
        """Invocations running now, by function (those with none left out)."""
        with self._lock:
            return {f: n for f, n in self._running.items() if n}

    def in_flight(self, function: str) -> int:
        with self._lock:
            return self._running.get(function, 0)


class Slot:
    """One call's slot, held for the length of a ``with`` block."""

    __slots__ = ("function", "limit", "slots", "wait_s")

    def __init__(self, slots: Slots, function: str, limit: int, wait_s: float) -> None:
        self.slots, self.function, self.limit, self.wait_s = slots, function, limit, wait_s

    def __enter__(self) -> None:
        s, function = self.slots, self.function
        with s._lock:
            running = s._running.get(function, 0)
            if self.limit and running >= self.limit:
                deadline = time.monotonic() + self.wait_s
                while running >= self.limit:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise Throttled(
                            f"function {function} is at its max_concurrency of {self.limit} "
                            f"and no slot freed within {self.wait_s:g} s; retry later",
                            retry_after_s=max(1, math.ceil(self.wait_s)),
                        )
                    s._freed.wait(left)
                    running = s._running.get(function, 0)
            s._running[function] = running + 1

    def __exit__(self, *exc: object) -> None:
        s = self.slots
        with s._lock:
            s._running[self.function] -= 1
            if self.limit:
                s._freed.notify_all()
