"""The price of a fresh sandbox per call, for ``functions/hello``.

Prints compile time, load-from-cache time, and the median/p99 of a fresh-instance
invocation (new store + instantiate + call + drop; through the runtime's C extension,
and the same through ctypes beside it) next to a call on one reused instance and to a
bare instantiate, all measured in this run::

    python -m bench.runtime [--calls 10000] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from host.hostcalls.catalog import all_host_functions
from host.runtime import native
from host.runtime.invocation import Invocation
from host.runtime.runtime import Runtime
from host.toolchain.builder import build_function

ROOT = Path(__file__).resolve().parent.parent


def hello_event() -> bytes:
    return msgpack.packb(
        {
            "kind": "http",
            "id": "req-bench",
            "request_id": "req-bench",
            "function": "hello",
            "deadline_ms": 0,
            "env": {},
            "method": "GET",
            "path": "/hello/bench",
            "params": {"name": "bench"},
            "query": {},
            "raw_query": "",
            "headers": {"host": "127.0.0.1"},
            "body": b"",
        }
    )


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _timed(fn: Any, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


def measure(wasm: bytes, calls: int) -> dict[str, Any]:
    event = hello_event()
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        rt = Runtime(cache, all_host_functions())
        t0 = time.perf_counter()
        fn = rt.load("hello", wasm)
        compile_ms = (time.perf_counter() - t0) * 1000
        rt.close()

        rt = Runtime(cache, all_host_functions())
        t0 = time.perf_counter()
        fn = rt.load("hello", wasm)
        cache_load_ms = (time.perf_counter() - t0) * 1000
        assert fn.cache_hit

        def fresh() -> None:
            rt.invoke(fn, event, Invocation("req-bench", "hello"))

        def instantiate_only() -> None:
            store = native.NativeStore(rt.engine.ptr(), 0, fn.limits.memory_bytes)
            native.instantiate(fn.pre_ptr, store.ctx)
            store.close()

        for _ in range(200):  # warm up allocator and caches
            fresh()
        fresh_us = _timed(fresh, calls)
        ctypes_us: list[float] = []
        if native.wasmcall is not None:  # the same calls without the C extension
            extension, native.wasmcall = native.wasmcall, None
            try:
                ctypes_us = _timed(fresh, calls)
            finally:
                native.wasmcall = extension
        inst_us = _timed(instantiate_only, calls)
        reused = rt.reused_instance(fn, Invocation("req-bench", "hello"))
        reused_us = _timed(lambda: reused.call(event), calls)
        reused.close()
        rt.close()
    fresh_med = statistics.median(fresh_us)
    reused_med = statistics.median(reused_us)
    # the reused instance is called through ctypes: its ratio is to a fresh one called so
    like_reused = statistics.median(ctypes_us) if ctypes_us else fresh_med
    return {
        "module_bytes": len(wasm),
        "compile_ms": round(compile_ms, 3),
        "cache_load_ms": round(cache_load_ms, 3),
        "calls": calls,
        "fresh_median_us": round(fresh_med, 2),
        "fresh_p99_us": round(percentile(fresh_us, 0.99), 2),
        "fresh_ctypes_median_us": round(statistics.median(ctypes_us), 2) if ctypes_us else None,
        "reused_median_us": round(reused_med, 2),
        "reused_p99_us": round(percentile(reused_us, 0.99), 2),
        "instantiate_median_us": round(statistics.median(inst_us), 2),
        "fresh_over_reused": round(like_reused / reused_med, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    wasm = build_function(ROOT / "functions" / "hello").wasm.read_bytes()
    r = measure(wasm, args.calls)
    if args.json:
        print(json.dumps(r, indent=2))
        return
    print(f"functions/hello: {r['module_bytes']} bytes of wasm")
    print(f"  compile                      {r['compile_ms']:10.2f} ms")
    print(f"  load from disk cache         {r['cache_load_ms']:10.2f} ms")
    print(f"  over {r['calls']} calls each:         median µs     p99 µs")
    print(f"  fresh instance + call + drop {r['fresh_median_us']:10.1f} {r['fresh_p99_us']:10.1f}")
    if r["fresh_ctypes_median_us"] is not None:
        print(f"  … through ctypes, no C ext.  {r['fresh_ctypes_median_us']:10.1f}")
    print(
        f"  reused instance, call only   {r['reused_median_us']:10.1f} {r['reused_p99_us']:10.1f}"
        "  (through ctypes)"
    )
    print(f"  instantiate alone (raw)      {r['instantiate_median_us']:10.1f}")
    print(f"  fresh / reused (both ctypes) {r['fresh_over_reused']:10.2f}x")


if __name__ == "__main__":
    main()
