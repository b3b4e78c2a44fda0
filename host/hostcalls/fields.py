"""Reading the fields of a decoded service request, each with an error naming the field."""

from __future__ import annotations

from typing import Any

from host.errors import InvalidArgument
from host.hostcalls.wire import Raw
from host.services.keys import check_name

MAX_PAGE = 1000


def name(req: dict[str, Any], field: str) -> str:
    return check_name(field, req.get(field))


def opt_bytes(req: dict[str, Any], field: str) -> bytes | None:
    v = req.get(field)
    if v is None:
        return None
    if isinstance(v, str):
        return v.encode()
    if not isinstance(v, bytes):
        raise InvalidArgument(f"'{field}' must be bytes or a string")
    return v


def opt_int(req: dict[str, Any], field: str, default: int | None = None) -> int | None:
    v = req.get(field)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise InvalidArgument(f"'{field}' must be a non-negative integer")
    return v


def limit(req: dict[str, Any]) -> int:
    return min(opt_int(req, "limit", 100) or 100, MAX_PAGE)


def raw(req: dict[str, Any], field: str) -> bytes:
    """An opaque field's msgpack bytes (see ``wire.Operation.opaque``)."""
    value = req.get(field)
    if not isinstance(value, Raw):
        raise InvalidArgument(f"the request needs '{field}'")
    return bytes(value)
