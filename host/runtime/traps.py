"""What a trap means: timeout, stack overflow, out of memory or a crash, by its code.

The runtime reports every way a guest can stop without a response as one of the
typed ``InvocationError`` classes; the text a caller sees comes from here, never the
engine's backtrace.
"""

from __future__ import annotations

import wasmtime

from host.errors import (
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionTimeout,
    InvocationError,
    Overloaded,
)
from host.runtime import native

#: a trap with linear memory this close to the cap is reported as out of memory
OOM_SLACK = 1024 * 1024


def classify(t: native.GuestTrap, name: str) -> InvocationError:
    code = t.code
    if code == wasmtime.TrapCode.INTERRUPT:
        return FunctionTimeout(f"function {name} ran past its time limit and was stopped")
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return FunctionCrashed(f"function {name} crashed: stack overflow (call stack exhausted)")
    return FunctionCrashed(f"function {name} crashed: {trap_message(t)}")


def classify_memory(
    err: InvocationError, memory_size: int | None, cap: int, name: str
) -> InvocationError:
    """``err``, or ``FunctionOutOfMemory`` when a crash came with memory at its cap."""
    if (
        isinstance(err, FunctionCrashed)
        and memory_size is not None
        and memory_size + OOM_SLACK >= cap
    ):
        return FunctionOutOfMemory(
            f"function {name} ran out of memory: it reached its {cap // (1024 * 1024)} MiB cap"
        )
    return err


def trap_message(t: native.GuestTrap) -> str:
    """The reason of a trap without wasmtime's backtrace ("wasm trap: …" after "Caused by")."""
    msg = str(t).strip()
    if "Caused by:" in msg:
        msg = msg.rsplit("Caused by:", 1)[1].strip()
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    return lines[-1] if lines else "trap"


def instantiate_error(t: native.GuestTrap, name: str, memory_bytes: int) -> InvocationError:
    """The error for an instance that could not be created (or whose start function
    trapped): out of slots, out of memory, or the trap's own meaning."""
    if "concurrent" in str(t) and "limit" in str(t):
        return Overloaded(
            f"function {name} cannot start: every instance slot of this host is in use; retry later"
        )
    if "memory" in str(t) and ("limit" in str(t) or "minimum" in str(t)):
        return FunctionOutOfMemory(
            f"function {name} needs more memory than its {memory_bytes}-byte cap"
        )
    return classify(t, name)
