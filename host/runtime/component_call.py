"""Calling a component export that takes and returns bytes, without a copy per byte.

wasmtime-py lowers a ``list<u8>`` one element at a time through ctypes (a few
microseconds per byte: a 1 KiB code bundle cost milliseconds per call). The C API's
value is a 32-byte tagged union per element, so the whole list can be laid out with
two strided slice assignments and one ``memmove``, and read back with one
``string_at``; this module does that and calls ``wasmtime_component_func_call``
itself. Only ``list<u8>`` parameters and a ``list<u8>`` result are supported: that is
the shape of the Python runtime's exports.
"""

from __future__ import annotations

import ctypes
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

_Val = ffi.wasmtime_component_val_t
_SIZE = ctypes.sizeof(_Val)
_OF = _Val.of.offset
_U8 = int(ffi.WASMTIME_COMPONENT_U8.value)
_LIST = ffi.WASMTIME_COMPONENT_LIST
_LIST_KIND = int(_LIST.value)


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
