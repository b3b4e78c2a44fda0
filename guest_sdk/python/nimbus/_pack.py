"""A handler's result as msgpack, in one small function for the shapes results take.

The guest has no C extensions, so ``msgpack.packb`` is msgpack's pure-Python Packer:
it builds a buffer object and walks a long ``isinstance`` ladder for every value, and
in a fresh instance every object and page it touches is touched for the first time
(about a tenth of a small call). ``packb`` here encodes exactly the types a response
is made of (None, bool, int, float, str, bytes, bytearray, list, tuple, dict), byte
for byte as ``msgpack.packb(value, use_bin_type=True)`` does; on anything else (a
subclass, a set, a dataclass, an int out of range, nesting deeper than msgpack's
limit, a string that is not UTF-8) it raises ``Unsupported`` and the caller hands the
whole value to msgpack, which converts it or reports the error it always did.
"""

from __future__ import annotations

from struct import Struct

#: msgpack's own nesting limit (``DEFAULT_RECURSE_LIMIT``)
NEST_LIMIT = 1024
_U16 = Struct(">BH").pack
_U32 = Struct(">BI").pack
_U64 = Struct(">BQ").pack
_S8 = Struct(">Bb").pack
_S16 = Struct(">Bh").pack
_S32 = Struct(">Bi").pack
_S64 = Struct(">Bq").pack
_F64 = Struct(">Bd").pack


class Unsupported(Exception):
    """The value holds something only msgpack's own encoder handles."""


def packb(value: object) -> bytes:
    out = bytearray()
    _pack(value, out, NEST_LIMIT)
    return bytes(out)


def _pack(v: object, out: bytearray, limit: int) -> None:
    if limit < 0:
        raise Unsupported
    t = type(v)
    if t is str:
        try:
            b = v.encode()
        except UnicodeEncodeError:
            raise Unsupported from None
        n = len(b)
        if n < 0x20:
            out.append(0xA0 | n)
        else:
            _sized(n, 0xD9, out)
        out += b
    elif t is dict:
        n = len(v)
        _header(n, 0x80, 0xDE, out)
        for key, item in v.items():
            _pack(key, out, limit - 1)
            _pack(item, out, limit - 1)
    elif t is bytes or t is bytearray:
        _sized(len(v), 0xC4, out)
        out += v
    elif v is None:
        out.append(0xC0)
    elif t is bool:
        out.append(0xC3 if v else 0xC2)
    elif t is int:
        _int(v, out)
    elif t is list or t is tuple:
        _header(len(v), 0x90, 0xDC, out)
        for item in v:
            _pack(item, out, limit - 1)
    elif t is float:
        out += _F64(0xCB, v)
    else:
        raise Unsupported


def _sized(n: int, tag8: int, out: bytearray) -> None:
    """A string's or a binary's length (``tag8 + 1`` and ``+ 2``: the 16- and 32-bit forms)."""
    if n < 0x100:
        out += bytes((tag8, n))
    elif n < 0x10000:
        out += _U16(tag8 + 1, n)
    elif n < 0x100000000:
        out += _U32(tag8 + 2, n)
    else:
        raise Unsupported


def _header(n: int, fix: int, tag16: int, out: bytearray) -> None:
    """An array's or a map's header (``tag16 + 1`` is the 32-bit form)."""
    if n < 0x10:
        out.append(fix | n)
    elif n < 0x10000:
        out += _U16(tag16, n)
    elif n < 0x100000000:
        out += _U32(tag16 + 1, n)
    else:
        raise Unsupported


def _int(v: int, out: bytearray) -> None:
    if 0 <= v < 0x80:
        out.append(v)
    elif -0x20 <= v < 0:
        out.append(v & 0xFF)
    elif 0 < v <= 0xFF:
        out += bytes((0xCC, v))
    elif -0x80 <= v < 0:
        out += _S8(0xD0, v)
    elif 0 < v <= 0xFFFF:
        out += _U16(0xCD, v)
    elif -0x8000 <= v < 0:
        out += _S16(0xD1, v)
    elif 0 < v <= 0xFFFFFFFF:
        out += _U32(0xCE, v)
    elif -0x80000000 <= v < 0:
        out += _S32(0xD2, v)
    elif 0 < v <= 0xFFFFFFFFFFFFFFFF:
        out += _U64(0xCF, v)
    elif -0x8000000000000000 <= v < 0:
        out += _S64(0xD3, v)
    else:
        raise Unsupported
