"""The msgpack request/reply protocol of every service import.

A request is a msgpack map read from guest bytes that no one has checked: it is
decoded field by field under bounds (``decode_request``). A field that holds an
arbitrary guest value (a table value, a message body, an event payload) is kept as
its msgpack bytes (``Raw``) after a bounded validation, so it is never turned into
millions of Python objects; every other field is decoded with tight length limits.
Whatever is wrong with the bytes becomes ``InvalidArgument``, which the guest sees as
status 2 (``invalid``): never an exception in the host.

The reply is ``[status, value]`` (see guest_sdk/ABI.md, "Services").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack
from msgspec import Struct

from host.common.bounded import Unbounded, unpack
from host.errors import (
    ConditionFailed,
    InvalidArgument,
    PermissionDenied,
    ServiceUnavailable,
    TooLarge,
)
from host.hostcalls.context import ServiceAccess
from host.runtime.invocation import Invocation

#: the most list items or map entries a scalar request field (metadata, …) may hold
FIELD_ITEMS = 256
#: the bytes of a request beyond its payload (names, key, options): a key is 480
SMALL_REQUEST_BYTES = 64 * 1024

OK, PERMISSION_DENIED, INVALID, CONFLICT, TOO_LARGE, UNAVAILABLE = range(6)
_STATUS: list[tuple[type[Exception], int]] = [
    (PermissionDenied, PERMISSION_DENIED),
    (InvalidArgument, INVALID),
    (ConditionFailed, CONFLICT),
    (TooLarge, TOO_LARGE),
    (ServiceUnavailable, UNAVAILABLE),
]
_ERRORS = tuple(cls for cls, _ in _STATUS)


class Raw(bytes):
    """A value already encoded as msgpack: spliced into a reply or stored as is."""


Handler = Callable[[ServiceAccess, dict[str, Any]], Any]


class Operation(Struct, frozen=True):
    """One service operation: its handler, its request cap and its opaque fields."""

    name: str
    handler: Handler
    #: the largest request accepted (``too_large`` above it)
    max_request_bytes: int = SMALL_REQUEST_BYTES
    #: fields holding any guest value, kept as validated msgpack bytes
    opaque: frozenset[str] = frozenset()


def pack(value: Any) -> bytes:
    """``value`` as msgpack, with ``Raw`` parts spliced in unchanged."""
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, dict):
        parts = [_map_header(len(value))]
        for k, v in value.items():
            parts.append(msgpack.packb(k))
            parts.append(pack(v))
        return b"".join(parts)
    if isinstance(value, list):
        return _array_header(len(value)) + b"".join(pack(v) for v in value)
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _map_header(n: int) -> bytes:
    return bytes([0x80 | n]) if n < 16 else b"\xde" + n.to_bytes(2, "big")


def _array_header(n: int) -> bytes:
    return bytes([0x90 | n]) if n < 16 else b"\xdc" + n.to_bytes(2, "big")


def error_reply(status: int, message: str) -> bytes:
    return pack([status, message])


def decode_request(raw: bytes, opaque: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The request map in ``raw``; ``InvalidArgument`` saying what is wrong with it."""
    size = max(len(raw), 1)
    u = msgpack.Unpacker(
        raw=False,
        strict_map_key=True,
        max_buffer_size=size,
        max_str_len=size,
        max_bin_len=size,
        max_ext_len=size,
        max_array_len=FIELD_ITEMS,
        max_map_len=FIELD_ITEMS,
    )
    u.feed(raw)
    try:
        fields: dict[str, Any] = {}
        for _ in range(u.read_map_header()):
            name = u.unpack()
            if not isinstance(name, str):
                raise InvalidArgument("request field names must be strings")
            if name in opaque:
                start = u.tell()
                u.skip()
                piece = raw[start : u.tell()]
                unpack(piece)  # the bounds, UTF-8 and no list keys: it can be read back
                fields[name] = Raw(piece)
            else:
                fields[name] = u.unpack()
        if u.tell() != len(raw):
            raise InvalidArgument("the request has bytes after its msgpack map")
    except InvalidArgument:
        raise
    except Unbounded as e:
        raise InvalidArgument(f"a request field is refused: {e}") from None
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        detail = str(e) or type(e).__name__
        raise InvalidArgument(f"the request is not a msgpack map: {detail}") from None
    return fields


def too_large(op: Operation, size: int) -> bytes:
    """The reply to a request over the operation's cap (its bytes need not be read)."""
    return error_reply(
        TOO_LARGE, f"a {op.name} request is at most {op.max_request_bytes} bytes, got {size}"
    )


def reply_to(op: Operation, inv: Invocation, request: bytes) -> bytes:
    """The msgpack ``[status, value]`` answer to one request."""
    if len(request) > op.max_request_bytes:
        return too_large(op, len(request))
    access = inv.services
    if not isinstance(access, ServiceAccess):
        return error_reply(UNAVAILABLE, "managed services are not available to this invocation")
    try:
        req = decode_request(request, op.opaque)
        return b"\x92\x00" + pack(op.handler(access, req))
    except _ERRORS as e:
        status = next(code for cls, code in _STATUS if isinstance(e, cls))
        return error_reply(status, str(e))
