"""What metering costs on the hot path: gateway hello req/s with it on and off.

One app, one data dir; the server is started alternately with metering on and with
``NIMBUS_METERING=off`` (a switch for this benchmark only), several rounds each, so
drift on a shared machine hits both sides alike (the order flips every round). The figure to read is
``on_over_off``, the ratio of the medians (target: at least 0.97). Under heavy
contention the HTTP figure swings more than the effect, so ``in_process`` also times
``Platform.invoke`` of hello in alternating blocks with metering on and off: the
microseconds metering adds to one invocation, and the same ratio.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.http import _app, measure, wrk_path
from bench.servers import ROOT, nimbus
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.toolchain.builder import build_function


def run(quick: bool) -> dict[str, Any]:
    seconds = 2 if quick else 5
    rounds = 2 if quick else 4
    connections = 16
    wrk = wrk_path()
    samples: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(Path(tmp))
        data = Path(tmp) / "data"
        nimbus("up", str(app), "--data", str(data)).stop()  # build and deploy once
        for i in range(rounds):
            for side in ("on", "off") if i % 2 == 0 else ("off", "on"):
                env = {"NIMBUS_METERING": side}
                server = nimbus("serve", "--data", str(data), env=env)
                try:
                    measure(server, "/hello/bench", 1, connections, wrk)  # warm up
                    samples[side].append(measure(server, "/hello/bench", seconds, connections, wrk))
                finally:
                    server.stop()
    results: dict[str, Any] = {
        "load_generator": "wrk" if wrk else "asyncio (bench/loadgen.py)",
        "rounds": rounds,
        "seconds": seconds,
    }
    for side, runs in samples.items():
        results[side] = {
            "rps": statistics.median(r["rps"] for r in runs),
            "p50_ms": statistics.median(r["p50_ms"] for r in runs),
            "p99_ms": statistics.median(r["p99_ms"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "rps_each": [round(r["rps"], 1) for r in runs],
        }
    off = results["off"]["rps"]
    results["on_over_off"] = results["on"]["rps"] / off if off else 0.0
    results["in_process"] = _in_process(blocks=4 if quick else 10, calls=200)
    return results


def _in_process(blocks: int, calls: int) -> dict[str, float]:
    """Median µs per ``Platform.invoke`` of hello, metering on vs off, alternating."""
    wasm = build_function(ROOT / "functions" / "hello").wasm.read_bytes()
    event = {"kind": "http", "method": "GET", "path": "/hello/bench", "headers": {}}
    per_call: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp) / "data")
        try:
            platform.deploy(function_spec_from_dict("hello", {"wasm": "h.wasm"}), wasm)
            for _ in range(calls):  # warm up
                platform.invoke("hello", event)
            for i in range(blocks):
                for on in (True, False) if i % 2 == 0 else (False, True):
                    platform.options.metering = on
                    t0 = time.perf_counter()
                    for _ in range(calls):
                        platform.invoke("hello", event)
                    per_call[on].append((time.perf_counter() - t0) / calls * 1e6)
        finally:
            platform.close()
    on_us, off_us = statistics.median(per_call[True]), statistics.median(per_call[False])
    return {
        "on_us_per_call": on_us,
        "off_us_per_call": off_us,
        "metering_us_per_call": on_us - off_us,
        "on_over_off": off_us / on_us if on_us else 0.0,
    }
