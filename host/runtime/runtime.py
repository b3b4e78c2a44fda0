"""Loading modules and running invocations: a fresh store and instance for every call.

``Runtime.load`` turns a .wasm into a ``LoadedFunction`` (compiled once, cached on
disk, checked against the ABI, linked into an ``InstancePre``); ``Runtime.invoke``
runs one event through it in a new store that is deleted afterwards, so nothing a
guest does outlives its invocation. Every limit is the engine's: epoch deadlines for
time, the store limiter for memory, length checks before any copy for payloads.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import wasmtime

from host.errors import (
    AbiError,
    DeployError,
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionTimeout,
    InvocationError,
    NimbusError,
    Overloaded,
    PayloadTooLarge,
    ResponseTooLarge,
)
from host.runtime import abi, native
from host.runtime.cache import ModuleCache
from host.runtime.components import ComponentHost, ComponentImport, is_component
from host.runtime.engine import EngineSettings, EpochTicker, fingerprint, make_engine
from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits

log = logging.getLogger("nimbus.runtime")

_MEMORY = native.EXTERN_MEMORY
_FUNC = native.EXTERN_FUNC
#: a trap with linear memory this close to the cap is reported as out of memory
_OOM_SLACK = 1024 * 1024


@dataclass(frozen=True)
class LoadedFunction:
    """A module linked and ready to instantiate, with the limits it runs under."""

    name: str
    sha256: str
    module: Any  # a wasmtime Module, or a Component for kind "component"
    pre: wasmtime.InstancePre | None
    limits: Limits
    cache_hit: bool
    kind: str = "module"
    #: the InstancePre's C pointer, looked up once (``pre.ptr()`` checks on every call)
    pre_ptr: Any = None


class Runtime:
    """The wasmtime side of Nimbus: one engine, its module cache and its host imports."""

    def __init__(
        self,
        cache_dir: Path,
        host_functions: Iterable[HostFunction],
        settings: EngineSettings | None = None,
        time_scale: float = 1.0,
        component_imports: dict[str, ComponentImport] | None = None,
    ) -> None:
        settings = settings or EngineSettings()
        self.engine = make_engine(settings)
        self._engine_ptr = self.engine.ptr()
        self.fingerprint = fingerprint(settings)
        self.cache = ModuleCache(cache_dir, self.engine, self.fingerprint)
        self._ticker = EpochTicker(self.engine, time_scale=time_scale)
        self._cache_dir = cache_dir
        self._settings = settings
        self._time_scale = time_scale
        self._component_imports = component_imports or {}
        self._component_host: ComponentHost | None = None
        self._component_lock = threading.Lock()
        self._linker = wasmtime.Linker(self.engine)
        self._live: dict[int, Invocation] = {}
        self._ids = itertools.count(1)
        self._callbacks: list[Any] = []
        self.host_functions: dict[tuple[str, str], HostFunction] = {}
        for hf in host_functions:
            self._define(hf)

    def close(self) -> None:
        self._ticker.stop()
        if self._component_host is not None:
            self._component_host.close()

    def _components(self) -> ComponentHost:
        with self._component_lock:
            if self._component_host is None:
                self._component_host = ComponentHost(
                    self._cache_dir,
                    self._component_imports,
                    self._time_scale,
                    self._settings.max_wasm_stack,
                )
            return self._component_host

    # --- host functions ------------------------------------------------------------

    def _define(self, hf: HostFunction) -> None:
        self.host_functions[(hf.module, hf.name)] = hf
        callback = native.HostCallback(self._trampoline(hf))
        self._callbacks.append(callback)  # the C side holds only a raw pointer
        native.define_host_func(self._linker, hf.module, hf.name, hf.func_type(), callback)

    def _trampoline(self, hf: HostFunction) -> Any:
        impl = hf.impl
        live = self._live
        fields = ["i32" if p == "i32" else "i64" for p in hf.params]
        unsigned = [p == "i32" for p in hf.params]
        result = hf.results[0] if hf.results else None
        arity = range(len(fields))
        pointer_pair = hf.params == ("i32", "i32")

        def trampoline(_env: Any, caller: Any, vals: Any, _n: int) -> int:
            ctx, key = native.store_data(caller)
            inv = live[key]
            inv.enter(ctx)
            try:
                if pointer_pair:  # (ptr, len): every service import and most others
                    out = impl(inv, vals[0].i32 & 0xFFFFFFFF, vals[1].i32 & 0xFFFFFFFF)
                else:
                    args = []
                    for i in arity:
                        v = getattr(vals[i], fields[i])
                        args.append(v & 0xFFFFFFFF if unsigned[i] else v)
                    out = impl(inv, *args)
                if result == "i32":
                    vals[0].i32 = out
                elif result == "i64":
                    vals[0].i64 = out
                return 0
            except native.GuestTrap as t:
                # a trap inside a call back into the guest (e.g. its allocator)
                inv.error = inv.error or _classify(t, inv.function)
            except NimbusError as e:
                inv.error = e
            except BaseException as e:
                log.exception("host function %s failed", hf.name)
                inv.error = FunctionCrashed(f"host function {hf.name} failed: {e!r}")
            return native.new_trap(str(inv.error))

        return trampoline

    # --- loading -------------------------------------------------------------------

    def load(
        self, name: str, wasm: bytes, limits: Limits | None = None, verify: bool = True
    ) -> LoadedFunction:
        """Compile (or load from the cache), check against the ABI, and link ``wasm``."""
        limits = limits or Limits()
        if is_component(wasm):
            host = self._components()
            component, sha, hit = host.load(wasm)
            if verify:  # a deployed component was checked when it was deployed
                host.check(name, component, limits)
            return LoadedFunction(name, sha, component, None, limits, hit, kind="component")
        cached = self.cache.load(wasm)
        abi.check_imports(cached.module, self.host_functions)
        abi.check_exports(cached.module)
        try:
            pre = self._linker.instantiate_pre(cached.module)
        except wasmtime.WasmtimeError as e:
            raise DeployError(f"module could not be linked: {e}") from e
        fn = LoadedFunction(
            name, cached.sha256, cached.module, pre, limits, cached.cache_hit, pre_ptr=pre.ptr()
        )
        self._check_version(fn)
        return fn

    def load_file(self, name: str, path: Path, limits: Limits | None = None) -> LoadedFunction:
        return self.load(name, path.read_bytes(), limits)

    def _check_version(self, fn: LoadedFunction) -> None:
        inv = Invocation(request_id="deploy-check", function=fn.name)
        try:
            with self._instance(fn, inv) as (ctx, inst):
                func = native.export(ctx, inst, abi.EXPORT_VERSION.encode(), _FUNC)
                vals = (native.ValRaw * 1)()
                native.call(ctx, func, vals, 1)
                version = vals[0].i32
        except native.GuestTrap as t:
            raise DeployError(f"module failed to start: {t}") from None
        except InvocationError as e:
            raise DeployError(f"module failed to start: {e}") from None
        if version != abi.ABI_VERSION:
            raise DeployError(
                f"module was built for Nimbus ABI version {version}; this host serves "
                f"version {abi.ABI_VERSION} (rebuild it with the current SDK)"
            )

    # --- invoking ------------------------------------------------------------------

    def invoke(
        self, fn: LoadedFunction, event: bytes, inv: Invocation, timeout_s: float | None = None
    ) -> dict[str, Any]:
        """Run ``event`` (msgpack) through a fresh instance of ``fn``; the decoded response."""
        limits = fn.limits
        if fn.kind == "component":
            return self._components().invoke(
                fn.name, fn.module, limits, event, inv, timeout_s, _classify
            )
        if len(event) > limits.max_request_bytes:
            raise PayloadTooLarge(
                f"event is {len(event)} bytes; function {fn.name} accepts at most "
                f"{limits.max_request_bytes}"
            )
        with _FreshInstance(self, fn, inv, timeout_s) as (ctx, inst):
            try:
                raw = self._call_handler(fn, ctx, inst, event, inv)
            except native.GuestTrap as t:
                if inv.error is not None:
                    raise inv.error from None
                err = _classify(t, fn.name)
                size = _memory_size(ctx, inv)
                raise _classify_memory(err, size, limits.memory_bytes, fn.name) from None
        return _decode_response(raw, fn.name)

    def _call_handler(
        self, fn: LoadedFunction, ctx: Any, inst: Any, event: bytes, inv: Invocation
    ) -> bytes:
        memory = native.export(ctx, inst, b"memory", _MEMORY)
        alloc = native.export(ctx, inst, b"nimbus_alloc", _FUNC)
        handle = native.export(ctx, inst, b"nimbus_handle", _FUNC)
        inv.bind(ctx, memory, alloc)
        vals = (native.ValRaw * 2)()
        vals[0].i32 = len(event)
        native.call(ctx, alloc, vals, 1)
        ptr = vals[0].i32 & 0xFFFFFFFF
        base, size = native.memory_view(ctx, memory)
        if ptr == 0:
            raise FunctionOutOfMemory(
                f"function {fn.name} could not allocate {len(event)} bytes for its event"
            )
        if ptr + len(event) > size:
            raise AbiError(f"nimbus_alloc returned {ptr}, outside the {size}-byte memory")
        ctypes.memmove(base + ptr, event, len(event))
        vals[0].i32 = ptr
        vals[1].i32 = len(event)
        native.call(ctx, handle, vals, 2)
        rptr, rlen = abi.split_result(vals[0].i64)
        if rlen > fn.limits.max_response_bytes:
            raise ResponseTooLarge(
                f"function {fn.name} returned {rlen} bytes; its response cap is "
                f"{fn.limits.max_response_bytes}"
            )
        base, size = native.memory_view(ctx, memory)
        if rptr + rlen > size:
            raise AbiError(
                f"nimbus_handle returned response {rptr}+{rlen}, outside the {size}-byte memory"
            )
        return ctypes.string_at(base + rptr, rlen)

    def _instance(self, fn: LoadedFunction, inv: Invocation) -> _FreshInstance:
        return _FreshInstance(self, fn, inv)

    def reused_instance(self, fn: LoadedFunction, inv: Invocation) -> ReusedInstance:
        """One instance called many times: what Nimbus does *not* do, kept so that
        ``bench/`` can show the price of a fresh instance per call next to it."""
        return ReusedInstance(self, fn, inv)


class ReusedInstance:
    """A single store and instance kept across calls (benchmark reference only)."""

    def __init__(self, rt: Runtime, fn: LoadedFunction, inv: Invocation) -> None:
        self._rt, self._fn, self._inv = rt, fn, inv
        self._fresh = _FreshInstance(rt, fn, inv)
        self._ctx, self._inst = self._fresh.__enter__()

    def call(self, event: bytes) -> dict[str, Any]:
        raw = self._rt._call_handler(self._fn, self._ctx, self._inst, event, self._inv)
        return _decode_response(raw, self._fn.name)

    def close(self) -> None:
        self._fresh.__exit__(None, None, None)


class _FreshInstance:
    """A new store and instance for one call, deleted on exit whatever happened."""

    __slots__ = ("fn", "inv", "key", "rt", "store", "timeout_s")

    def __init__(
        self, rt: Runtime, fn: LoadedFunction, inv: Invocation, timeout_s: float | None = None
    ) -> None:
        self.rt, self.fn, self.inv = rt, fn, inv
        self.timeout_s = fn.limits.timeout_s if timeout_s is None else timeout_s

    def __enter__(self) -> tuple[Any, Any]:
        rt, fn = self.rt, self.fn
        self.key = next(rt._ids)
        rt._live[self.key] = self.inv
        self.store = native.NativeStore(rt._engine_ptr, self.key, fn.limits.memory_bytes)
        try:
            self.store.set_deadline(rt._ticker.ticks_for(self.timeout_s))
            assert fn.pre_ptr is not None, "components are instantiated by the ComponentHost"
            inst = native.instantiate(fn.pre_ptr, self.store.ctx)
        except native.GuestTrap as t:
            self._close()
            raise _instantiate_error(t, fn) from None
        return self.store.ctx, inst

    def __exit__(self, *exc: object) -> None:
        self._close()

    def _close(self) -> None:
        self.store.close()
        del self.rt._live[self.key]


def _memory_size(ctx: Any, inv: Invocation) -> int | None:
    if inv._memory is None:
        return None
    return native.memory_view(ctx, inv._memory)[1]


def _classify(t: native.GuestTrap, name: str) -> InvocationError:
    code = t.code
    if code == wasmtime.TrapCode.INTERRUPT:
        return FunctionTimeout(f"function {name} ran past its time limit and was stopped")
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return FunctionCrashed(f"function {name} crashed: stack overflow (call stack exhausted)")
    return FunctionCrashed(f"function {name} crashed: {_trap_message(t)}")


def _classify_memory(
    err: InvocationError, memory_size: int | None, cap: int, name: str
) -> InvocationError:
    if (
        isinstance(err, FunctionCrashed)
        and memory_size is not None
        and memory_size + _OOM_SLACK >= cap
    ):
        return FunctionOutOfMemory(
            f"function {name} ran out of memory: it reached its {cap // (1024 * 1024)} MiB cap"
        )
    return err


def _trap_message(t: native.GuestTrap) -> str:
    """The reason of a trap without wasmtime's backtrace ("wasm trap: …" after "Caused by")."""
    msg = str(t).strip()
    if "Caused by:" in msg:
        msg = msg.rsplit("Caused by:", 1)[1].strip()
    lines = [line.strip() for line in msg.splitlines() if line.strip()]
    return lines[-1] if lines else "trap"


def _instantiate_error(t: native.GuestTrap, fn: LoadedFunction) -> InvocationError:
    if "concurrent" in str(t) and "limit" in str(t):
        return Overloaded(
            f"function {fn.name} cannot start: every instance slot of this host is in use; "
            "retry later"
        )
    if "memory" in str(t) and ("limit" in str(t) or "minimum" in str(t)):
        return FunctionOutOfMemory(
            f"function {fn.name} needs more memory than its {fn.limits.memory_bytes}-byte cap"
        )
    return _classify(t, fn.name)


def _decode_response(raw: bytes, name: str) -> dict[str, Any]:
    try:
        value = msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as e:
        raise AbiError(f"function {name} returned a response that is not msgpack: {e}") from None
    if not isinstance(value, dict):
        raise AbiError(
            f"function {name} returned a msgpack {type(value).__name__}; the response must be a map"
        )
    return value
