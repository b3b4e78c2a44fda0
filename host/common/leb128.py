"""LEB128, the variable-length integers of the WebAssembly binary format (section sizes,
counts, offsets): written and read by the Python bundle and by the snapshot step
(``host/runtime/snapshot.py``)."""

from __future__ import annotations

#: a u32 or an i32 takes at most this many bytes
MAX_BYTES = 5


def encode(n: int) -> bytes:
    """``n`` (unsigned) in LEB128."""
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def read(data: bytes, at: int) -> tuple[int, int]:
    """The unsigned 32-bit LEB128 at ``data[at]`` and the position after it; a
    ``ValueError`` for one that runs past the end or over five bytes."""
    value, at, _ = _read(data, at)
    return value, at


def read_signed(data: bytes, at: int) -> tuple[int, int]:
    """The signed 32-bit LEB128 at ``data[at]`` and the position after it."""
    value, at, shift = _read(data, at)
    if data[at - 1] & 0x40:
        value -= 1 << shift
    return value, at


def _read(data: bytes, at: int) -> tuple[int, int, int]:
    value = shift = 0
    for _ in range(MAX_BYTES):
        if at >= len(data):
            break
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if not byte & 0x80:
            return value, at, shift
    raise ValueError("bad LEB128 number")
