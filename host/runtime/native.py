"""Thin, fast wrappers over wasmtime's C API for the invocation hot path.

wasmtime-py's high-level ``Func.__call__`` looks up the function's type, converts every
value and routes host-function exceptions through one process-wide slot; per call that
is most of the cost of a small invocation, and the shared slot is unsafe when several
threads invoke at once. The invoke path therefore calls exports with
``wasmtime_func_call_unchecked`` on preallocated raw value arrays, defines host
functions with ``wasmtime_linker_define_func_unchecked``, and keeps a host function's
exception on the invocation that raised it. Everything outside the hot path (compiling,
linking, validation) uses the public wasmtime-py API.

A Zig or C function's whole call (store, instance, exports, event in, handler,
response out, store gone) is one call into ``_wasmcall``, a small C extension built
with the package that calls the same C API from the same library without a ctypes
call per step (a hello's fresh instance + call: 26 µs against 44 through ctypes).
Where it could not be built (no C compiler at install), or with
``NIMBUS_WASMCALL=0``, the same steps run through ctypes here (``wasmcall`` is None).
"""

from __future__ import annotations

import ctypes
import os
import struct
from ctypes import POINTER, byref, c_size_t, c_void_p
from typing import Any, Protocol

import wasmtime
from wasmtime import _ffi as ffi

ValRaw = ffi.wasmtime_val_raw_t
TrapPtr = POINTER(ffi.wasm_trap_t)
#: a host function as wasmtime calls it: ``(env, caller, args_and_results, n)``, the
#: pointers as plain integers (read with ``args``/``set_result``), a trap or 0 back
HostCallback = ctypes.CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_size_t)
_ARG = ctypes.sizeof(ffi.wasmtime_val_raw_t)
_PAIR = struct.Struct(f"<I{_ARG - 4}xI")
_NO_FINALIZER = ctypes.cast(0, ctypes.CFUNCTYPE(None, c_void_p))

# Short calls keep the GIL (a PyDLL view of the same library): releasing and
# re-taking it around a call of a microsecond lets other threads in, and with many
# invocation threads the hand-offs cost more than the calls. Calls that run guest
# code (instantiate, call) release it, so guests run in parallel.
_keep_gil = ctypes.PyDLL(ffi.dll._name, handle=ffi.dll._handle)


#: handles passed around as plain integers (``c_void_p``): ctypes makes no pointer
#: object for each one returned or passed, which on the hot path is ~0.1-1 µs a call
_HANDLES = (
    ffi.wasm_engine_t,
    ffi.wasmtime_store,
    ffi.wasmtime_context,
    ffi.wasmtime_caller,
    ffi.wasmtime_instance_pre,
)


def _as_handle(t: Any) -> Any:
    return c_void_p if getattr(t, "_type_", None) in _HANDLES else t


def _fast(name: str, lib: Any = _keep_gil) -> Any:
    """``name`` typed as wasmtime-py declares it, but with handles as integers; from
    ``lib``: the GIL-keeping view by default, ``ffi.dll`` for calls that run guest code."""
    configured = getattr(ffi.dll, name)
    fn = lib[name]
    fn.restype = _as_handle(configured.restype)
    fn.argtypes = [_as_handle(t) for t in configured.argtypes]
    return fn


_store_new = _fast("wasmtime_store_new")
_store_context = _fast("wasmtime_store_context")
_store_delete = _fast("wasmtime_store_delete")
_store_limiter = _fast("wasmtime_store_limiter")
_set_epoch_deadline = _fast("wasmtime_context_set_epoch_deadline")
_get_data = _fast("wasmtime_context_get_data")
_caller_context = _fast("wasmtime_caller_context")
_pre_instantiate = _fast("wasmtime_instance_pre_instantiate", ffi.dll)
_export_get = _fast("wasmtime_instance_export_get")
_call_unchecked = _fast("wasmtime_func_call_unchecked", ffi.dll)
_memory_data_size = _fast("wasmtime_memory_data_size")
_increment_epoch = _fast("wasmtime_engine_increment_epoch")


def _raw(name: str, restype: Any, argtypes: list[Any]) -> Any:
    """A private handle on a C function, typed to return plain integers for speed."""
    fn = _keep_gil[name]
    fn.restype = restype
    fn.argtypes = argtypes
    return fn


_memory_data = _raw("wasmtime_memory_data", c_void_p, [c_void_p, POINTER(ffi.wasmtime_memory_t)])
_trap_new = _raw("wasmtime_trap_new", c_void_p, [ctypes.c_char_p, c_size_t])
_wasi_config_new = _raw("wasi_config_new", c_void_p, [])
_set_wasi = _raw("wasmtime_context_set_wasi", c_void_p, [c_void_p, c_void_p])

