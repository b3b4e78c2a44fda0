"""One invocation as host functions see it: its ids, its log, and its guest's memory.

The platform creates an ``Invocation`` per call and fills ``services`` with whatever
the host functions of managed services need (the runtime never looks inside); the
runtime binds it to the instance's memory and allocator while the guest runs.
"""

from __future__ import annotations

import ctypes
import logging
import time
from typing import TYPE_CHECKING, Any

from msgspec import Struct, field

from host.errors import AbiError, FunctionOutOfMemory, NimbusError

if TYPE_CHECKING:
    from host.runtime.native import Guest

LEVELS = ("debug", "info", "warn", "error")
#: what one invocation may log by default: then one "log truncated" line
MAX_LOG_BYTES = 256 * 1024
MAX_LOG_LINES = 1000
_PY_LEVELS = (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR)
log = logging.getLogger("nimbus.function")


class LogLine(Struct, frozen=True):
    """One line a guest logged, stamped with the time it arrived."""

    time_ms: int
    level: str
    message: str


class Invocation(Struct):
    """The host-side state of one running invocation."""

    request_id: str
    function: str
    services: Any = None
    #: what outbound HTTP and secrets need (host/hostcalls/http.py, secrets.py); None
    #: for a function granted neither
    outbound: Any = None
    secrets: Any = None
    logs: list[LogLine] = field(default_factory=list)
    #: an error raised by a host function; it ends the invocation once the trap unwinds
    error: BaseException | None = None
    max_log_bytes: int = MAX_LOG_BYTES
    max_log_lines: int = MAX_LOG_LINES
    log_bytes: int = 0
    #: lines over the budget, counted in the one "log truncated" line
    dropped: int = 0
    #: the guest's linear memory when its handler returned or trapped, bytes: its
    #: peak, since a wasm memory never shrinks (0: not measured)
    memory_bytes: int = 0
    #: host imports the guest called (metering)
    host_calls: int = 0
    #: when the invocation's time is up (``time.monotonic()``; 0: no deadline): a host
    #: call that waits (WASI's ``poll_oneoff``) waits no longer
    deadline: float = 0.0
    #: ``spans(name, kind, attributes)``: a context manager making a child span of
    #: the current one, when tracing is on (host/telemetry/tracing.py); None when off
    spans: Any = None
    #: the running instance's memory and allocator, once its handler may run
    #: (``native.CtypesGuest``, or the C extension's ``Instance``)
    guest: Guest | None = None

    def log(self, level: int, message: str) -> None:
        """Keep one line, within the invocation's log budget (lines and bytes); past it
        the lines are counted in one "log truncated: N lines dropped" line."""
        level = min(max(level, 0), 3)
        size = len(message)
        if self.dropped or (
            len(self.logs) >= self.max_log_lines or self.log_bytes + size > self.max_log_bytes
        ):
            self._drop()
            return
        self.log_bytes += size
        self.logs.append(LogLine(int(time.time() * 1000), LEVELS[level], message))
        log.log(
            _PY_LEVELS[level],
            "[%s] %s: %s",
            self.request_id,
            self.function,
            message,
            extra={"request_id": self.request_id, "function": self.function},
        )

    def _drop(self) -> None:
        self.dropped += 1
        marker = LogLine(
            int(time.time() * 1000), "warn", f"log truncated: {self.dropped} lines dropped"
        )
        if self.dropped == 1:
            self.logs.append(marker)
            log.warning("[%s] %s: log budget reached", self.request_id, self.function)
        else:
            self.logs[-1] = marker

    def fail(self, error: NimbusError) -> NimbusError:
        """Remember ``error`` as the invocation's outcome and return it for raising."""
        self.error = error
        return error

    # --- guest memory --------------------------------------------------------------

    def _bound(self) -> Guest:
        guest = self.guest
        if guest is None:  # a start function calling the host before the handler
            raise self.fail(
                AbiError(
                    f"function {self.function} called a host import before its handler ran "
                    "(from a start function); imports are only available in nimbus_handle"
                )
            )
        return guest

    def _view(self) -> tuple[int, int]:
        return self._bound().memory_view()

    def check_range(self, ptr: int, length: int) -> None:
        """``AbiError`` unless ``ptr .. ptr+length`` lies inside guest memory."""
        self.read(ptr, length, 0)

    def read(self, ptr: int, length: int, limit: int | None = None) -> bytes:
        """Copy ``length`` bytes at ``ptr`` out of guest memory (only the first
        ``limit`` of them, if given); ``AbiError`` unless the whole range lies inside
        it."""
        base, size = self._view()
        if ptr + length > size:
            raise self.fail(
                AbiError(f"guest passed {ptr}+{length}, outside its {size}-byte memory")
            )
        return ctypes.string_at(base + ptr, length if limit is None else min(length, limit))

    def write(self, ptr: int, data: bytes) -> None:
        """Copy ``data`` into guest memory at ``ptr``, bounds-checked."""
        base, size = self._view()
        if ptr + len(data) > size:
            raise self.fail(
                AbiError(f"guest passed {ptr}+{len(data)}, outside its {size}-byte memory")
            )
        ctypes.memmove(base + ptr, data, len(data))

    def give(self, data: bytes) -> int:
        """Allocate ``data`` inside the guest with its allocator; ``(ptr << 32) | len``."""
        ptr = self._bound().alloc(len(data))
        if ptr == 0 and data:
            raise self.fail(
                FunctionOutOfMemory(f"guest allocator could not provide {len(data)} bytes")
            )
        self.write(ptr, data)
        return (ptr << 32) | len(data)
