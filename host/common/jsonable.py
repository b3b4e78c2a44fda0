"""Turning decoded msgpack (which may hold bytes) into something JSON can carry.

Bytes that are UTF-8 become strings; other bytes become ``{"$bytes_hex": "…"}`` so
that nothing is lost or silently mangled on the way to an admin client.
"""

from __future__ import annotations

from typing import Any


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return {"$bytes_hex": value.hex()}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value
