"""The invoke path's C extension (host/runtime/_wasmcall.c): built by ``make``, used
for every Zig or C function, refusing a wasmtime whose structs it does not know, and
giving the answers the ctypes way gives (test_runtime.py and test_containment.py run
both ways through the ``runtime`` fixture)."""

from __future__ import annotations

import ctypes
import gc
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from wasmtime import _ffi as ffi

from host.errors import AbiError, FunctionCrashed, FunctionTimeout
from host.hostcalls.catalog import all_host_functions
from host.runtime import native
from host.runtime.engine import PythonTicker
from host.runtime.invocation import Invocation
from host.runtime.runtime import Runtime
from tests.test_runtime import Build, call, envelope, load

SIZES = tuple(
    ctypes.sizeof(t)
    for t in (
        ffi.wasmtime_instance_t,
        ffi.wasmtime_func_t,
        ffi.wasmtime_memory_t,
        ffi.wasmtime_extern_t,
        ffi.wasmtime_val_raw_t,
    )
)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime calling Zig and C functions through the extension."""
    runtime = Runtime(tmp_path / "cache", all_host_functions())
    yield runtime
    runtime.close()


def test_the_extension_is_built_and_used() -> None:
    # `make` builds it with the package (a C compiler is on every machine we test on);
    # without it every Zig or C call would silently take the slower ctypes way
    assert native.wasmcall is not None, "host/runtime/_wasmcall.c was not built"


def test_a_wasmtime_with_other_structs_is_refused() -> None:
    c = native.wasmcall
    addresses = tuple(range(1, 14))
    with pytest.raises(RuntimeError, match="wasmtime's struct 2 is 32 bytes"):
        c.setup(addresses, (*SIZES[:2], 32, *SIZES[3:]), native._failure)
    with pytest.raises(ValueError, match="3 function addresses, expected 13"):
        c.setup((1, 2, 3), SIZES, native._failure)
    with pytest.raises(TypeError, match="callable"):
        c.setup(addresses, SIZES, None)


def test_an_instance_after_close(rt: Runtime, build: Build) -> None:
    fn = load(rt, build, "counter_zig")
    guest = native.wasmcall.Instance(fn.engine_ptr, fn.pre_ptr, 1, 1 << 24, 100, b"nimbus_handle")
    assert guest.memory_size() > 0
    base, size = guest.memory_view()
    assert base and size == guest.memory_size()
    guest.close()
    guest.close()  # idempotent
    assert guest.memory_size() == 0
    with pytest.raises(ValueError, match="closed"):
        guest.memory_view()
    with pytest.raises(ValueError, match="closed"):
        guest.call(b"", 1024)
    with pytest.raises(ValueError, match="closed"):
        guest.alloc(16)


def test_both_ways_answer_alike(rt: Runtime, build: Build, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same function, event and invocation state through C and through ctypes: the
    same response bytes, logs, host calls and peak memory."""
    fn = load(rt, build, "hello")
    http = {"method": "GET", "path": "/hello/ada", "params": {"name": "ada"}, "body": b""}
    event = envelope("hello", {**http, "query": {}, "headers": {}})
    seen = []
    for way in ("c", "ctypes"):
        if way == "ctypes":
            monkeypatch.setattr(native, "wasmcall", None)
        inv = Invocation(request_id="r", function="hello")
        raw = rt._invoke_module(fn, event, inv, None)
        seen.append(
            (raw, [(x.level, x.message) for x in inv.logs], inv.host_calls, inv.memory_bytes)
        )
    assert seen[0] == seen[1]
    assert b"hello, ada" in seen[0][0] and seen[0][2] == 1 and seen[0][3] > 0


def test_the_gil_is_free_while_a_guest_runs(rt: Runtime, build: Build) -> None:
    """Another thread runs Python while a guest loops (until its time limit stops it):
    the extension lets go of the GIL around guest code, as ctypes does."""
    counted = [0]
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            counted[0] += 1

    fn = load(rt, build, "loop_zig", timeout_s=0.2)
    counter = threading.Thread(target=count)
    counter.start()
    try:
        while counted[0] == 0:
            pass
        before = counted[0]
        with pytest.raises(FunctionTimeout):
            call(rt, fn)
        during = counted[0] - before
    finally:
        stop.set()
        counter.join()
    # with the GIL held through the call the counter could not move at all
    assert during > 1000


@pytest.mark.parametrize(
    ("guest", "error"), [("badptr_c", AbiError), ("divzero_c", FunctionCrashed)]
)
def test_failed_calls_leave_nothing_behind(
    runtime: Runtime, build: Build, guest: str, error: type[Exception]
) -> None:
    """A guest that fails every call (a response outside its memory: refused; a trap)
    costs the host nothing that outlives the call, either way: what the failure
    carried is freed with it."""
    fn = load(runtime, build, guest)

    def failed(n: int) -> None:
        seen = 0
        for _ in range(n):
            try:
                call(runtime, fn, {"input": {"divisor": 0}})
            except error:
                seen += 1
        assert seen == n

    failed(200)
    tracemalloc.start()
    try:
        failed(10)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        failed(2000)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    # an object kept per failure would be ~200 bytes each: 400 KB here
    assert grown < 64 * 1024


def test_the_epoch_ticker_runs_without_the_gil(rt: Runtime) -> None:
    """The epoch ticker is the extension's thread: it ticks while this thread holds
    the GIL in one long C call (``sum`` over a range checks no eval breaker, so no
    Python thread could run meanwhile), keeping every deadline on the clock."""
    ticker = rt._ticker._thread
    assert isinstance(ticker, native.wasmcall.Ticker), "the epoch ticker is not the extension's"
    period = 0.005
    n = 10**6
    while True:
        before, t0 = ticker.epoch, time.monotonic()
        sum(range(n))  # holds the GIL throughout
        after, elapsed = ticker.epoch, time.monotonic() - t0
        if elapsed >= 0.1:
            break
        n *= 4
    assert after - before >= int(elapsed / period) - 2, (before, after, elapsed)


@pytest.mark.parametrize("kind", ["c", "python"])
def test_the_epoch_ticker_stops_for_good(rt: Runtime, kind: str) -> None:
    """Both tickers (the extension's, and ``PythonTicker`` where it is not built): a
    stopped ticker ticks no more, stops twice harmlessly and refuses an engine."""
    make = native.wasmcall.Ticker if kind == "c" else PythonTicker
    ticker = make(0.001, 0)
    engine = rt.engine
    ticker.add(native.address(engine.ptr()), engine)
    if kind == "c":
        with pytest.raises(ValueError, match="at most 8 engines"):
            for _ in range(8):
                ticker.add(native.address(engine.ptr()), engine)
    ticker.stop()
    stopped = ticker.epoch
    ticker.stop()  # stopping twice is harmless
    threading.Event().wait(0.02)
    assert ticker.epoch == stopped
    with pytest.raises(ValueError, match="stopped"):
        ticker.add(native.address(engine.ptr()), engine)
    if kind == "c":
        with pytest.raises(ValueError, match="over 0 s"):
            native.wasmcall.Ticker(0.0, 0)
