"""Queue triggers end to end: messages/s from send to committed effect, with 1 and 2
worker processes, and the latency a trigger adds to a direct invoke.

Throughput: N messages are committed to a queue in one transaction while a server
(already started, functions warm) consumes it with a trivial function that makes
one table write per message; the clock runs from that commit until the queue is
empty. Latency: in-process, one message at a time, from its send's commit to the
visibility of its effect, next to a direct invoke of the same function.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from bench.servers import ROOT, nimbus
from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from host.toolchain.builder import build_function
from host.triggers.manager import TriggerManager

APP = """
[functions.sink]
wasm = "{wasm}"
grants = {{ tables = {{ sink = "read-write" }} }}

[[triggers.queue]]
queue = "jobs"
function = "sink"
batch_size = {batch}
concurrency = 2
"""


def _app(tmp: Path, batch: int) -> Path:
    app = tmp / f"app{batch}"
    app.mkdir(parents=True)
    wasm = build_function(ROOT / "bench" / "guests" / "sink_zig").wasm
    (app / "nimbus.toml").write_text(APP.format(wasm=wasm, batch=batch))
    return app


def _depth(platform: Platform, queue: str) -> int:
    with platform.services.storage.read() as txn:
        return platform.services.queues.stats(txn, queue, int(time.time() * 1000)).depth


def _throughput(tmp: Path, workers: int, n: int, batch: int) -> float:
    data = tmp / f"data-{workers}-{batch}"
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(_app(tmp / f"a{workers}-{batch}", batch)))
    finally:
        platform.close()
    server = nimbus("serve", "--data", str(data), "--workers", str(workers))
    try:
        time.sleep(1.5)  # the workers' trigger threads are up
        platform = Platform(data)
        try:
            e = platform.services.begin("bench")
            for i in range(n):
                e.queue_send("jobs", msgpack.packb(i))
            e.commit()
            t0 = time.perf_counter()
            deadline = t0 + 300
            while _depth(platform, "jobs") and time.perf_counter() < deadline:
                time.sleep(0.02)
            elapsed = time.perf_counter() - t0
        finally:
            platform.close()
    finally:
        server.stop()
    return n / elapsed


def _latency(tmp: Path, rounds: int) -> dict[str, float]:
    data = tmp / "latency"
    platform = Platform(data)
    manager = TriggerManager(platform)
    try:
        apply_manifest(platform, load_manifest(_app(tmp / "lat", 1)))
        manager.start()
        time.sleep(1.5)
        tables = platform.services.tables
        trig, direct = [], []
        for i in range(rounds):
            e = platform.services.begin("bench")
            mid = e.queue_send("jobs", msgpack.packb(i))
            e.commit()
            t0 = time.perf_counter()
            key = f"done.{mid}".encode()
            while True:
                with platform.services.storage.read() as txn:
                    if tables.get(txn, "sink", key) is not None:
                        break
                time.sleep(0.0002)
            trig.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            platform.invoke("sink", {"kind": "invoke", "id": f"direct-{i}"})
            direct.append((time.perf_counter() - t0) * 1000)
    finally:
        manager.stop()
        platform.close()
    return {
        "trigger_ms_median": statistics.median(trig),
        "direct_invoke_ms_median": statistics.median(direct),
        "added_ms": statistics.median(trig) - statistics.median(direct),
    }


def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 5000
    results: dict[str, Any] = {"messages": n}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        results["msgs_per_s_1_worker"] = _throughput(t, 1, n, 1)
        results["msgs_per_s_2_workers"] = _throughput(t, 2, n, 1)
        results["msgs_per_s_1_worker_batch_10"] = _throughput(t, 1, n, 10)
        results["two_over_one_worker"] = (
            results["msgs_per_s_2_workers"] / results["msgs_per_s_1_worker"]
        )
        results.update(_latency(t, 20 if quick else 200))
    return results


if __name__ == "__main__":
    import json

    print(json.dumps(run(False), indent=2))
