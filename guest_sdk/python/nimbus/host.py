"""The host's imports, as the runtime's built-in module ``_nimbus`` exposes them (its C
side calls the ``nimbus`` imports of the core ABI: see guest_sdk/python/runtime)."""

import _nimbus

from nimbus import _pack

#: status ``invalid`` of a service reply (guest_sdk/ABI.md)
_INVALID = 2


def log(level: int, message: str) -> None:
    _nimbus.log(level, message.encode("utf-8", "replace"))


def now_ns() -> int:
    """Wall-clock time, nanoseconds since the Unix epoch."""
    return _nimbus.now()


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the host's CSPRNG."""
    out = b""
    while len(out) < n:
        out += _nimbus.random_bytes(min(n - len(out), 65536))
    return out


def call(op: str, request: bytes) -> bytes:
    try:
        return _nimbus.call(op, request)
    except LookupError:
        return _pack.packb([_INVALID, f"no service operation named {op[:64]!r}"])