EXTERN_FUNC: int = ffi.WASMTIME_EXTERN_FUNC.value
EXTERN_MEMORY: int = ffi.WASMTIME_EXTERN_MEMORY.value


_TRAP_TEXT = (
    ("wasm trap: interrupt", wasmtime.TrapCode.INTERRUPT),
    ("wasm trap: call stack exhausted", wasmtime.TrapCode.STACK_OVERFLOW),
)


class GuestTrap(Exception):
    """A trap or error that ended a call into the guest (wraps the wasmtime object)."""

    def __init__(self, trap: wasmtime.Trap | wasmtime.WasmtimeError) -> None:
        super().__init__(str(trap))
        self.trap = trap

    @property
    def code(self) -> wasmtime.TrapCode | None:
        if isinstance(self.trap, wasmtime.Trap):
            code: wasmtime.TrapCode | None = self.trap.trap_code
            return code
        # an error (not a trap) may name the trap that caused it
        text = str(self.trap)
        for marker, trap_code in _TRAP_TEXT:
            if marker in text:
                return trap_code
        return None


class NativeStore:
    """One store (one invocation's world), created and deleted without Python wrappers."""

    __slots__ = ("ctx", "key", "ptr")

    def __init__(self, engine_ptr: Any, data: int, memory_cap: int) -> None:
        self.key = data
        self.ptr = _store_new(engine_ptr, data, _NO_FINALIZER)
        self.ctx = _store_context(self.ptr)
        _store_limiter(self.ptr, memory_cap, -1, -1, -1, -1)

    def set_deadline(self, ticks: int) -> None:
        _set_epoch_deadline(self.ctx, ticks)

    def set_memory_cap(self, memory_cap: int) -> None:
        _store_limiter(self.ptr, memory_cap, -1, -1, -1, -1)

    def give_empty_wasi(self) -> None:
        """A WASI world with nothing in it: a clock and randomness; no file, no
        environment, no argument, no standard stream (the Python runtime's libc needs
        its imports; a Zig or C function's module never gets them)."""
        err = _set_wasi(self.ctx, _wasi_config_new())  # the store owns the config
        if err:
            raise GuestTrap(
                wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(ffi.wasmtime_error_t)))
            )

    def close(self) -> None:
        _store_delete(self.ptr)


def instantiate(pre_ptr: Any, ctx: Any) -> Any:
    """A new instance of the InstancePre behind ``pre_ptr`` in the store behind ``ctx``."""
    inst = ffi.wasmtime_instance_t()
    trap = TrapPtr()
    err = _pre_instantiate(pre_ptr, ctx, byref(inst), byref(trap))
    _raise_if_failed(err, trap)
    return inst


def export(ctx: Any, inst: Any, name: bytes, kind: int) -> Any:
    """The export ``name`` of ``inst`` as a raw func or memory, or None when absent."""
    item = ffi.wasmtime_extern_t()
    if not _export_get(ctx, byref(inst), name, len(name), byref(item)) or int(item.kind) != kind:
        return None
    return item.of.func if kind == EXTERN_FUNC else item.of.memory


def call(ctx: Any, func: Any, vals: Any, nvals: int) -> None:
    """Call ``func`` with arguments in ``vals``; results are written back into ``vals``."""
    trap = TrapPtr()
    err = _call_unchecked(ctx, byref(func), vals, nvals, byref(trap))
    if err or trap:
        _raise_if_failed(err, trap)


def memory_view(ctx: Any, memory: Any) -> tuple[int, int]:
    """The current base address and byte size of a linear memory."""
    ref = byref(memory)
    return _memory_data(ctx, ref) or 0, _memory_data_size(ctx, ref)


def increment_epoch(engine_ptr: Any) -> None:
    """Advance the engine's epoch (keeping the GIL: the call takes nanoseconds)."""
    _increment_epoch(engine_ptr)


def store_key(caller: int) -> int:
    """The integer the caller's store was created with (its invocation's key)."""
    if wasmcall is not None:
        key: int = wasmcall.caller_key(caller)
        return key
    return _get_data(_caller_context(caller)) or 0


def pointer_pair(vals: int) -> tuple[int, int]:
    """The two i32 arguments of a host call (``vals`` from ``HostCallback``), unsigned."""
    pair: tuple[int, int] = _PAIR.unpack(ctypes.string_at(vals, _PAIR.size))
    return pair


def args(vals: int, n: int) -> Any:
    """The ``n`` arguments of a host call, as raw values (``.i32``, ``.i64``)."""
    return (ValRaw * n).from_address(vals)


