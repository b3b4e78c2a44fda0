"""The shared Python runtime: one core module for every Python function, a fresh
instance per call.

Every Python function on a host runs in one core module (CPython for WASI with the
standard library and the SDK initialised and snapshotted: ``host/toolchain/
python_runtime.py``) that speaks the core guest ABI, so it is loaded, linked, limited
and called exactly as a Zig function is: the runtime's ``Instances`` make its fresh
stores, its host functions serve its imports, its grants, limits and staged effects
apply. It is compiled once per engine fingerprint into the module cache. A function
adds only its code bundle: its sources, compiled to the runtime's bytecode by the
runtime's ``nimbus_python_compile`` export when the function is loaded (and kept in
the cache beside the compiled runtime, so a new process reads it in microseconds).
Each invocation hands ``nimbus_handle`` the bundle and the event together
(``payload``); nothing of one call or one function survives into another.

Unlike a Zig module, the runtime's libc imports WASI: its stores get an empty WASI
world (a clock and randomness; no file, no environment, no standard stream), on a
linker of its own, so no other module can import WASI.
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
    DeployError,
    FunctionCrashed,
    FunctionOutOfMemory,
    InvocationError,
)
from host.runtime import abi, native, response
from host.runtime.cache import ModuleCache
from host.runtime.instance import Instances, bind, call_handler
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits
from host.runtime.loaded import LoadedFunction
from host.runtime.ready import ReadyInstances
from host.runtime.response import MAX_ERROR_MESSAGE
from host.runtime.snapshot import detach_memory
from host.runtime.snapshot_memory import SnapshotMemories
from host.runtime.traps import classify

#: what the Python SDK reports for an exception escaping ``handle`` (its traceback is
#: in the invocation's log) and for MemoryError
GUEST_CRASHED = "nimbus.UnhandledException"
GUEST_OUT_OF_MEMORY = "nimbus.MemoryError"
COMPILE = b"nimbus_python_compile"
#: run in each instance made ahead (see ``_make_ready``)
WARM = b"nimbus_python_warm"
#: instances made ahead are made under this memory cap, and serve invocations whose cap
#: is at least this: those would have been instantiated under their own cap just the
#: same (a smaller cap instantiates inline, failing as it always did if the runtime's
#: memory does not fit in it)
READY_MEMORY_BYTES = 64 << 20
#: what compiling a function's sources may use (a large requirement takes a while); its
#: reply holds the bytecode and the sources of a module of up to 64 MiB
COMPILE_LIMITS = Limits(memory_bytes=1 << 30, timeout_s=120.0, max_response_bytes=256 << 20)
#: the first byte of an event the host hands in marshalled (see ``_for_guest``)
_MARSHALLED_EVENT = b"\0"
_COMPONENT_LAYER = b"\x0d\x00\x01\x00"


def is_component(wasm: bytes) -> bool:
    """True for a component binary (a core module has version 1 in the same place)."""
    return wasm[:4] == b"\0asm" and wasm[4:8] == _COMPONENT_LAYER


class PythonRuntime:
    """The process's Python runtime: loaded on first use, then shared by every Python
    function of the process."""

    def __init__(
        self,
        cache: ModuleCache,
        linker: wasmtime.Linker,
        instances: Instances,
        engine: wasmtime.Engine,
        memories: SnapshotMemories,
        runtime_wasm: Callable[[], Path],
        make_ahead: bool = True,
        warm_ahead: bool = True,
    ) -> None:
        """``engine``: the runtime's own (instances on demand, memories from
        ``memories``); ``linker``: its host functions and WASI; ``runtime_wasm``: the
        path of the runtime module, built first if need be. ``make_ahead``: keep instances ready
        (``runtime/ready.py``); off, every invocation instantiates and tears down
        inline. ``warm_ahead``: run the runtime's warm-up in each instance made ahead
        (the bench compares the three)."""
        self._make_ahead = make_ahead
        self._warm_ahead = warm_ahead
        self._ready: ReadyInstances | None = None
        self.cache = cache
        self._linker = linker
        self._instances = instances
        self._engine = engine
        self._memories = memories
        self._runtime_wasm = runtime_wasm
        self._code_dir = cache.dir / "python"
        self._runtime: LoadedFunction | None = None
        self._lock = threading.Lock()
        self.runtime_key = ""
        self.runtime_cache_hit = False
        #: the runtime's memory as an instance starts (its snapshot's size)
        self.memory_bytes = 0

    def start(self) -> LoadedFunction:
        """The runtime module: compiled (or read from the cache), checked against the
        ABI and linked, all before the first request."""
        with self._lock:
            if self._runtime is not None:
                return self._runtime
            path = self._runtime_wasm()
            key = path.stem
            image = self._code_dir / f"{key}.memory"
            detached: list[bytes] = []

            def module() -> bytes:  # compiled without its data: its memory is the image
                if not detached:
                    code, memory = detach_memory(path.read_bytes())
                    self._code_dir.mkdir(parents=True, exist_ok=True)
                    atomic_write(image, memory)
                    detached.append(code)
                return detached[0]

            if not image.exists():
                module()
            cached = self.cache.load_named(key, module)
            self._memories.attach(image)
            try:
                abi.check_exports(cached.module)
                pre = self._linker.instantiate_pre(cached.module)
            except (wasmtime.WasmtimeError, InvocationError) as e:
                raise DeployError(f"the Python runtime {path} cannot be linked: {e}") from None
            self.runtime_key, self.runtime_cache_hit = key, cached.cache_hit
            self.memory_bytes = _initial_memory(cached.module)
            self._runtime = LoadedFunction(
                "python-runtime",
                key,
                cached.module,
                pre,
                COMPILE_LIMITS,
                cached.cache_hit,
                kind="python",
                pre_ptr=native.address(pre.ptr()),
                engine_ptr=native.address(self._engine.ptr()),
            )
            if self._make_ahead:
                self._ready = ReadyInstances(self._make_ready, memory_bytes=READY_MEMORY_BYTES)
            return self._runtime

    def close(self) -> None:
        if self._ready is not None:
            self._ready.close()
        self._memories.close()

    def _make_ready(self) -> tuple[native.NativeStore, Any]:
        """A new instance for one invocation, with the SDK's warm-up invocation run in
        it: the pages every call writes (interpreter state, the SDK's objects, the
        allocator's) are then written here, off the request's path, instead of faulting
        one by one during the call. The warm-up runs no function's code and leaves
        the interpreter as the snapshot has it (``warm_up`` in ``nimbus/_runtime.py``)."""
        assert self._runtime is not None  # made by start
        inv = Invocation(request_id="warm-up", function="python-runtime")
        store, inst = self._instances.instantiate(
            self._runtime, inv, COMPILE_LIMITS.timeout_s, READY_MEMORY_BYTES
        )
        try:
            if self._warm_ahead:
                bind(store.ctx, inst, inv)  # the host calls it makes are served
                warm = native.export(store.ctx, inst, WARM, native.EXTERN_FUNC)
                native.call(store.ctx, warm, (native.ValRaw * 1)(), 0)
        except BaseException:
            store.close()
            raise
        finally:
            del self._instances.live[store.key]
        return store, inst

    def load(self, name: str, wasm: bytes, limits: Limits) -> LoadedFunction:
        """A Python function (``wasm`` is the bundle of its sources ``nimbus build``
        makes): the runtime, with the function's code bundle and limits."""
        runtime = self.start()
        if limits.memory_bytes < self.memory_bytes:
            need = -(-self.memory_bytes // (16 << 20)) * 16
            raise DeployError(
                f"function {name}: its memory cap ({limits.memory_bytes >> 20} MiB) is below "
                f"the {self.memory_bytes >> 20} MiB the Python runtime starts with; give it "
                f'memory = "{need}MiB" or more (the default is 128MiB)'
            )
        sha = hashlib.sha256(wasm).hexdigest()
        path = self._code_dir / f"{sha}.{self.runtime_key}.code"
        hit = True
        try:
            code = path.read_bytes()
        except FileNotFoundError:
            try:
                sources = python_bundle.sources(wasm)
            except ValueError as e:
                raise DeployError(f"function {name}: {e}") from None
            code = self._compile(runtime, name, sources)
            self._code_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(path, code)
            hit = False
        return LoadedFunction(
            name,
            sha,
            code,
            runtime.pre,
            limits,
            hit,
            kind="python",
            pre_ptr=runtime.pre_ptr,
            engine_ptr=runtime.engine_ptr,
            ready=self._ready,
        )

    def _compile(self, runtime: LoadedFunction, name: str, sources: bytes) -> bytes:
        inv = Invocation(request_id="compile", function=name)
        try:
            with self._instances.fresh(runtime, inv) as (ctx, inst):
                reply = call_handler(runtime, ctx, inst, sources, inv, export=COMPILE)
        except native.GuestTrap as t:
            error = inv.error or classify(t, name)
            raise DeployError(f"function {name}: compiling its sources failed: {error}") from None
        except InvocationError as e:
            raise DeployError(f"function {name}: compiling its sources failed: {e}") from None
        try:
            error, code = msgpack.unpackb(reply, raw=False)
        except (ValueError, TypeError):
            raise DeployError(f"function {name}: the Python runtime's compiler failed") from None
        if error:
            raise DeployError(f"function {name}: {error}")
        return bytes(code)


def _initial_memory(module: wasmtime.Module) -> int:
    for export in module.exports:
        if isinstance(export.type, wasmtime.MemoryType):
            return int(export.type.limits.min) * 65536
    return 0


def payload(code: bytes, event: bytes) -> bytes:
    """What ``nimbus_handle`` of the runtime takes: the code bundle's length (u32
    little-endian), the bundle, then the event as the guest reads it fastest."""
    return len(code).to_bytes(4, "little") + code + _for_guest(event)


def _for_guest(event: bytes) -> bytes:
    """The event envelope marshalled (decoded by the interpreter's own C code, not
    pure-Python msgpack), or as it is if it holds what marshal cannot carry. The guest
    never sends marshal back: the host reads only msgpack from a guest, as marshal is
    not safe against crafted input."""
    try:
        return _MARSHALLED_EVENT + marshal.dumps(
            msgpack.unpackb(event, raw=False, strict_map_key=False)
        )
    except (ValueError, TypeError):  # msgpack's errors are ValueErrors
        return event


def decode(name: str, raw: bytes, limits: Limits) -> dict[str, Any]:
    """The runtime's response: the SDK's reports of a crash and of MemoryError become
    the errors a core module's trap would give."""
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
        raise FunctionCrashed(f"function {name} crashed: {str(message)[:MAX_ERROR_MESSAGE]}")
    return value
