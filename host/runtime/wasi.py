"""WASI's ``poll_oneoff``, bounded by the invocation's deadline, the clock it waits
on, and ``random_get`` checked before it draws.

The Python runtime's libc sleeps (``time.sleep``, ``select`` with a timeout) through
``poll_oneoff``. wasmtime's WASI blocks the calling thread in the host for as long as
the guest asks, and epoch interruption only stops guest code: a function sleeping an
hour would hold its thread an hour past its timeout. This one sleeps at most until
the invocation's deadline, and a wait that would end past it ends the invocation
there with ``FunctionTimeout``; it answers subscriptions to file descriptors at once
with ``EBADF``: the sandbox has none. ``clock_time_get`` is served here too, so that
an absolute timeout the guest computed from its monotonic clock is on the same clock
as the wait (wasmtime's counts from each store's creation); that clock counts from
the host process's start. ``random_get`` checks the range before it draws anything
and draws 64 KiB at a time (wasmtime's allocates the whole length first). All three
shadow wasmtime's on the Python runtime's linker only.
"""

from __future__ import annotations

import os
import struct
import time

from host.errors import FunctionTimeout
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation

MODULE = "wasi_snapshot_preview1"
_SUBSCRIPTION = struct.Struct("<QB7xIxxxxQQH6x")  # userdata, tag, clock id, timeout, …, flags
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, errno, type, nbytes, flags
_CLOCK, _ABSTIME = 0, 1
_ESUCCESS, _EBADF, _EINVAL = 0, 8, 28
#: subscriptions one call may pass (CPython's select passes one per descriptor)
MAX_SUBSCRIPTIONS = 1024
_REALTIME = 0
#: the most ``random_get`` draws from the OS at once
RANDOM_CHUNK = 64 * 1024
_START_NS = time.monotonic_ns()


def _now(clock: int) -> int:
    """Realtime: the host's wall clock; any other (monotonic, and the process and
    thread CPU clocks, which a sandbox cannot tell apart from it): since start-up."""
    return time.time_ns() if clock == _REALTIME else time.monotonic_ns() - _START_NS


def clock_time_get(inv: Invocation, clock: int, _precision: int, out_ptr: int) -> int:
    if clock > 3:
        return _EINVAL
    inv.write(out_ptr, struct.pack("<Q", _now(clock)))
    return _ESUCCESS


def random_get(inv: Invocation, ptr: int, length: int) -> int:
    """The range checked first, then filled a chunk at a time: the host never holds
    more than ``RANDOM_CHUNK`` bytes for it (wasmtime's allocates the whole length
    before it checks the range)."""
    inv.check_range(ptr, length)
    for at in range(0, length, RANDOM_CHUNK):
        inv.write(ptr + at, os.urandom(min(RANDOM_CHUNK, length - at)))
    return _ESUCCESS


def poll_oneoff(inv: Invocation, subs_ptr: int, events_ptr: int, n: int, nevents_ptr: int) -> int:
    if n == 0 or n > MAX_SUBSCRIPTIONS:
        return _EINVAL
    raw = inv.read(subs_ptr, n * _SUBSCRIPTION.size)
    subs = [_SUBSCRIPTION.unpack_from(raw, i * _SUBSCRIPTION.size) for i in range(n)]
    events: list[bytes] = []
    waits: list[tuple[int, int]] = []  # (ns to wait, userdata) of each clock
    for userdata, tag, clock, timeout, _precision, flags in subs:
        if tag != _CLOCK:  # fd_read or fd_write: no descriptor exists here
            events.append(_EVENT.pack(userdata, _EBADF, tag, 0, 0))
            continue
        if flags & _ABSTIME:
            timeout = max(0, timeout - _now(clock))
        waits.append((timeout, userdata))
    if not events:
        shortest = min(ns for ns, _ in waits)
        wanted = shortest / 1e9
        left = inv.deadline - time.monotonic() if inv.deadline else 0.0  # none: no wait
        time.sleep(max(0.0, min(wanted, left)))
        if inv.deadline and wanted > left:  # asked to wait past its deadline: time is up
            raise inv.fail(
                FunctionTimeout(f"function {inv.function} ran past its time limit and was stopped")
            )
        events = [_EVENT.pack(u, _ESUCCESS, _CLOCK, 0, 0) for ns, u in waits if ns <= shortest]
    inv.write(events_ptr, b"".join(events))
    inv.write(nevents_ptr, struct.pack("<I", len(events)))
    return _ESUCCESS


FUNCTIONS = [
    HostFunction("poll_oneoff", ("i32", "i32", "i32", "i32"), ("i32",), poll_oneoff, MODULE),
    HostFunction("clock_time_get", ("i32", "i64", "i32"), ("i32",), clock_time_get, MODULE),
    HostFunction("random_get", ("i32", "i32"), ("i32",), random_get, MODULE),
]
