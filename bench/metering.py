"""What metering costs on the hot path: gateway hello req/s with it on and off.

One app, one data dir; the server is started alternately with metering on and with
``NIMBUS_METERING=off`` (a switch for this benchmark only), several rounds each, so
drift on a shared machine hits both sides alike. The figure to read is
``on_over_off``, the ratio of the medians (target: at least 0.97).
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.http import _app, measure, wrk_path
from bench.servers import nimbus


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
        for _ in range(rounds):
            for side in ("on", "off"):
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
    return results
