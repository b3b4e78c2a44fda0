"""The shared Python runtime: one compiled component, a fresh instance per call.

Every Python function on a host runs in one component built by componentize-py
against the ``runtime`` world in ``guest_sdk/python/wit/nimbus.wit``: an interpreter
with the standard library and the SDK already imported. It is compiled once per
engine fingerprint into the module cache and loaded once per process (one warm-up
instance then builds its copy-on-write memory image, so no request pays for that).
A function adds only its code bundle: its sources, compiled to this interpreter's
bytecode by the runtime's ``compile`` export when the function is loaded (and kept in
the cache beside the compiled runtime, so a new process reads it in microseconds).
Each invocation gets a never-used instance of the runtime (made ahead between
invocations by ``runtime/ready.py`` and warmed by the SDK's own warm-up, or made inline
when none is ready) and calls ``handle(code, event)`` on it once: nothing of one call
or one function survives into another. Code, event and reply cross as strings of
characters U+0000 to U+00FF (``component_native.call_text``).

The guest's imports are ``log``, ``now``, ``random-bytes`` and ``call`` (every service
operation by name, served by the same host code as the core imports). Components
need the component model, so they get an engine of their own (without the pooling
allocator: its slots gave no gain here, the cost being the page faults of the
copy-on-write image, and keeping memory resident resets it by copying the whole 24 MiB
image, as wasmtime-py cannot turn on ``PAGEMAP_SCAN``); WASI gives
the guest a clock and randomness and nothing else: no filesystem, no environment, no
network.
"""

from __future__ import annotations

import hashlib
import marshal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import wasmtime

from host.common import python_bundle
from host.common.files import atomic_write
from host.errors import (
    AbiError,
    DeployError,
    FunctionCrashed,
    FunctionOutOfMemory,
    NimbusError,
    PayloadTooLarge,
    ResponseTooLarge,
)
from host.runtime import component_native as cn
from host.runtime import native, response
from host.runtime.cache import ModuleCache
from host.runtime.engine import EngineSettings, EpochTicker, fingerprint
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits
from host.runtime.ready import ReadyInstances

HOST_INSTANCE = "nimbus:guest/host@1.0.0"
#: what the Python SDK reports for an exception escaping ``handle`` (its traceback is
#: in the invocation's log) and for MemoryError
GUEST_CRASHED = "nimbus.UnhandledException"
GUEST_OUT_OF_MEMORY = "nimbus.MemoryError"
EXPORT = "handle"
COMPILE = "compile"
#: run in each instance made ahead (see ``_make_ready``)
WARM = "warm"
#: what compiling a function's sources may use (a large requirement takes a while)
_COMPILE_LIMITS = Limits(memory_bytes=1 << 30, timeout_s=120.0)
#: instances made ahead are made under this memory cap, and serve invocations whose cap
#: is at least this: those would have been instantiated under their own cap just the
#: same (a smaller cap instantiates inline, failing as it always did if the runtime's
#: memory does not fit in it)
READY_MEMORY_BYTES = 64 << 20
#: a component's guest calls these with the current invocation first
ComponentImport = Callable[..., Any]

_COMPONENT_LAYER = b"\x0d\x00\x01\x00"
#: the first byte of an event the host hands in marshalled (see ``_for_guest``)
_MARSHALLED_EVENT = b"\0"


def is_component(wasm: bytes) -> bool:
    """True for a component binary (a core module has version 1 in the same place)."""
    return wasm[:4] == b"\0asm" and wasm[4:8] == _COMPONENT_LAYER


