"""Loading modules and running invocations: a fresh store and instance for every call.

``Runtime.load`` turns a .wasm into a ``LoadedFunction`` (compiled once, cached on
disk, checked against the ABI, linked into an ``InstancePre``); ``Runtime.invoke``
runs one event through it in a new store that is deleted afterwards, so nothing a
guest does outlives its invocation. Every limit is the engine's: epoch deadlines for
time, the store limiter for memory, length checks before any copy for payloads. The
response is decoded under bounds and checked whole (``response.py``) before it is
returned, so the platform commits nothing for a response no caller could receive.

Checks that run guest code (the ABI version export, the start function) run at
deploy only (``verify=True``): a cold load of a deployed module never re-runs them,
so a start function that times out or traps is a ``FunctionTimeout`` or
``FunctionCrashed`` of the invocation, never a ``DeployError`` on a public route.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import wasmtime

from host.common.python_bundle import is_python_bundle
from host.errors import DeployError, FunctionCrashed, InvocationError, NimbusError, PayloadTooLarge
from host.runtime import abi, native, python, response, wasi
from host.runtime.cache import ModuleCache
from host.runtime.engine import EngineSettings, EpochTicker, fingerprint, make_engine
from host.runtime.imports import HostFunction
from host.runtime.instance import (
    FreshInstance,
    Instances,
    call_failed,
    call_handler,
    memory_size,
)
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits
from host.runtime.loaded import LoadedFunction
from host.runtime.priority import Demoter
from host.runtime.snapshot_memory import SnapshotMemories
from host.runtime.traps import classify

log = logging.getLogger("nimbus.runtime")

_FUNC = native.EXTERN_FUNC


class Runtime:
    """The wasmtime side of Nimbus: one engine, its module cache and its host imports."""

    def __init__(
        self,
        cache_dir: Path,
        host_functions: Iterable[HostFunction],
        settings: EngineSettings | None = None,
        time_scale: float = 1.0,
        python_runtime: Callable[[], Path] | None = None,
        python_instances: str = "made_ahead",
    ) -> None:
        """``python_runtime``: the path of the shared Python runtime (built first if
        need be), or None for a host without Python functions; ``python_instances``:
        how its instances are made: ``made_ahead`` (and warmed), ``made_ahead_unwarmed``
        or ``inline`` (see ``python.PythonRuntime``)."""
        settings = settings or EngineSettings()
        self.engine = make_engine(settings)
        self.fingerprint = fingerprint(settings)
        self.cache = ModuleCache(cache_dir, self.engine, self.fingerprint)
        self._ticker = EpochTicker(self.engine, time_scale=time_scale)
        self.instances = Instances(self._ticker)
        self._engine_ptr = native.address(self.engine.ptr())
        self.demoter = Demoter()
        self._settings = settings
        self._cache_dir = cache_dir
        self._python_runtime = python_runtime
        self._python_instances = python_instances
        self._python: python.PythonRuntime | None = None
        self._python_lock = threading.Lock()
        self._linker = wasmtime.Linker(self.engine)
        self._callbacks: list[Any] = []
        self.host_functions: dict[tuple[str, str], HostFunction] = {
            (hf.module, hf.name): hf for hf in host_functions
        }
        for hf in self.host_functions.values():
            self._define(hf, self._linker)

    def close(self) -> None:
        if self._python is not None:
            self._python.close()
        self._ticker.stop()
        self.demoter.stop()

    def python(self) -> python.PythonRuntime:
        """The shared Python runtime (made on first use; ``start()`` loads it)."""
        with self._python_lock:
            if self._python is None:
                if self._python_runtime is None:
                    raise DeployError("this host runs no Python functions (no Python runtime)")
                # an engine of its own: instances on demand, memories from slots of
                # the snapshot reset page by page (``snapshot_memory.py``)
                settings = msgspec.structs.replace(self._settings, pooling=False)
                memories = SnapshotMemories(settings.max_instances)
                config = settings.config()
                memories.install(config)
                engine = wasmtime.Engine(config)
                self._ticker.add(engine)
                linker = wasmtime.Linker(engine)  # the same imports, and WASI for its libc
                linker.define_wasi()
                for hf in self.host_functions.values():
                    self._define(hf, linker)
                linker.allow_shadowing = True  # wasmtime's WASI, bounded where it waits
                for hf in wasi.FUNCTIONS:
                    self._define(hf, linker)
                mode = self._python_instances
                self._python = python.PythonRuntime(
                    ModuleCache(self._cache_dir, engine, fingerprint(settings)),
                    linker,
                    self.instances,
                    engine,
                    memories,
                    self._python_runtime,
                    make_ahead=mode != "inline",
                    warm_ahead=mode == "made_ahead",
                )
            return self._python

    # --- host functions ------------------------------------------------------------

    def _define(self, hf: HostFunction, linker: wasmtime.Linker) -> None:
        callback = native.HostCallback(self._trampoline(hf))
        self._callbacks.append(callback)  # the C side holds only a raw pointer
        native.define_host_func(linker, hf.module, hf.name, hf.func_type(), callback)

    def _trampoline(self, hf: HostFunction) -> Any:
        impl = hf.impl
        live = self.instances.live
        fields = ["i32" if p == "i32" else "i64" for p in hf.params]
        unsigned = [p == "i32" for p in hf.params]
        result = hf.results[0] if hf.results else None
        n_args = len(fields)
        arity = range(n_args)
        pointer_pair = hf.params == ("i32", "i32")
        name = f"hostcall {hf.name}"

        demoter = self.demoter

        def trampoline(_env: Any, caller: Any, vals: Any, _n: int) -> int:
            demoter.wake()
            inv = live[native.store_key(caller)]
            inv.host_calls += 1
            spans = inv.spans
            if spans is not None:  # tracing on: the host call is a child span
                scope = spans(name)
                scope.__enter__()
            try:
                if pointer_pair:  # (ptr, len): every service import and most others
                    out = impl(inv, *native.pointer_pair(vals))
                else:
                    raw = native.args(vals, n_args) if n_args else ()
                    args = []
                    for i in arity:
                        v = getattr(raw[i], fields[i])
                        args.append(v & 0xFFFFFFFF if unsigned[i] else v)
                    out = impl(inv, *args)
                if result is not None:
                    native.set_result(vals, result, out)
                return 0
            except native.GuestTrap as t:
                # a trap inside a call back into the guest (e.g. its allocator)
                inv.error = inv.error or classify(t, inv.function)
            except NimbusError as e:
                inv.error = e
            except BaseException:
                # a bug of the host's: logged with its traceback here, never shown
                log.exception("[%s] host function %s failed", inv.request_id, hf.name)
                inv.error = FunctionCrashed(
                    f"function {inv.function} stopped: the host import {hf.name} failed "
                    f"(request {inv.request_id})"
                )
            finally:
                if spans is not None:
                    scope.__exit__(None, None, None)
            return native.new_trap(str(inv.error))

        return trampoline

    # --- loading -------------------------------------------------------------------

    def load(
        self, name: str, wasm: bytes, limits: Limits | None = None, verify: bool = True
    ) -> LoadedFunction:
        """Compile (or load from the cache), check against the ABI, and link ``wasm``.

        ``verify`` (at deploy) also runs the module once to read its ABI version; a
        deployed module's cold load skips it (see the module docstring).
        """
        limits = limits or Limits()
        if is_python_bundle(wasm):
            return self.python().load(name, wasm, limits)
        if python.is_component(wasm):
            raise DeployError(
                "this is a WebAssembly component; Python functions are deployed as the "
                "bundle `nimbus build` makes of their handler.py (rebuild it)"
            )
        cached = self.cache.load(wasm)
        abi.check_imports(cached.module, self.host_functions)
        abi.check_exports(cached.module)
        try:
            pre = self._linker.instantiate_pre(cached.module)
        except wasmtime.WasmtimeError as e:
            raise DeployError(f"module could not be linked: {e}") from e
        fn = LoadedFunction(
            name,
            cached.sha256,
            cached.module,
            pre,
            limits,
            cached.cache_hit,
            pre_ptr=native.address(pre.ptr()),
            engine_ptr=self._engine_ptr,
        )
        if verify:
            self._check_version(fn)
        return fn

    def load_file(self, name: str, path: Path, limits: Limits | None = None) -> LoadedFunction:
        return self.load(name, path.read_bytes(), limits)

    def _check_version(self, fn: LoadedFunction) -> None:
        inv = Invocation(request_id="deploy-check", function=fn.name)
        try:
            with self.instances.fresh(fn, inv) as (ctx, inst):
                func = native.export(ctx, inst, abi.EXPORT_VERSION.encode(), _FUNC)
                vals = (native.ValRaw * 1)()
                native.call(ctx, func, vals, 1)
                version = vals[0].i32
        except native.GuestTrap as t:
            err = inv.error or classify(t, fn.name)
            raise DeployError(f"module failed to start: {err}") from None
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
        """Run ``event`` (msgpack) through a fresh instance of ``fn``; the response,
        checked and in its delivered form (``response.validate``)."""
        limits = fn.limits
        if len(event) > limits.max_request_bytes:
            raise PayloadTooLarge(
                f"event is {len(event)} bytes; function {fn.name} accepts at most "
                f"{limits.max_request_bytes}"
            )
        if fn.kind == "python":
            raw = self._invoke_module(fn, python.payload(fn.module, event), inv, timeout_s)
            value = python.decode(fn.name, raw, limits)
        else:
            value = response.decode(self._invoke_module(fn, event, inv, timeout_s), fn.name)
        return response.validate(value, fn.name, limits.max_response_bytes, _noter(inv))

    def _invoke_module(
        self, fn: LoadedFunction, event: bytes, inv: Invocation, timeout_s: float | None
    ) -> bytes:
        if fn.ready is None and native.wasmcall is not None:  # one call into C
            return self.instances.run(fn, event, inv, self.demoter, timeout_s)
        with self.instances.fresh(fn, inv, timeout_s) as (ctx, inst):
            try:
                return call_handler(fn, ctx, inst, event, inv, self.demoter, timeout_s)
            except native.GuestTrap as t:
                raise call_failed(t, fn, inv) from None
            finally:
                inv.memory_bytes = memory_size(inv) or 0

    def touch(self, fn: LoadedFunction) -> None:
        """Instantiate ``fn`` once and drop the instance, running no handler: its code
        and the instance template are paged in before a request needs them (keep-warm).
        A start function that needs the host fails here harmlessly (logged)."""
        if fn.kind == "python":
            return  # loading it started the shared runtime, which makes instances ahead
        inv = Invocation(request_id="keep-warm", function=fn.name)
        try:
            with self.instances.fresh(fn, inv):
                pass
        except (native.GuestTrap, NimbusError) as e:
            log.warning("keep-warm instance of %s failed: %s", fn.name, e)

    def reused_instance(self, fn: LoadedFunction, inv: Invocation) -> ReusedInstance:
        """One instance called many times: what Nimbus does *not* do, kept so that
        ``bench/`` can show the price of a fresh instance per call next to it."""
        return ReusedInstance(self, fn, inv)


class ReusedInstance:
    """A single store and instance kept across calls (benchmark reference only)."""

    def __init__(self, rt: Runtime, fn: LoadedFunction, inv: Invocation) -> None:
        self._fn, self._inv = fn, inv
        self._fresh: FreshInstance = rt.instances.fresh(fn, inv)
        self._ctx, self._inst = self._fresh.__enter__()

    def call(self, event: bytes) -> dict[str, Any]:
        raw = call_handler(self._fn, self._ctx, self._inst, event, self._inv)
        return response.decode(raw, self._fn.name)

    def close(self) -> None:
        self._fresh.__exit__(None, None, None)


def _noter(inv: Invocation) -> response.Note:
    return lambda message: inv.log(2, message)
