"""The imports of component guests (Python functions): one implementation with the
core imports, adapted to the component world's signatures (see nimbus.wit)."""

from __future__ import annotations

import os
import time

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


def random_bytes(inv: Invocation, n: int) -> bytes:
    return os.urandom(min(n, MAX_RANDOM_BYTES))


#: imports that are not managed-service operations, reached through ``call`` as well
_OTHER_CALLS = {"http_fetch": http.serve, "secret_get": secrets.serve}


def call(inv: Invocation, op: str, request: bytes) -> bytes:
    other = _OTHER_CALLS.get(op)
    if other is not None:
        if len(request) > http.MAX_REQUEST_BYTES:
            return error_reply(4, f"an {op} request is at most {http.MAX_REQUEST_BYTES} bytes")
        return other(inv, bytes(request))
    operation = OPERATIONS.get(op)
    if operation is None:
        return error_reply(INVALID, f"no service operation named {op[:64]!r}")
    return reply_to(operation, inv, bytes(request))


IMPORTS: dict[str, ComponentImport] = {
    "log": log,
    "now": now,
    "random-bytes": random_bytes,
    "call": call,
}
