"""The one place that configures wasmtime: the engine, its settings and the epoch ticker.

A process has one ``Engine``. Its settings, together with the wasmtime version and the
CPU it runs on, form the fingerprint that keys the module cache: an artifact compiled
under another fingerprint is never loaded.
"""

from __future__ import annotations

import hashlib
import platform
import threading
import time
from typing import Any

import wasmtime
from msgspec import Struct
from wasmtime import _ffi as ffi

from host.common.versions import installed_version
from host.runtime import native
from host.runtime.native import increment_epoch
from host.runtime.priority import TICKER_NICE, set_nice

#: how often the ticker advances the engine's epoch; a guest past its deadline is
#: interrupted at most one tick late.
EPOCH_TICK_S = 0.005
#: the bytes of a table slot the pooling allocator zeroes when an instance goes,
#: instead of handing its pages back to the kernel (one ``madvise`` a call fewer, and
#: no TLB flush for it: a Zig or C function's table is a few entries; a slot keeps
#: at most this much of its own resident)
TABLE_KEEP_RESIDENT_BYTES = 4096


class EngineSettings(Struct, frozen=True):
    """The engine options that change compiled code (and so the cache key)."""

    opt_level: str = "speed"
    max_wasm_stack: int = 512 * 1024
    #: instances alive at once in this process (the pooling allocator's slots; the
    #: Python runtime's engine caps its memories at the same count, apart); an
    #: invocation beyond it is refused as ``Overloaded``
    max_instances: int = 1000
    #: the largest linear memory any function may be given (wasm32's whole space)
    max_memory_bytes: int = 1 << 32
    #: instances from the pooling allocator's slots; off, allocated on demand (the
    #: Python runtime's engine, whose memories its own creator makes)
    pooling: bool = True

    def config(self) -> wasmtime.Config:
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        cfg.cranelift_opt_level = self.opt_level
        cfg.max_wasm_stack = self.max_wasm_stack
        cfg.parallel_compilation = True
        if self.pooling:
            _use_pooling_allocator(cfg, self.max_instances, self.max_memory_bytes)
        return cfg


def _use_pooling_allocator(cfg: wasmtime.Config, instances: int, memory: int) -> None:
    """Instances come from preallocated slots that are reset, not mapped and unmapped:
    creating and dropping a store per invocation then costs a few microseconds, which
    is what makes a fresh instance per request affordable. (Not in wasmtime-py's
    Python API; these are the C API's calls.)"""
    pc = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pc, instances)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pc, instances)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pc, instances)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pc, memory)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(
            pc, TABLE_KEEP_RESIDENT_BYTES
        )
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pc)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pc)


def _cpu_features() -> str:
    """The host CPU's feature flags: cranelift compiles for them, so they key the cache."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return " ".join(sorted(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return platform.processor()


def fingerprint(settings: EngineSettings) -> str:
    """A short hash of everything that makes a compiled artifact incompatible."""
    parts = [
        f"wasmtime={installed_version('wasmtime', 'wasmtime')}",
        f"machine={platform.machine()}",
        f"system={platform.system()}",
        f"cpu={_cpu_features()}",
        f"settings={settings!r}",
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


class EpochTicker:
    """A thread that advances the engines' epochs so deadlines can fire (the runtime's
    engine, and the Python runtime's once it is made: ``add``).

    The epoch follows the clock, not the number of wake-ups: each time the thread runs
    it advances the epoch to ``elapsed / tick``, catching up on every tick it missed.
    On a loaded machine a wake-up can come late (the thread waits for a core); counted
    wake-ups would then stretch every deadline (2 s became 4-5 s with 50 spinning
    guests on 2 cores), while the clock keeps them at the timeout plus one late
    wake-up.

    The thread is the C extension's (``_wasmcall.Ticker``), which never takes the GIL:
    a Python thread waking 200 times a second asked for it each time, and the event
    loop, busy serving, had to hand it over and wait for it back (a few percent of a
    worker's requests a second); and the deadlines waited for the GIL too. Without the
    extension, ``PythonTicker`` does the same from a Python thread.
    """

    def __init__(
        self, engine: wasmtime.Engine, tick_s: float = EPOCH_TICK_S, time_scale: float = 1.0
    ) -> None:
        self._tick_s = tick_s
        self._scale = time_scale
        self._ticks: dict[float, int] = {}
        self._period = tick_s / time_scale
        c = native.wasmcall
        ticker = PythonTicker if c is None else c.Ticker
        #: the thread: ``add(address, owner)``, ``stop()``, ``start``, ``epoch``
        self._thread: Any = ticker(self._period, TICKER_NICE)
        self._start: float = self._thread.start
        self.add(engine)

    def real_seconds(self, seconds: float) -> float:
        """How long ``seconds`` of a function's time last on the clock (``time_scale``)."""
        return seconds / self._scale

    def ticks_for(self, seconds: float) -> int:
        """Epoch ticks that cover ``seconds`` from now (rounded up, plus the tick in
        progress, plus the ticks the thread owes the clock and will give at once when it
        next wakes: a deadline never fires early because the ticker was late)."""
        ticks = self._ticks.get(seconds)
        if ticks is None:
            ticks = self._ticks[seconds] = max(1, int(seconds / self._tick_s + 0.999999)) + 1
        given: int = self._thread.epoch
        owed = int((time.monotonic() - self._start) / self._period) - given
        return ticks + max(0, owed)

    def add(self, engine: wasmtime.Engine) -> None:
        """Tick ``engine`` too, from now on (a deadline is set relative to its engine's
        epoch at the time, so an engine added later needs no catching up); the thread
        keeps it alive until it stops."""
        self._thread.add(native.address(engine.ptr()), engine)

    def stop(self) -> None:
        """Stop the thread (joined: no engine is ticked once this returns)."""
        self._thread.stop()


class PythonTicker:
    """``_wasmcall.Ticker`` as a Python thread, where the extension is not built: the
    same ticks, taking the GIL for each wake-up."""

    def __init__(self, period: float, nice: int) -> None:
        #: when it started (``time.monotonic()``) and the ticks given since
        self.start = time.monotonic()
        self.epoch = 0
        self._period, self._nice = period, nice
        #: (address, owner) of each engine ticked; the owner keeps it alive
        self._engines: list[tuple[int, wasmtime.Engine]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nimbus-epoch", daemon=True)
        self._thread.start()

    def add(self, address: int, owner: wasmtime.Engine) -> None:
        if self._stop.is_set():
            raise ValueError("Ticker.add: the ticker is stopped")
        self._engines = [*self._engines, (address, owner)]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._engines = []

    def _run(self) -> None:
        # time_scale > 1 makes time limits pass faster than real time (tests of a 30 s
        # timeout need not wait 30 s); production runs at 1
        set_nice(threading.get_native_id(), self._nice)  # deadlines depend on it
        period, start = self._period, self.start
        while not self._stop.wait(period):
            due = int((time.monotonic() - start) / period)
            engines = self._engines
            while self.epoch < due:
                for address, _ in engines:
                    increment_epoch(address)
                self.epoch += 1


def make_engine(settings: EngineSettings) -> wasmtime.Engine:
    return wasmtime.Engine(settings.config())
