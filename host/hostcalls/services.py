"""The managed-service imports: ``op(req_ptr, req_len) -> i64``, one per operation.

Each import reads a msgpack request map from guest memory, checks the function's
grant, calls the invocation's staged effects, and answers ``[status, value]`` in a
buffer it allocates inside the guest (see guest_sdk/ABI.md, "Services"). A service
error is a status the guest handles, never the end of the invocation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from host.errors import (
    AbiError,
    ConditionFailed,
    InvalidArgument,
    PermissionDenied,
    ServiceUnavailable,
    TooLarge,
)
from host.hostcalls.context import ServiceAccess
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation
from host.services.keys import check_key, check_name, successor

MAX_REQUEST_BYTES = 80 * 1024 * 1024  # a 64 MiB blob plus its request
MAX_PAGE = 1000
_STATUS: list[tuple[type[Exception], int]] = [
    (PermissionDenied, 1),
    (InvalidArgument, 2),
    (ConditionFailed, 3),
    (TooLarge, 4),
    (ServiceUnavailable, 5),
]
_VALUE_KEY = b"\x82" + msgpack.packb("value")
_VERSION_KEY = msgpack.packb("version")


class Raw(bytes):
    """A value already encoded as msgpack: spliced into the reply as is."""


def _pack(value: Any) -> bytes:
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        parts = [_map_header(len(value))]
        for k, v in value.items():
            parts.append(msgpack.packb(k))
            parts.append(_pack(v))
        return b"".join(parts)
    if isinstance(value, list):
        return _array_header(len(value)) + b"".join(_pack(v) for v in value)
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


# --- request fields ------------------------------------------------------------------


def _name(req: dict[str, Any], field: str) -> str:
    return check_name(field, req.get(field))


def _opt_bytes(req: dict[str, Any], field: str) -> bytes | None:
    v = req.get(field)
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode()
    if not isinstance(v, bytes):
        raise InvalidArgument(f"'{field}' must be bytes or a string")
    return v


def _opt_int(req: dict[str, Any], field: str, default: int | None = None) -> int | None:
    v = req.get(field)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InvalidArgument(f"'{field}' must be a non-negative integer")
    return v


def _limit(req: dict[str, Any]) -> int:
    limit = _opt_int(req, "limit", 100) or 100
    return min(limit, MAX_PAGE)


def _packed(req: dict[str, Any], field: str) -> bytes:
    if field not in req:
        raise InvalidArgument(f"the request needs '{field}'")
    packed: bytes = msgpack.packb(req[field], use_bin_type=True)
    return packed


# --- operations ----------------------------------------------------------------------


def kv_get(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = _name(req, "table")
    a.check("tables", table, write=False)
    found = a.effects.kv_get(table, check_key(req.get("key")))
    if found is None:
        return None
    # the reply's map, spliced by hand: kv_get is the hot path of a guest's reads
    return Raw(_VALUE_KEY + found[0] + _VERSION_KEY + msgpack.packb(found[1]))


def kv_put(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = _name(req, "table")
    a.check("tables", table, write=True)
    version = a.effects.kv_put(
        table,
        check_key(req.get("key")),
        _packed(req, "value"),
        if_absent=bool(req.get("if_absent", False)),
        if_version=_opt_int(req, "if_version"),
    )
    return {"version": version}


def kv_delete(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = _name(req, "table")
    a.check("tables", table, write=True)
    key = check_key(req.get("key"))
    return {"deleted": a.effects.kv_delete(table, key, _opt_int(req, "if_version"))}


def kv_scan(a: ServiceAccess, req: dict[str, Any]) -> Any:
    table = _name(req, "table")
    a.check("tables", table, write=False)
    prefix = _opt_bytes(req, "prefix") or b""
    start = max(_opt_bytes(req, "cursor") or _opt_bytes(req, "start") or b"", prefix)
    end = _opt_bytes(req, "end")
    if prefix:
        bound = successor(prefix)
        end = bound if end is None or (bound is not None and bound < end) else end
    items, cursor = a.effects.kv_scan(table, start, end, _limit(req))
    return {"items": [[k, Raw(v), ver] for k, v, ver in items], "cursor": cursor}


def blob_put(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = _name(req, "bucket")
    a.check("buckets", bucket, write=True)
    data = req.get("data")
    if not isinstance(data, bytes):
        raise InvalidArgument("'data' must be bytes (msgpack bin)")
    content_type = req.get("content_type") or "application/octet-stream"
    metadata = req.get("metadata") or {}
    if not isinstance(content_type, str) or not isinstance(metadata, dict):
        raise InvalidArgument("'content_type' must be a string and 'metadata' a map")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise InvalidArgument("'metadata' must map strings to strings")
    info = a.effects.blob_put(bucket, check_key(req.get("key")), data, content_type, metadata)
    return {"size": info.size, "etag": info.etag}


def blob_get(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = _name(req, "bucket")
    a.check("buckets", bucket, write=False)
    found = a.effects.blob_get(
        bucket, check_key(req.get("key")), _opt_int(req, "start", 0) or 0, _opt_int(req, "end")
    )
    if found is None:
        return None
    data, info = found
    return {"data": data, **info.to_dict()}


def blob_head(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = _name(req, "bucket")
    a.check("buckets", bucket, write=False)
    info = a.effects.blob_head(bucket, check_key(req.get("key")))
    return None if info is None else info.to_dict()


def blob_delete(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = _name(req, "bucket")
    a.check("buckets", bucket, write=True)
    return {"deleted": a.effects.blob_delete(bucket, check_key(req.get("key")))}


def blob_list(a: ServiceAccess, req: dict[str, Any]) -> Any:
    bucket = _name(req, "bucket")
    a.check("buckets", bucket, write=False)
    prefix = _opt_bytes(req, "prefix") or b""
    start = _opt_bytes(req, "cursor") or b""
    infos, cursor = a.effects.blob_list(bucket, prefix, start, _limit(req))
    items = [
        {"key": i.key, "size": i.size, "etag": i.etag, "modified_ms": i.modified_ms} for i in infos
    ]
    return {"items": items, "cursor": cursor}


def queue_send(a: ServiceAccess, req: dict[str, Any]) -> Any:
    queue = _name(req, "queue")
    a.check("queues", queue, write=True)
    delay = _opt_int(req, "delay_ms", 0) or 0
    return {"id": a.effects.queue_send(queue, _packed(req, "body"), delay)}


def event_publish(a: ServiceAccess, req: dict[str, Any]) -> Any:
    topic = req.get("topic")
    if not isinstance(topic, str) or not topic or "*" in topic or "#" in topic:
        raise InvalidArgument("'topic' must be a topic name like 'order.created'")
    a.check("topics", topic, write=True)
    return {"id": a.effects.event_publish(topic, _packed(req, "payload"))}


# --- the import wrappers -------------------------------------------------------------

Operation = Callable[[ServiceAccess, dict[str, Any]], Any]


def reply_to(op: Operation, inv: Invocation, request: bytes) -> bytes:
    """The msgpack ``[status, value]`` answer to one request (core and component
    guests both come through here)."""
    access = inv.services
    try:
        req = msgpack.unpackb(request, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as e:
        return _pack([2, f"the request is not msgpack: {e}"])
    if not isinstance(req, dict):
        return _pack([2, "the request must be a msgpack map"])
    if not isinstance(access, ServiceAccess):
        return _pack([5, "managed services are not available to this invocation"])
    return _call(op, access, req)


def _serve(op: Operation) -> Callable[[Invocation, int, int], int]:
    def impl(inv: Invocation, ptr: int, length: int) -> int:
        if length > MAX_REQUEST_BYTES:
            raise inv.fail(AbiError(f"a service request of {length} bytes is over the cap"))
        return inv.give(reply_to(op, inv, inv.read(ptr, length)))

    return impl


def _call(op: Operation, access: ServiceAccess, req: dict[str, Any]) -> bytes:
    try:
        return b"\x92\x00" + _pack(op(access, req))
    except tuple(cls for cls, _ in _STATUS) as e:
        status = next(code for cls, code in _STATUS if isinstance(e, cls))
        return _pack([status, str(e)])


_OPS: list[Operation] = [
    kv_get,
    kv_put,
    kv_delete,
    kv_scan,
    blob_put,
    blob_get,
    blob_head,
    blob_delete,
    blob_list,
    queue_send,
    event_publish,
]

OPERATIONS: dict[str, Operation] = {op.__name__: op for op in _OPS}

FUNCTIONS = tuple(HostFunction(op.__name__, ("i32", "i32"), ("i64",), _serve(op)) for op in _OPS)
