"""Runs invocations off the event loop, in threads, fairly between functions.

wasmtime releases the GIL while guest code runs, so invocations in worker threads run
in parallel. Each function gets its own capacity limiter: a slow function saturating
its threads does not hold back requests to another function.
"""

from __future__ import annotations

import os
from typing import Any

import anyio
import anyio.to_thread

from host.platform import InvocationResult, Platform

#: threads one function may occupy at once in one worker process
THREADS_PER_FUNCTION = max(16, 8 * (os.cpu_count() or 1))


class Invoker:
    """Calls ``Platform.invoke`` in a worker thread, under the function's limiter."""

    def __init__(self, platform: Platform, threads_per_function: int = THREADS_PER_FUNCTION):
        self.platform = platform
        self._threads = threads_per_function
        self._limiters: dict[str, anyio.CapacityLimiter] = {}

    async def invoke(
        self, function: str, event: dict[str, Any], request_id: str
    ) -> InvocationResult:
        limiter = self._limiters.get(function)
        if limiter is None:
            limiter = self._limiters.setdefault(function, anyio.CapacityLimiter(self._threads))

        def run() -> InvocationResult:
            return self.platform.invoke(function, event, request_id=request_id)

        return await anyio.to_thread.run_sync(run, limiter=limiter)
