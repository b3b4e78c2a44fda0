"""Warm functions kept in memory, and dropped after an idle TTL (scale to zero).

A warm function is a linked ``InstancePre`` ready for the next call. One that has not
been called for its ``idle_ttl`` is dropped; its next call loads it again from the
disk cache (milliseconds, no compile) and is reported as a cold start. One loaded
with an infinite TTL (a function with ``min_warm``) is never dropped by the sweep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from msgspec import Struct

from host.runtime.loaded import LoadedFunction


class _Entry(Struct):
    fn: LoadedFunction
    idle_ttl: float
    last_used: float


class WarmPool:
    """Loaded functions by key (``name@version``), with their last use."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._lock = threading.Lock()

    def get(
        self, key: str, load: Callable[[], LoadedFunction], idle_ttl: float
    ) -> tuple[LoadedFunction, bool]:
        """The warm function for ``key``, loading it if needed; ``(fn, cold)``."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None:
            entry.last_used = now
            return entry.fn, False
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per key; the others wait and find it warm
            entry = self._entries.get(key)
            if entry is not None:
                entry.last_used = now
                return entry.fn, False
            fn = load()
            self._entries[key] = _Entry(fn, idle_ttl, self._clock())
        return fn, True

    def drop(self, prefix: str) -> None:
        """Forget every entry whose key starts with ``prefix`` (e.g. ``name@``)."""
        with self._lock:
            for key in [k for k in self._entries if k.startswith(prefix)]:
                del self._entries[key]

    def sweep(self) -> list[str]:
        """Drop the entries idle past their TTL; the keys dropped."""
        now = self._clock()
        with self._lock:
            idle = [k for k, e in self._entries.items() if now - e.last_used >= e.idle_ttl]
            for key in idle:
                del self._entries[key]
        return idle

    def put(self, key: str, fn: LoadedFunction, idle_ttl: float) -> None:
        """Make ``fn`` the warm function for ``key`` (loaded ahead of any call)."""
        with self._lock:
            self._entries[key] = _Entry(fn, idle_ttl, self._clock())

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        return list(self._entries)

    def functions(self) -> set[str]:
        """The names of the functions with a version loaded (keys are ``name@version``)."""
        return {k.rpartition("@")[0] for k in list(self._entries)}

    def __len__(self) -> int:
        return len(self._entries)
