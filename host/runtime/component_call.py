"""Calling a component export that takes and returns bytes, without a copy per byte.

wasmtime-py lowers a ``list<u8>`` one element at a time through ctypes (a few
microseconds per byte: a 1 KiB code bundle cost milliseconds per call), and even laid
out in bulk wasmtime converts and stores a list an element at a time (~35 µs per KiB
on this machine), where a ``string`` is validated and copied whole. So the Python
runtime's exports take and return strings whose characters are the bytes (code
points 0 to 255, UTF-8 on the wire), and ``call_text`` makes such a call through
``wasmtime_component_func_call`` itself, without wasmtime-py's per-value type
inspection.
"""

from __future__ import annotations

import ctypes
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_Val = ffi.wasmtime_component_val_t
_STRING = ffi.WASMTIME_COMPONENT_STRING
_STRING_KIND = int(_STRING.value)


def _lower(data: bytes, out: Any) -> None:
    wire = data.decode("latin-1").encode()
    raw = ctypes.cast(ctypes.c_char_p(wire), ctypes.POINTER(ctypes.c_ubyte))
    ffi.wasm_byte_vec_new(ctypes.byref(out.of.string), len(wire), raw)  # copies
    out.kind = _STRING


def _lift(val: Any) -> bytes:
    if int(val.kind) != _STRING_KIND:
        raise TypeError(f"the export returned a value of kind {int(val.kind)}, not a string")
    n = val.of.string.size
    wire = ctypes.string_at(ctypes.cast(val.of.string.data, ctypes.c_void_p), n) if n else b""
    try:  # wasmtime has checked it is UTF-8
        return wire.decode().encode("latin-1")
    except UnicodeEncodeError:
        raise TypeError("the export returned a string with a character above U+00FF") from None


def call_text(store: wasmtime.Store, func: Any, *params: bytes) -> bytes:
    """``func(*params)`` for an export ``func(string…) -> string`` whose strings carry
    bytes as characters 0 to 255, then its post-return; a trap raises as wasmtime-py's
    own call would, a result with another character raises ``TypeError``."""
    # imported here: a host that serves no Python function never loads the component API
    from wasmtime.component._enter import enter_wasm

    args = (_Val * len(params))()
    lowered = 0
    result = _Val()
    try:
        for i, p in enumerate(params):
            _lower(p, args[i])
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
            return _lift(result)
        finally:
            ffi.wasmtime_component_val_delete(ctypes.byref(result))
            func.post_return(store)
    finally:
        for i in range(lowered):
            ffi.wasmtime_component_val_delete(ctypes.byref(args[i]))
