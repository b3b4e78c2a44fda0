"""What metering costs on the hot path: gateway hello req/s with it on and off.

One app, one data dir; the server is started alternately with metering on and with
``NIMBUS_METERING=off`` (a switch for this benchmark only), several rounds each, so
drift on a shared machine hits both sides alike (the order flips every round). The figure to read is
``on_over_off``, the ratio of the medians (target: at least 0.97). Under heavy
contention the HTTP figure swings more than the effect, so ``in_process`` also times
``Platform.invoke`` of hello in alternating blocks with metering on and off: the
microseconds metering adds to one invocation, and the same ratio, in wall time and in
the invoking thread's CPU time (``cpu_on_over_off``). ``direct`` times the bookkeeping
alone in a loop (a usage entry recorded; an invocation counted in the metrics) beside
the CPU time of a whole invoke, the steadiest figures on a loaded machine, and what
an invoke costs with OpenTelemetry tracing on (off, the default, makes no span).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from bench.http import _app, measure, wrk_path
from bench.servers import ROOT, nimbus
from host.manifest.functions import function_spec_from_dict
from host.platform.call import Call
from host.platform.platform import Platform, PlatformOptions
from host.platform.request import InvocationRequest
from host.toolchain.builder import build_function


def run(quick: bool) -> dict[str, Any]:
    seconds = 1 if quick else 5
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
                    if not quick:
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
    results["in_process"] = _in_process(blocks=6 if quick else 40, calls=100)
    results["direct"] = _direct(calls=2000 if quick else 20000)
    return results


def _in_process(blocks: int, calls: int) -> dict[str, float]:
    """Median µs per ``Platform.invoke`` of hello, metering on vs off, alternating
    blocks: wall time, and the calling thread's CPU time (the guest runs on it), which
    a loaded machine disturbs far less than wall time (descheduled time is not in it)."""
    wasm = build_function(ROOT / "functions" / "hello").wasm.read_bytes()
    event = {"kind": "http", "method": "GET", "path": "/hello/bench", "headers": {}}
    wall: dict[bool, list[float]] = {True: [], False: []}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp) / "data")
        try:
            platform.deploy(function_spec_from_dict("hello", {"wasm": "h.wasm"}), wasm)
            for _ in range(calls):  # warm up
                platform.invoke("hello", event)
            for i in range(blocks):
                for on in (True, False) if i % 2 == 0 else (False, True):
                    platform.options.metering = on
                    t0, c0 = time.perf_counter(), time.thread_time()
                    for _ in range(calls):
                        platform.invoke("hello", event)
                    cpu[on].append((time.thread_time() - c0) / calls * 1e6)
                    wall[on].append((time.perf_counter() - t0) / calls * 1e6)
        finally:
            platform.close()
    on_us, off_us = statistics.median(wall[True]), statistics.median(wall[False])
    on_cpu, off_cpu = statistics.median(cpu[True]), statistics.median(cpu[False])
    return {
        "on_us_per_call": on_us,
        "off_us_per_call": off_us,
        "metering_us_per_call": on_us - off_us,
        "on_over_off": off_us / on_us if on_us else 0.0,
        "cpu_on_us_per_call": on_cpu,
        "cpu_off_us_per_call": off_cpu,
        "cpu_metering_us_per_call": on_cpu - off_cpu,
        "cpu_on_over_off": off_cpu / on_cpu if on_cpu else 0.0,
    }


def _direct(calls: int) -> dict[str, float]:
    """The bookkeeping alone, timed in a loop: a usage entry made and recorded
    (metering) and an invocation record counted in the Prometheus metrics (metrics),
    in µs each, beside the CPU time of a whole ``Platform.invoke`` of hello that
    includes both; ``on_over_off`` is what the invoke would cost without them over
    what it costs with them. Hot caches make these a lower bound, but no scheduler
    noise reaches them, unlike the end-to-end figures on a loaded machine."""
    wasm = build_function(ROOT / "functions" / "hello").wasm.read_bytes()
    event = {"kind": "http", "method": "GET", "path": "/hello/bench", "headers": {}}
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp) / "data")
        try:
            platform.deploy(function_spec_from_dict("hello", {"wasm": "h.wasm"}), wasm)
            invoke_us = _invoke_cpu_us(platform, event)
            call = Call(platform.registry.get("hello"), InvocationRequest("hello", event))
            usage = platform.services.usage
            c0 = time.thread_time()
            for _ in range(calls):
                usage.record(call.usage())
            metering_us = (time.thread_time() - c0) / calls * 1e6
            rec = call.record()
            telemetry = platform.telemetry
            c0 = time.thread_time()
            for _ in range(calls):
                telemetry.record(rec)
            metrics_us = (time.thread_time() - c0) / calls * 1e6
        finally:
            platform.close()
    traced_us = _traced_invoke_cpu_us(wasm, event)
    return {
        "invoke_cpu_us": invoke_us,
        "metering_us": metering_us,
        "metrics_us": metrics_us,
        "on_over_off": (invoke_us - metering_us - metrics_us) / invoke_us,
        "traced_invoke_cpu_us": traced_us,
        "tracing_on_us": traced_us - invoke_us,
    }


class _Discard(SpanExporter):
    """Spans made and exported to nowhere: what tracing costs the host itself."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _traced_invoke_cpu_us(wasm: bytes, event: dict[str, Any]) -> float:
    """CPU µs of a ``Platform.invoke`` of hello with tracing on (its trigger span, its
    invocation span and one per host call, exported as each ends)."""
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp) / "data", PlatformOptions(span_exporter=_Discard()))
        try:
            platform.deploy(function_spec_from_dict("hello", {"wasm": "h.wasm"}), wasm)
            return _invoke_cpu_us(platform, event)
        finally:
            platform.close()


def _invoke_cpu_us(platform: Platform, event: dict[str, Any], n: int = 2000) -> float:
    """CPU µs of one ``Platform.invoke`` of hello, after 200 unmeasured to warm up."""
    for _ in range(200):
        platform.invoke("hello", event)
    c0 = time.thread_time()
    for _ in range(n):
        platform.invoke("hello", event)
    return (time.thread_time() - c0) / n * 1e6
