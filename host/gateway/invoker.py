"""Runs invocations without stalling the event loop, fairly between functions.

wasmtime releases the GIL while guest code runs, so invocations in worker threads run
in parallel, and each function gets its own capacity limiter: a slow function
saturating its threads does not hold back requests to another function.

A thread hop costs more than a small function's whole run, so a function whose
recent invocations all took under a few milliseconds of CPU runs inline, on the
event loop, under a short budget enforced by the engine (``INLINE_BUDGET_S``, rounded
up to the engine's 5 ms epoch tick, so the loop is held 10 ms at the worst). If it
runs past the budget it is stopped (its staged effects dropped, nothing recorded)
and run again in a thread with its full time limit, and it loses its inline status
for a few runs (its CPU time in a thread tells a slow function, which then loses it
until it proves fast again, from one preempted on a busy machine). A function
allowed outbound HTTP never runs inline: it may wait on the network for up to its
whole time limit.

A request that waits for one of its function's threads spends its own time limit
waiting: it runs with what is left, and one that waited its whole limit is refused as
``Overloaded`` (retry later), so a caller is answered within the function's timeout
whatever the queue. The threads of one function are bounded (``THREADS_PER_FUNCTION``)
and every function has its own, so a storm of one cannot take the threads of another.
A function's ``max_concurrency`` is the platform's to enforce (a call over it waits in
its thread for a slot, then is ``Throttled``: 429 with ``Retry-After``). The runtime
lowers the CPU priority of guests that run long, so the cores go to short requests
first (host/runtime/priority.py).
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from host.errors import NimbusError, Overloaded, Throttled
from host.manifest.functions import FunctionSpec
from host.platform.platform import InvocationResult, OverBudget, Platform
from host.platform.registry import Deployment
from host.platform.request import InvocationRequest

#: threads one function may occupy at once in one worker process
THREADS_PER_FUNCTION = max(64, 16 * (os.cpu_count() or 1))
#: threads of all functions at once in one worker process (beyond it a call waits for
#: one, its wait counted against its time limit as any other)
MAX_THREADS = 1024
#: a wait for a thread shorter than this does not shorten the time limit
QUEUE_GRACE_S = 0.005
#: the longest an inline invocation may hold the event loop
INLINE_BUDGET_S = 0.003
#: a run that took less CPU time than this counts towards running inline (CPU time of
#: the thread that ran it: on a loaded machine the wall time of a run in a thread is
#: mostly waiting for a core or the GIL, which says nothing of the function)
FAST_MS = 2.0
#: ... and, if it committed writes, whose wall time was under this: a run that waited
#: this long for its commit (the write lock, the disk) neither counts nor resets the
#: streak (the wall time of a run that wrote nothing is waiting for a core or the GIL)
INLINE_WALL_MS = 10.0
#: fast runs in threads that bring back a function stopped inline while it waited
OVER_BUDGET_PENALTY = 5
#: consecutive fast runs before a function runs inline
FAST_STREAK = 20


T = TypeVar("T")


class Invoker:
    """Calls ``Platform.execute`` inline (fast functions) or in a worker thread.

    The threads are a plain executor behind one semaphore per function (not anyio's
    ``to_thread``, whose backend costs ~30 ms to import in a server's first request)."""

    def __init__(self, platform: Platform, threads_per_function: int = THREADS_PER_FUNCTION):
        self.platform = platform
        self._threads = threads_per_function
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._executor = ThreadPoolExecutor(MAX_THREADS, thread_name_prefix="nimbus-invoke")
        self._streak: dict[str, int] = {}

    async def invoke(
        self, function: str, event: dict[str, Any], request_id: str
    ) -> InvocationResult:
        if self.runs_inline(function):
            inline = self.try_inline(function, event, request_id)
            if inline is not None:
                return inline
        arrived = time.monotonic()

        def run() -> tuple[InvocationResult, float]:
            waited = time.monotonic() - arrived
            cpu = time.thread_time()
            if waited < QUEUE_GRACE_S:
                request = InvocationRequest(function, event, request_id)
            else:
                limit = self.platform.registry.get(function).spec.timeout_s
                if waited >= limit:
                    raise Overloaded(
                        f"function {function} waited its whole {limit:g} s time limit for a "
                        "free thread; retry later"
                    )
                request = InvocationRequest(function, event, request_id, timeout_s=limit - waited)
            result = self.platform.execute(request)
            return result, (time.thread_time() - cpu) * 1000

        result, cpu_ms = await self._in_thread(function, run)
        # a function that may fetch never earns the inline path, however fast it runs
        if cpu_ms >= FAST_MS or self._may_block(function):
            self._streak[function] = 0
        elif not result.wrote or result.duration_ms < INLINE_WALL_MS:
            self._streak[function] = self._streak.get(function, 0) + 1
        return result

    def runs_inline(self, function: str, spec: FunctionSpec | None = None) -> bool:
        """Whether ``function``'s next call is tried inline, on the caller's thread
        (``spec``: its current deployment's, when the caller has looked it up)."""
        return self._streak.get(function, 0) >= FAST_STREAK and not self._may_block(function, spec)

    def try_inline(
        self,
        function: str,
        event: dict[str, Any],
        request_id: str,
        dep: Deployment | None = None,
    ) -> InvocationResult | None:
        """``function`` run here under the inline budget; None if it must run in a
        thread instead (stopped at the budget, its effects dropped, or no slot free).
        ``dep``: its current deployment, when the caller has looked it up."""
        try:
            return self.platform.execute(
                InvocationRequest(function, event, request_id=request_id, budget_s=INLINE_BUDGET_S),
                dep,
            )
        except OverBudget:
            # back to the threads for a few runs: a slow function's next run there
            # (over FAST_MS of CPU) takes its whole streak; one that was only
            # preempted on a busy machine is back inline after a few fast runs
            self._streak[function] = self._streak.get(function, 0) - OVER_BUDGET_PENALTY
        except Throttled:  # no slot free now: wait for one in a thread, not here
            pass
        return None

    async def _in_thread(self, function: str, run: Callable[[], T]) -> T:
        """``run()`` in a worker thread, within ``function``'s share of them; in the
        caller's context (its trace, for one)."""
        slots = self._slots.get(function)
        if slots is None:
            slots = self._slots.setdefault(function, asyncio.Semaphore(self._threads))
        async with slots:
            ctx = contextvars.copy_context()
            done = asyncio.get_running_loop().run_in_executor(self._executor, ctx.run, run)
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                # a running invocation cannot be stopped from here: its thread (and
                # slot) stay taken until it ends, then the cancellation goes on
                await asyncio.wait([done])
                raise

    def close(self) -> None:
        """Wait for the invocations running in threads, then let their threads go."""
        self._executor.shutdown(wait=True)

    def _may_block(self, function: str, spec: FunctionSpec | None = None) -> bool:
        """A function that may wait on the network (it has outbound hosts) never runs
        on the event loop, decided by its current deployment's grants."""
        if spec is None:
            try:
                spec = self.platform.registry.get(function).spec
            except NimbusError:
                return False
        return bool(spec.outbound.entries)