def set_result(vals: int, kind: str, value: int) -> None:
    """Write a host call's result (``i32`` or ``i64``) where wasmtime reads it."""
    slot = ValRaw.from_address(vals)
    if kind == "i32":
        slot.i32 = value
    else:
        slot.i64 = value


def new_trap(message: str) -> int:
    """A trap to return from a host callback, as the integer the C API expects."""
    raw = message.encode()
    return int(_trap_new(raw, len(raw)))


def define_host_func(
    linker: wasmtime.Linker,
    module: str,
    name: str,
    ty: wasmtime.FuncType,
    callback: Any,
) -> None:
    """Define an unchecked host function; the caller keeps ``callback`` alive."""
    m, n = module.encode(), name.encode()
    as_declared = ctypes.cast(callback, ffi.wasmtime_func_unchecked_callback_t)
    err = ffi.dll.wasmtime_linker_define_func_unchecked(
        linker.ptr(), m, len(m), n, len(n), ty.ptr(), as_declared, None, _NO_FINALIZER
    )
    if err:
        raise wasmtime.WasmtimeError._from_ptr(err)


def _raise_if_failed(err: Any, trap: Any) -> None:
    if err or trap:
        raise _failure(err, trap)


def _failure(err: Any, trap: Any) -> GuestTrap:
    """The ``GuestTrap`` of a failed call: its error, else its trap (pointers or
    integers; the wrapper owns and frees them)."""
    if err:
        return GuestTrap(
            wasmtime.WasmtimeError._from_ptr(ctypes.cast(err, POINTER(ffi.wasmtime_error_t)))
        )
    return GuestTrap(wasmtime.Trap._from_ptr(ctypes.cast(trap, TrapPtr)))


def address(pointer: Any) -> int:
    """A C pointer (a ctypes pointer object) as the plain integer the fast calls take."""
    value: int = ctypes.cast(pointer, c_void_p).value or 0
    return value


class Guest(Protocol):
    """A running instance's memory and allocator, as host calls reach them."""

    def memory_view(self) -> tuple[int, int]:
        """The memory's base address and byte size now."""
        ...

    def alloc(self, n: int) -> int:
        """The guest's allocator called for ``n`` bytes: the pointer (0: none)."""
        ...


class CtypesGuest:
    """A ``Guest`` reached through ctypes (the C extension's ``Instance`` is the other)."""

    __slots__ = ("_alloc", "_ctx", "_memory")

    def __init__(self, ctx: Any, memory: Any, alloc: Any) -> None:
        self._ctx, self._memory, self._alloc = ctx, memory, alloc

    def memory_view(self) -> tuple[int, int]:
        return memory_view(self._ctx, self._memory)

    def alloc(self, n: int) -> int:
        """The guest's allocator called for ``n`` bytes: the pointer (0: none)."""
        vals = (ValRaw * 1)()
        vals[0].i32 = n
        call(self._ctx, self._alloc, vals, 1)
        return vals[0].i32 & 0xFFFFFFFF


def _load_wasmcall() -> Any:
    """``_wasmcall`` given wasmtime's functions, or None (not built, or turned off)."""
    if os.environ.get("NIMBUS_WASMCALL", "1") == "0":
        return None
    try:
        from host.runtime import _wasmcall  # type: ignore[attr-defined]
    except ImportError:
        return None
    names = (
        "wasmtime_store_new",
        "wasmtime_store_context",
        "wasmtime_store_limiter",
        "wasmtime_context_set_epoch_deadline",
        "wasmtime_instance_pre_instantiate",
        "wasmtime_instance_export_get",
        "wasmtime_func_call_unchecked",
        "wasmtime_memory_data",
        "wasmtime_memory_data_size",
        "wasmtime_store_delete",
        "wasmtime_caller_context",
        "wasmtime_context_get_data",
        "wasmtime_engine_increment_epoch",
    )
    sizes = (
        ffi.wasmtime_instance_t,
        ffi.wasmtime_func_t,
        ffi.wasmtime_memory_t,
        ffi.wasmtime_extern_t,
        ffi.wasmtime_val_raw_t,
    )
    _wasmcall.setup(
        tuple(address(getattr(ffi.dll, name)) for name in names),
        tuple(ctypes.sizeof(t) for t in sizes),
        _failure,
    )
    return _wasmcall


#: the C extension (``Instance``, ``Refused``, ``caller_key``, ``Ticker``), or None: ctypes
#: only
wasmcall: Any = _load_wasmcall()


__all__ = ["POINTER", "HostCallback", "ValRaw", "c_size_t"]