class PythonHost:
    """The process's Python runtime; made on first use, started once."""

    def __init__(
        self,
        cache_dir: Path,
        imports: dict[str, ComponentImport],
        time_scale: float,
        max_wasm_stack: int,
        runtime_wasm: Callable[[], Path],
        make_ahead: bool = True,
        warm_ahead: bool = True,
        ticker: EpochTicker | None = None,
    ) -> None:
        """``make_ahead``: keep instances ready (``runtime/ready.py``); off, every
        invocation instantiates and tears down inline. ``warm_ahead``: run the
        runtime's warm-up in each instance made ahead (the bench compares all three)."""
        cfg = wasmtime.Config()
        cfg.wasm_component_model = True
        cfg.epoch_interruption = True
        cfg.cranelift_opt_level = "speed"
        cfg.max_wasm_stack = max_wasm_stack
        self.engine = wasmtime.Engine(cfg)
        settings = EngineSettings(max_wasm_stack=max_wasm_stack)
        self.fingerprint = "component-" + fingerprint(settings)
        self.cache = ModuleCache(
            cache_dir,
            self.engine,
            self.fingerprint,
            compile=cn.Component.compile,
            deserialize_file=cn.Component.deserialize_file,
        )
        self._code_dir = self.cache.dir / "python"
        self._runtime_wasm = runtime_wasm
        self._runtime: cn.Component | None = None
        self._ready: ReadyInstances | None = None
        self._make_ahead = make_ahead
        self._warm_ahead = warm_ahead
        self._exports: dict[str, cn.ExportIndex] = {}  # export name -> index, found once
        self.runtime_key = ""
        self.runtime_cache_hit = False
        self._start_lock = threading.Lock()
        # the runtime's ticker advances this engine's epoch too (one thread, not two,
        # waking every tick); standing alone (tests, benchmarks), it has its own
        self._own_ticker = ticker is None
        if ticker is None:
            ticker = EpochTicker(self.engine, time_scale=time_scale)
        else:
            ticker.add(self.engine)
        self._ticker = ticker
        self._current = threading.local()
        self.linker = cn.Linker(
            self.engine, HOST_INSTANCE, {n: self._bind(n, impl) for n, impl in imports.items()}
        )

    def close(self) -> None:
        if self._ready is not None:
            self._ready.close()
        if self._own_ticker:
            self._ticker.stop()

    def _bind(self, name: str, impl: ComponentImport) -> Callable[..., Any]:
        current = self._current

        span_name = f"hostcall {name}"

        def call(*args: Any) -> Any:
            inv: Invocation = current.inv
            inv.host_calls += 1
            try:
                if inv.spans is not None:  # tracing on: the host call is a child span
                    with inv.spans(span_name):
                        return impl(inv, *args)
                return impl(inv, *args)
            except NimbusError as e:
                inv.error = inv.error or e
                raise
            except Exception as e:
                inv.error = inv.error or AbiError(f"host function {name} failed: {e!r}")
                raise

        return call

    def start(self) -> cn.Component:
        """The runtime component: compiled (or read from the cache) and checked by
        linking one instance, all before any request; that never-used instance is the
        first one made ahead (not warmed)."""
        with self._start_lock:
            if self._runtime is not None:
                return self._runtime
            path = self._runtime_wasm()
            key = path.stem
            cached = self.cache.load_named(key, path.read_bytes)
            store = self._store(Limits(memory_bytes=READY_MEMORY_BYTES), _COMPILE_LIMITS.timeout_s)
            try:
                inst = self.linker.instantiate(store, cached.module)
            except wasmtime.WasmtimeError as e:
                raise DeployError(f"the Python runtime {path} cannot be linked: {e}") from None
            funcs: dict[str, cn.Func] = {}
            for export in (EXPORT, COMPILE, WARM):
                index = cached.module.export_index(export)
                fn = None if index is None else cn.func(store, inst, index)
                if index is None or fn is None:
                    raise DeployError(f"the Python runtime {path} does not export {export!r}")
                self._exports[export], funcs[export] = index, fn
            self.runtime_key, self.runtime_cache_hit = key, cached.cache_hit
            self._runtime = cached.module
            if self._make_ahead:
                # not warmed: that (~2.5 ms here) would hold up a request waiting for
                # this start; the thread warms every instance it makes
                first = (store, funcs[EXPORT])
                self._ready = ReadyInstances(self._make_ready, first=first)
            else:
                store.close()
            return self._runtime

    def _make_ready(self) -> tuple[wasmtime.Store, cn.Func]:
        """A new instance for one invocation, with the SDK's warm-up invocation run in
        it: the pages every call writes (interpreter state, the SDK's objects, the
        allocator's) are then written here, off the request's path, instead of faulting
        one by one during the call. The warm-up runs no function's code and leaves
        the interpreter as the snapshot has it (``warm_up`` in ``nimbus/_runtime.py``)."""
        store = self._store(Limits(memory_bytes=READY_MEMORY_BYTES), _COMPILE_LIMITS.timeout_s)
        assert self._runtime is not None  # made by start
        inst = self.linker.instantiate(store, self._runtime)
        if self._warm_ahead:
            cn.call_void(store, self._func(store, inst, WARM))
        return store, self._func(store, inst, EXPORT)

    def _func(self, store: wasmtime.Store, inst: cn.Instance, export: str) -> cn.Func:
        fn: cn.Func | None = cn.func(store, inst, self._exports[export])
        assert fn is not None  # checked at start
        return fn

    def load(self, name: str, wasm: bytes) -> tuple[bytes, str, bool]:
        """The code bundle of a Python function: ``(code, sha256, from the cache)``."""
        self.start()
        sha = hashlib.sha256(wasm).hexdigest()
        path = self._code_dir / f"{sha}.{self.runtime_key}.code"
        try:
            return path.read_bytes(), sha, True
        except FileNotFoundError:
            pass
        try:
            sources = python_bundle.sources(wasm)
        except ValueError as e:
            raise DeployError(f"function {name}: {e}") from None
        code = self._compile(name, sources)
        self._code_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(path, code)
        return code, sha, False

    def _compile(self, name: str, sources: bytes) -> bytes:
        store = self._store(_COMPILE_LIMITS, _COMPILE_LIMITS.timeout_s)
        self._current.inv = Invocation(request_id="compile", function=name)
        assert self._runtime is not None  # ``load`` started it
        try:
            inst = self.linker.instantiate(store, self._runtime)
            reply = cn.call_text(store, self._func(store, inst, COMPILE), sources)
        except (wasmtime.Trap, wasmtime.WasmtimeError, TypeError) as t:
            raise DeployError(f"function {name}: compiling its sources failed: {t}") from None
        finally:
            self._current.inv = None
            del store
        error, code = msgpack.unpackb(reply, raw=False)
        if error:
            raise DeployError(f"function {name}: {error}")
        return bytes(code)

    def _store(self, limits: Limits, timeout_s: float) -> wasmtime.Store:
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_limits(memory_size=limits.memory_bytes)
        store.set_epoch_deadline(self._ticker.ticks_for(timeout_s))
        return store

    def invoke(
        self,
        name: str,
        code: bytes,
        limits: Limits,
        event: bytes,
        inv: Invocation,
        timeout_s: float | None,
        classify: Callable[[native.GuestTrap, str], NimbusError],
    ) -> dict[str, Any]:
        if len(event) > limits.max_request_bytes:
            raise PayloadTooLarge(
                f"event is {len(event)} bytes; function {name} accepts at most "
                f"{limits.max_request_bytes}"
            )
        runtime = self.start()
        timeout = limits.timeout_s if timeout_s is None else timeout_s
        pool = self._ready
        ready = None if pool is None else pool.take(limits.memory_bytes >= READY_MEMORY_BYTES)
        store: wasmtime.Store | None = None
        self._current.inv = inv
        try:
            if ready is not None:
                store, func = ready
                store.set_limits(memory_size=limits.memory_bytes)
                store.set_epoch_deadline(self._ticker.ticks_for(timeout))
            else:
                store = self._store(limits, timeout)
                func = self._func(store, self.linker.instantiate(store, runtime), EXPORT)
            raw = cn.call_text(store, func, code, _for_guest(event))
        except (wasmtime.Trap, wasmtime.WasmtimeError) as t:
            if inv.error is not None:
                raise inv.error from None
            raise classify(native.GuestTrap(t), name) from None
        except TypeError as e:  # a reply that is not bytes (see call_text)
            raise AbiError(f"function {name}: {e}") from None
        finally:
            self._current.inv = None
            if pool is not None:
                store = pool.release(store)
            if store is not None:
                store.close()
        return _decode(name, raw, limits)


