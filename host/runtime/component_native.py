"""The shared Python runtime through wasmtime's component C API, without wasmtime-py's
component layer.

``wasmtime.component`` costs ~18 ms to import (its type classes pull in
``dataclasses``), which a fresh server's first Python request waited for, and it
converts every value of a host call through those classes. The runtime's interface is
small and fixed (``guest_sdk/python/wit/nimbus.wit``: strings, ``u32``, ``s64``), so
Nimbus makes these calls itself: compile, serialize and load a component, link the
host's imports and WASI, instantiate, look up and call an export.

Bytes cross as strings whose characters are the bytes (code points 0 to 255, UTF-8 on
the wire): wasmtime copies and validates a string whole, where it converts a
``list<u8>`` an element at a time (~35 µs per KiB on this machine).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

log = logging.getLogger("nimbus.runtime")

_Val = ffi.wasmtime_component_val_t
Func = ffi.wasmtime_component_func_t
Instance = ffi.wasmtime_component_instance_t
#: a host import as the runtime calls it: the guest's arguments as Python values
#: (``u32``/``s64`` as int, ``string`` as str); its result, or None for none
HostImport = Callable[..., Any]

_STRING = ffi.WASMTIME_COMPONENT_STRING
_STRING_KIND = int(_STRING.value)
_ARG_READERS: dict[int, Callable[[Any], Any]] = {
    int(ffi.WASMTIME_COMPONENT_U32.value): lambda v: v.of.u32,
    int(ffi.WASMTIME_COMPONENT_S64.value): lambda v: v.of.s64,
    _STRING_KIND: lambda v: _string_of(v).decode(),
}
#: result kinds (``wasmtime_component_valtype_kind_t``) -> value kind and union field
_RESULT_WRITERS = {
    int(ffi.WASMTIME_COMPONENT_VALTYPE_U32.value): (ffi.WASMTIME_COMPONENT_U32, "u32"),
    int(ffi.WASMTIME_COMPONENT_VALTYPE_S64.value): (ffi.WASMTIME_COMPONENT_S64, "s64"),
}
_VALTYPE_STRING = int(ffi.WASMTIME_COMPONENT_VALTYPE_STRING.value)
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, ctypes.c_void_p))


class Component:
    """A compiled component (owns the C object; deleted with this)."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr

    @classmethod
    def compile(cls, engine: wasmtime.Engine, wasm: bytes) -> Component:
        ptr = ctypes.POINTER(ffi.wasmtime_component_t)()
        buf = (ctypes.c_uint8 * len(wasm)).from_buffer_copy(wasm)
        _check(ffi.wasmtime_component_new(engine.ptr(), buf, len(wasm), ctypes.byref(ptr)))
        return cls(ptr)

    @classmethod
    def deserialize_file(cls, engine: wasmtime.Engine, path: str) -> Component:
        """Map a serialized component from ``path`` (trusted: see ``cache.py``)."""
        ptr = ctypes.POINTER(ffi.wasmtime_component_t)()
        _check(
            ffi.wasmtime_component_deserialize_file(engine.ptr(), path.encode(), ctypes.byref(ptr))
        )
        return cls(ptr)

    def serialize(self) -> bytes:
        raw = ffi.wasm_byte_vec_t()
        _check(ffi.wasmtime_component_serialize(self.ptr, ctypes.byref(raw)))
        try:
            return ctypes.string_at(ctypes.cast(raw.data, ctypes.c_void_p), raw.size)
        finally:
            ffi.wasm_byte_vec_delete(ctypes.byref(raw))

    def export_index(self, name: str) -> ExportIndex | None:
        """The index of the top-level export ``name``, or None when there is none."""
        raw = name.encode()
        ptr = ffi.wasmtime_component_get_export_index(self.ptr, None, raw, len(raw))
        return ExportIndex(ptr) if ptr else None

    def __del__(self) -> None:
        if self.ptr:
            ffi.wasmtime_component_delete(self.ptr)
            self.ptr = None


class ExportIndex:
    """An export of a component, found once and used for every instance of it."""

    __slots__ = ("ptr",)

    def __init__(self, ptr: Any) -> None:
        self.ptr = ptr

    def __del__(self) -> None:
        if self.ptr:
            ffi.wasmtime_component_export_index_delete(self.ptr)
            self.ptr = None


