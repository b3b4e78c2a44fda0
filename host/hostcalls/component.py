"""The imports of component guests (Python functions): one implementation with the
core imports, adapted to the component world's signatures (see nimbus.wit). Bytes
cross as strings of characters U+0000 to U+00FF, one per byte: wasmtime-py converts a
``list<u8>`` through ctypes an element at a time (~1 µs per byte: a 64 KiB value put
and read back took ~0.19 s), a string in one copy."""

from __future__ import annotations

import os
import time

from host.errors import AbiError
from host.hostcalls import http, secrets
from host.hostcalls.core import MAX_LOG_BYTES, MAX_RANDOM_BYTES
from host.hostcalls.services import OPERATIONS
from host.hostcalls.wire import INVALID, error_reply, reply_to
from host.runtime.components import ComponentImport
from host.runtime.invocation import Invocation


def log(inv: Invocation, level: int, message: str) -> None:
    inv.log(level, message[:MAX_LOG_BYTES])


def now(inv: Invocation) -> int:
    return time.time_ns()


def random_bytes(inv: Invocation, n: int) -> str:
    return os.urandom(min(n, MAX_RANDOM_BYTES)).decode("latin-1")


#: imports that are not managed-service operations, reached through ``call`` as well
_OTHER_CALLS = {"http_fetch": http.serve, "secret_get": secrets.serve}


def call(inv: Invocation, op: str, request: str) -> str:
    try:
        raw = request.encode("latin-1")
    except UnicodeEncodeError:
        raise AbiError(f"{op[:64]!r}: a request with a character above U+00FF") from None
    return _call(inv, op, raw).decode("latin-1")


def _call(inv: Invocation, op: str, request: bytes) -> bytes:
    other = _OTHER_CALLS.get(op)
    if other is not None:
        if len(request) > http.MAX_REQUEST_BYTES:
            return error_reply(4, f"an {op} request is at most {http.MAX_REQUEST_BYTES} bytes")
        return other(inv, request)
    operation = OPERATIONS.get(op)
    if operation is None:
        return error_reply(INVALID, f"no service operation named {op[:64]!r}")
    return reply_to(operation, inv, request)


IMPORTS: dict[str, ComponentImport] = {
    "log": log,
    "now": now,
    "random-bytes": random_bytes,
    "call": call,
}
