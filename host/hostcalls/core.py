"""The core imports every function has: log, now, random_bytes and abort."""

from __future__ import annotations

import os
import time

from host.errors import AbiError, FunctionCrashed, FunctionOutOfMemory
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation

MAX_RANDOM_BYTES = 65536
MAX_LOG_BYTES = 64 * 1024
ABORT_PANIC = 0
ABORT_OUT_OF_MEMORY = 1


def log(inv: Invocation, level: int, ptr: int, length: int) -> None:
    data = inv.read(ptr, length, MAX_LOG_BYTES)  # the whole range checked, a long line cut
    inv.log(level, data.decode("utf-8", errors="replace"))


def now(inv: Invocation) -> int:
    return time.time_ns()


def random_bytes(inv: Invocation, ptr: int, length: int) -> None:
    if length > MAX_RANDOM_BYTES:
        raise inv.fail(
            AbiError(f"random_bytes asked for {length} bytes; at most {MAX_RANDOM_BYTES}")
        )
    inv.write(ptr, os.urandom(length))


def abort(inv: Invocation, kind: int, ptr: int, length: int) -> None:
    message = inv.read(ptr, length, MAX_LOG_BYTES).decode("utf-8", errors="replace")
    if kind == ABORT_OUT_OF_MEMORY:
        raise inv.fail(FunctionOutOfMemory(f"function {inv.function} ran out of memory: {message}"))
    raise inv.fail(FunctionCrashed(f"function {inv.function} panicked: {message}"))


FUNCTIONS = (
    HostFunction("log", ("i32", "i32", "i32"), (), log),
    HostFunction("now", (), ("i64",), now),
    HostFunction("random_bytes", ("i32", "i32"), (), random_bytes),
    HostFunction("abort", ("i32", "i32", "i32"), (), abort),
)
