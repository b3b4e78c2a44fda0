"""The managed-service imports: ``op(req_ptr, req_len) -> i64``, one per operation.

Each capability declares its operations in its own module (``kv``, ``blobs``,
``queues``, ``events``); this one lists them and turns each into a core import that
reads the request from guest memory and gives the ``[status, value]`` reply back in a
buffer allocated inside the guest (see guest_sdk/ABI.md, "Services"). A service
error is a status the guest handles, never the end of the invocation.
"""

from __future__ import annotations

from collections.abc import Callable

from host.hostcalls import blobs, events, kv, queues
from host.hostcalls.wire import Operation, reply_to, too_large
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation

OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (*kv.OPERATIONS, *blobs.OPERATIONS, *queues.OPERATIONS, *events.OPERATIONS)
}


def _serve(op: Operation) -> Callable[[Invocation, int, int], int]:
    def impl(inv: Invocation, ptr: int, length: int) -> int:
        # out of bounds ends the invocation (AbiError); too big is a status, read nothing
        if length > op.max_request_bytes:
            inv.check_range(ptr, length)
            return inv.give(too_large(op, length))
        return inv.give(reply_to(op, inv, inv.read(ptr, length)))

    return impl


FUNCTIONS = tuple(
    HostFunction(op.name, ("i32", "i32"), ("i64",), _serve(op)) for op in OPERATIONS.values()
)
