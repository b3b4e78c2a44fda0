"""WebAssembly components (Python functions): the same limits, errors and imports.

A Python function is a component built by componentize-py against the world in
``guest_sdk/python/wit/nimbus.wit``: it exports ``handle(event) -> response`` (the
same msgpack envelopes as the core ABI) and imports ``log``, ``now``,
``random-bytes`` and ``call`` (every service operation by name, served by the same
host code as the core imports). Components need the component model, so they get an
engine of their own (without the pooling allocator, whose slot sizes suit small core
modules, not an interpreter); it shares the disk cache layout and the epoch ticker's
behaviour. WASI gives the guest a clock and randomness and nothing else: no
filesystem, no environment, no network.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
import wasmtime.component as wc

from host.errors import (
    AbiError,
    DeployError,
    FunctionCrashed,
    FunctionOutOfMemory,
    NimbusError,
    PayloadTooLarge,
    ResponseTooLarge,
)
from host.runtime import native, response
from host.runtime.cache import ModuleCache
from host.runtime.engine import EngineSettings, EpochTicker, fingerprint
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits

HOST_INSTANCE = "nimbus:guest/host@1.0.0"
#: what the Python SDK reports for an exception escaping ``handle`` (its traceback is
#: in the invocation's log) and for MemoryError
GUEST_CRASHED = "nimbus.UnhandledException"
GUEST_OUT_OF_MEMORY = "nimbus.MemoryError"
EXPORT = "handle"
#: a component's guest calls these with the current invocation first
ComponentImport = Callable[..., Any]

_COMPONENT_LAYER = b"\x0d\x00\x01\x00"


def is_component(wasm: bytes) -> bool:
    """True for a component binary (a core module has version 1 in the same place)."""
    return wasm[:4] == b"\0asm" and wasm[4:8] == _COMPONENT_LAYER


class ComponentHost:
    """Loads and runs components; one per runtime, made on first use."""

    def __init__(
        self,
        cache_dir: Path,
        imports: dict[str, ComponentImport],
        time_scale: float,
        max_wasm_stack: int,
    ) -> None:
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
            compile=wc.Component,
            deserialize_file=wc.Component.deserialize_file,
        )
        self._ticker = EpochTicker(self.engine, time_scale=time_scale)
        self._current = threading.local()
        self.linker = wc.Linker(self.engine)
        self.linker.add_wasip2()
        with self.linker.root() as root, root.add_instance(HOST_INSTANCE) as host:
            for name, impl in imports.items():
                host.add_func(name, self._bind(name, impl))

    def close(self) -> None:
        self._ticker.stop()

    def _bind(self, name: str, impl: ComponentImport) -> Callable[..., Any]:
        current = self._current

        def call(_store: Any, *args: Any) -> Any:
            inv: Invocation = current.inv
            try:
                return impl(inv, *args)
            except NimbusError as e:
                inv.error = inv.error or e
                raise
            except Exception as e:
                inv.error = inv.error or AbiError(f"host function {name} failed: {e!r}")
                raise

        return call

    def load(self, wasm: bytes) -> tuple[Any, str, bool]:
        cached = self.cache.load(wasm)
        return cached.module, cached.sha256, cached.cache_hit

    def check(self, name: str, component: Any, limits: Limits) -> None:
        """Refuse a component that does not instantiate or lacks the ``handle`` export."""
        store = self._store(limits, 30.0)
        try:
            inst = self.linker.instantiate(store, component)
        except wasmtime.WasmtimeError as e:
            raise DeployError(f"component {name} cannot be linked: {e}") from None
        if inst.get_func(store, EXPORT) is None:
            raise DeployError(
                f"component {name} does not export '{EXPORT}' (build it with the Nimbus SDK)"
            )

    def _store(self, limits: Limits, timeout_s: float) -> wasmtime.Store:
        store = wasmtime.Store(self.engine)
        store.set_wasi(wasmtime.WasiConfig())
        store.set_limits(memory_size=limits.memory_bytes)
        store.set_epoch_deadline(self._ticker.ticks_for(timeout_s))
        return store

    def invoke(
        self,
        name: str,
        component: Any,
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
        store = self._store(limits, limits.timeout_s if timeout_s is None else timeout_s)
        self._current.inv = inv
        try:
            inst = self.linker.instantiate(store, component)
            handle = inst.get_func(store, EXPORT)
            if handle is None:
                raise AbiError(f"component {name} does not export '{EXPORT}'")
            raw = handle(store, event)
            handle.post_return(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as t:
            if inv.error is not None:
                raise inv.error from None
            raise classify(native.GuestTrap(t), name) from None
        finally:
            self._current.inv = None
            del store
        if not isinstance(raw, bytes | bytearray):
            raise AbiError(f"component {name} returned {type(raw).__name__}, not bytes")
        if len(raw) > limits.max_response_bytes:
            raise ResponseTooLarge(
                f"function {name} returned {len(raw)} bytes; its response cap is "
                f"{limits.max_response_bytes}"
            )
        value = response.decode(bytes(raw), name)
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
