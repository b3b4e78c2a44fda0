"""The host's imports, as the generated bindings expose them (bytes cross as strings
of characters U+0000 to U+00FF, one per byte: see nimbus.wit)."""

from wit_world.imports import host as _host


def log(level: int, message: str) -> None:
    _host.log(level, message)


def now_ns() -> int:
    """Wall-clock time, nanoseconds since the Unix epoch."""
    return _host.now()


def random_bytes(n: int) -> bytes:
    """``n`` bytes from the host's CSPRNG."""
    out = b""
    while len(out) < n:
        out += _host.random_bytes(min(n - len(out), 65536)).encode("latin-1")
    return out


def call(op: str, request: bytes) -> bytes:
    return _host.call(op, request.decode("latin-1")).encode("latin-1")