def _for_guest(event: bytes) -> bytes:
    """The event envelope as the guest reads it fastest: marshalled (decoded by the
    interpreter's own C code, not pure-Python msgpack), or as it is if it holds what
    marshal cannot carry. The guest never sends marshal back: the host reads only
    msgpack from a guest, as marshal is not safe against crafted input."""
    try:
        return _MARSHALLED_EVENT + marshal.dumps(
            msgpack.unpackb(event, raw=False, strict_map_key=False)
        )
    except (ValueError, TypeError):  # msgpack's errors are ValueErrors
        return event


def _decode(name: str, raw: bytes, limits: Limits) -> dict[str, Any]:
    if len(raw) > limits.max_response_bytes:
        raise ResponseTooLarge(
            f"function {name} returned {len(raw)} bytes; its response cap is "
            f"{limits.max_response_bytes}"
        )
    value = response.decode(raw, name)
    error = value.get("error")
    kind = error.get("kind") if isinstance(error, dict) else None
    if kind == GUEST_OUT_OF_MEMORY:
        raise FunctionOutOfMemory(
            f"function {name} ran out of memory: it reached its "
            f"{limits.memory_bytes // (1024 * 1024)} MiB cap"
        )
    if kind == GUEST_CRASHED:
        message = error.get("message", "") if isinstance(error, dict) else ""
        raise FunctionCrashed(f"function {name} crashed: {message}")
    return value