class Linker:
    """WASI and one instance of host imports, for instantiating components."""

    def __init__(self, engine: wasmtime.Engine, instance: str, imports: dict[str, HostImport]):
        self.ptr: Any = ffi.wasmtime_component_linker_new(engine.ptr())
        self._callbacks: list[Any] = []  # the C side holds only raw pointers
        _check(ffi.wasmtime_component_linker_add_wasip2(self.ptr))
        root = ffi.wasmtime_component_linker_root(self.ptr)
        host = ctypes.POINTER(ffi.wasmtime_component_linker_instance_t)()
        try:
            name = instance.encode()
            _check(
                ffi.wasmtime_component_linker_instance_add_instance(
                    root, name, len(name), ctypes.byref(host)
                )
            )
            for import_name, impl in imports.items():
                callback = ffi.wasmtime_component_func_callback_t(_host_callback(import_name, impl))
                self._callbacks.append(callback)
                raw = import_name.encode()
                _check(
                    ffi.wasmtime_component_linker_instance_add_func(
                        host, raw, len(raw), callback, None, _NO_FINALIZER
                    )
                )
        finally:  # the linker is locked while an instance of it is open
            if host:
                ffi.wasmtime_component_linker_instance_delete(host)
            ffi.wasmtime_component_linker_instance_delete(root)

    def instantiate(self, store: wasmtime.Store, component: Component) -> Any:
        """A new instance of ``component`` in ``store`` (its start functions run)."""
        inst = Instance()
        _check(
            ffi.wasmtime_component_linker_instantiate(
                self.ptr, store._context(), component.ptr, ctypes.byref(inst)
            )
        )
        return inst

    def __del__(self) -> None:
        # (not an explicit close: a thread making instances ahead may still be using
        # it while its owner closes; it goes when the last reference does)
        if self.ptr:
            ffi.wasmtime_component_linker_delete(self.ptr)
            self.ptr = None


def func(store: wasmtime.Store, inst: Any, index: ExportIndex) -> Any | None:
    """The exported function at ``index`` of ``inst``, or None when it is not one."""
    out = Func()
    found = ffi.wasmtime_component_instance_get_func(
        ctypes.byref(inst), store._context(), index.ptr, ctypes.byref(out)
    )
    return out if found else None


def call_text(store: wasmtime.Store, fn: Any, *params: bytes) -> bytes:
    """``fn(*params)`` for an export ``fn(string…) -> string`` whose strings carry
    bytes as characters 0 to 255, then its post-return; a trap or a host import's
    error raises ``WasmtimeError``, a result with another character ``TypeError``."""
    args = (_Val * len(params))()
    lowered = 0
    result = _Val()
    try:
        for i, p in enumerate(params):
            _lower(p.decode("latin-1").encode(), args[i])
            lowered += 1
        _check(
            ffi.wasmtime_component_func_call(
                ctypes.byref(fn), store._context(), args, len(params), ctypes.byref(result), 1
            )
        )
        try:
            return _lift(result)
        finally:
            ffi.wasmtime_component_val_delete(ctypes.byref(result))
            post_return(store, fn)
    finally:
        for i in range(lowered):
            ffi.wasmtime_component_val_delete(ctypes.byref(args[i]))


def call_void(store: wasmtime.Store, fn: Any) -> None:
    """``fn()`` for an export taking and returning nothing, then its post-return."""
    _check(ffi.wasmtime_component_func_call(ctypes.byref(fn), store._context(), None, 0, None, 0))
    post_return(store, fn)


def post_return(store: wasmtime.Store, fn: Any) -> None:
    _check(ffi.wasmtime_component_func_post_return(ctypes.byref(fn), store._context()))


def _host_callback(name: str, impl: HostImport) -> Callable[..., int]:
    def callback(
        _env: Any, _ctx: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int
    ) -> int:
        try:
            values = [_ARG_READERS[int(args[i].kind)](args[i]) for i in range(nargs)]
            out = impl(*values)
            if nresults:
                _write_result(ty, out, results[0])
            return 0
        except BaseException as e:  # nothing may unwind through wasmtime
            if not isinstance(e, Exception):
                log.error("host import %s interrupted: %r", name, e)
            message = f"host import {name} failed: {e}".encode()
            return ctypes.cast(ffi.wasmtime_error_new(message), ctypes.c_void_p).value or 0

    return callback


def _write_result(ty: Any, value: Any, out: Any) -> None:
    valtype = ffi.wasmtime_component_valtype_t()
    if not ffi.wasmtime_component_func_type_result(ty, ctypes.byref(valtype)):
        raise TypeError("the import returns nothing, yet the guest asked for a result")
    try:
        kind = int(valtype.kind)
    finally:
        ffi.wasmtime_component_valtype_delete(ctypes.byref(valtype))
    if kind == _VALTYPE_STRING:
        _lower(value.encode(), out)
        return
    val_kind, field = _RESULT_WRITERS[kind]
    out.kind = val_kind
    setattr(out.of, field, value)


def _string_of(val: Any) -> bytes:
    n = val.of.string.size
    return ctypes.string_at(ctypes.cast(val.of.string.data, ctypes.c_void_p), n) if n else b""


def _lower(wire: bytes, out: Any) -> None:
    raw = ctypes.cast(ctypes.c_char_p(wire), ctypes.POINTER(ctypes.c_ubyte))
    ffi.wasm_byte_vec_new(ctypes.byref(out.of.string), len(wire), raw)  # copies
    out.kind = _STRING


def _lift(val: Any) -> bytes:
    if int(val.kind) != _STRING_KIND:
        raise TypeError(f"the export returned a value of kind {int(val.kind)}, not a string")
    try:  # wasmtime has checked it is UTF-8
        return _string_of(val).decode().encode("latin-1")
    except UnicodeEncodeError:
        raise TypeError("the export returned a string with a character above U+00FF") from None


def _check(err: Any) -> None:
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)
