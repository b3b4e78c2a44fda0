"""Calling a component export that takes and returns bytes, without a copy per byte.

wasmtime-py lowers a ``list<u8>`` one element at a time through ctypes (a few
microseconds per byte: a 1 KiB code bundle cost milliseconds per call). The C API's
value is a 32-byte tagged union per element, so the whole list can be laid out with
two strided slice assignments and one ``memmove``, and read back with one
``string_at``; this module does that and calls ``wasmtime_component_func_call``
itself (``call_bytes``). Even so wasmtime converts and stores a list one element at a
time (~35 µs per KiB on this machine), where a ``string`` is validated and copied
whole: ``call_text`` hands bytes to an export that takes and returns them as strings
whose characters are the bytes (code points 0 to 255, UTF-8 on the wire), the shape
of the Python runtime's ``handle``. Only these two shapes are supported.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_Val = ffi.wasmtime_component_val_t
_SIZE = ctypes.sizeof(_Val)
_OF = _Val.of.offset
_U8 = int(ffi.WASMTIME_COMPONENT_U8.value)
_LIST = ffi.WASMTIME_COMPONENT_LIST
_LIST_KIND = int(_LIST.value)
_STRING = ffi.WASMTIME_COMPONENT_STRING
_STRING_KIND = int(_STRING.value)


def _lower(data: bytes, out: Any) -> None:
    n = len(data)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(ctypes.byref(raw), n)
    if n:
        buf = bytearray(n * _SIZE)
        buf[0::_SIZE] = bytes((_U8,)) * n
        buf[_OF::_SIZE] = data
        ctypes.memmove(raw.data, (ctypes.c_char * len(buf)).from_buffer(buf), len(buf))
    out.kind = _LIST
    out.of.list = raw


def _lower_text(data: bytes, out: Any) -> None:
    wire = data.decode("latin-1").encode()
    raw = ctypes.cast(ctypes.c_char_p(wire), ctypes.POINTER(ctypes.c_ubyte))
    ffi.wasm_byte_vec_new(ctypes.byref(out.of.string), len(wire), raw)  # copies
    out.kind = _STRING


def _lift_text(val: Any) -> bytes:
    if int(val.kind) != _STRING_KIND:
        raise TypeError(f"the export returned a value of kind {int(val.kind)}, not a string")
    n = val.of.string.size
    wire = ctypes.string_at(ctypes.cast(val.of.string.data, ctypes.c_void_p), n) if n else b""
    try:  # wasmtime has checked it is UTF-8
        return wire.decode().encode("latin-1")
    except UnicodeEncodeError:
        raise TypeError("the export returned a string with a character above U+00FF") from None


def _lift(val: Any) -> bytes:
    if int(val.kind) != _LIST_KIND:
        raise TypeError(f"the export returned a value of kind {int(val.kind)}, not a list")
    n = val.of.list.size
    if n == 0:
        return b""
    flat = ctypes.string_at(ctypes.cast(val.of.list.data, ctypes.c_void_p), n * _SIZE)
    kinds = flat[0::_SIZE]
    if kinds.count(_U8) != n:
        raise TypeError("the export returned a list that is not list<u8>")
    return flat[_OF::_SIZE]


def call_bytes(store: wasmtime.Store, func: Any, *params: bytes) -> bytes:
    """``func(*params)`` for an export ``func(list<u8>…) -> list<u8>``, then its
    post-return; a trap raises as wasmtime-py's own call would."""
    return _call(store, func, params, _lower, _lift)


def call_text(store: wasmtime.Store, func: Any, *params: bytes) -> bytes:
    """``func(*params)`` for an export ``func(string…) -> string`` whose strings carry
    bytes as characters 0 to 255; ``TypeError`` if the result has another character."""
    return _call(store, func, params, _lower_text, _lift_text)


def _call(
    store: wasmtime.Store,
    func: Any,
    params: tuple[bytes, ...],
    lower: Callable[[bytes, Any], None],
    lift: Callable[[Any], bytes],
) -> bytes:
    # imported here: a host that serves no Python function never loads the component API
    from wasmtime.component._enter import enter_wasm

    args = (_Val * len(params))()
    lowered = 0
    result = _Val()
    try:
        for i, p in enumerate(params):
            lower(p, args[i])
            lowered += 1

        def run() -> Any:
            return ffi.wasmtime_component_func_call(
                ctypes.byref(func._func),
                store._context(),
                args,
                len(params),
                ctypes.byref(result),
                1,
            )

        enter_wasm(run)
        try:
            return lift(result)
        finally:
            ffi.wasmtime_component_val_delete(ctypes.byref(result))
            func.post_return(store)
    finally:
        for i in range(lowered):
            ffi.wasmtime_component_val_delete(ctypes.byref(args[i]))
