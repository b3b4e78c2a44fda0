"""Cold start, broken down: compile, load from the disk cache in a fresh process, first
response of a fresh server for a cached module, and first response after scale to zero.

Each cold figure sits next to the warm invocation of the same function measured in
the same run (in-process for the first two, over HTTP for the last two).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.runtime import hello_event
from bench.servers import ROOT, nimbus
from host.hostcalls.catalog import all_host_functions
from host.platform.python_runtime import runtime_wasm
from host.runtime.invocation import Invocation
from host.runtime.runtime import Runtime
from host.toolchain.builder import build_function

FUNCTIONS = {
    "hello": ROOT / "functions" / "hello",
    "big": ROOT / "bench" / "guests" / "big_c",
    "python": ROOT / "tests" / "guests" / "hello_py",
}

_LOAD_PROBE = """
import sys, time
from pathlib import Path
from host.hostcalls.catalog import all_host_functions
from host.runtime.runtime import Runtime
from host.platform.python_runtime import runtime_wasm
wasm = Path(sys.argv[2]).read_bytes()
rt = Runtime(Path(sys.argv[1]), all_host_functions(),
             python_runtime=runtime_wasm)
t0 = time.perf_counter()
fn = rt.load("f", wasm)
print((time.perf_counter() - t0) * 1000, fn.cache_hit)
"""


def _runtime(cache: Path) -> Runtime:
    return Runtime(
        cache,
        all_host_functions(),
        python_runtime=runtime_wasm,
    )


def _in_process(name: str, wasm: bytes, runs: int, cache: Path) -> dict[str, Any]:
    """Compile ``runs`` times (the first into ``cache``, which the other figures and the
    server side then load from: the shared Python runtime compiles in tens of seconds
    on a loaded machine, so it is compiled no more often than measured)."""
    compile_ms = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            rt = _runtime(cache if i == 0 else Path(tmp))
            t0 = time.perf_counter()
            rt.load(name, wasm)
            compile_ms.append((time.perf_counter() - t0) * 1000)
            rt.close()
    rt = _runtime(cache)
    fn = rt.load(name, wasm)
    event = hello_event()
    warm = []
    for _ in range(200):
        t0 = time.perf_counter()
        rt.invoke(fn, event, Invocation("req-bench", name))
        warm.append((time.perf_counter() - t0) * 1000)
    rt.close()
    load_ms = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", _LOAD_PROBE, str(cache), str(FUNCTIONS_WASM[name])],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        assert out[1] == "True", "the fresh process did not hit the cache"
        load_ms.append(float(out[0]))
    return {
        "module_bytes": len(wasm),
        "compile_ms": statistics.median(compile_ms),
        "cache_load_fresh_process_ms": statistics.median(load_ms),
        "warm_invoke_ms": statistics.median(warm),
    }


FUNCTIONS_WASM: dict[str, Path] = {}


def _app(tmp: Path) -> Path:
    app = tmp / "app"
    app.mkdir()
    lines = []
    for name, wasm in FUNCTIONS_WASM.items():
        lines += [f"[functions.{name}]", f'wasm = "{wasm}"', 'idle_ttl = "1s"', ""]
        lines += [
            "[[routes]]",
            'method = "GET"',
            f'path = "/{name}/{{name}}"',
            f'function = "{name}"',
            "",
        ]
    (app / "nimbus.toml").write_text("\n".join(lines))
    return app


_client = httpx.Client(timeout=30)


def _timed_get(url: str) -> float:
    """One request on a kept-alive connection (connecting is not what is measured)."""
    t0 = time.perf_counter()
    r = _client.get(url)
    r.raise_for_status()
    return (time.perf_counter() - t0) * 1000


def _server_side(runs: int, cache: Path) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, list[float]]] = {
        n: {"first_response_ms": [], "after_idle_ms": [], "warm_http_ms": []} for n in FUNCTIONS
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        # the cache _in_process compiled into: `nimbus up` then only loads (the shared
        # Python runtime compiles longer than its start-up deadline on a loaded machine)
        data.mkdir()
        (data / "cache").symlink_to(cache)
        first = nimbus("up", str(_app(Path(tmp))), "--data", str(data))  # deploys + caches
        first.stop()
        for _ in range(runs):
            server = nimbus("serve", "--data", str(data))
            try:
                server.wait_ready()  # its Python functions prepared, once it listens
                _client.get(f"{server.url}/_admin/health")  # the connection, opened
                for name in FUNCTIONS:
                    url = f"{server.url}/{name}/x"
                    out[name]["first_response_ms"].append(_timed_get(url))
                    out[name]["warm_http_ms"] += [_timed_get(url) for _ in range(20)]
                time.sleep(2.5)  # idle_ttl 1s + the 1s sweep: both functions dropped
                for name in FUNCTIONS:
                    out[name]["after_idle_ms"].append(_timed_get(f"{server.url}/{name}/x"))
            finally:
                server.stop()
    return {n: {k: statistics.median(v) for k, v in d.items()} for n, d in out.items()}


def run(quick: bool) -> dict[str, Any]:
    runs = 1 if quick else 5
    results: dict[str, Any] = {}
    for name, src in FUNCTIONS.items():
        FUNCTIONS_WASM[name] = build_function(src).wasm
    with tempfile.TemporaryDirectory() as shared:
        shared_cache = Path(shared)
        for name, wasm in FUNCTIONS_WASM.items():
            results[name] = _in_process(name, wasm.read_bytes(), runs, shared_cache)
        for name, figures in _server_side(runs, shared_cache).items():
            results[name].update(figures)
    for r in results.values():
        r["compile_over_warm"] = r["compile_ms"] / r["warm_invoke_ms"]
        r["cache_load_over_warm"] = r["cache_load_fresh_process_ms"] / r["warm_invoke_ms"]
        r["first_response_over_warm_http"] = r["first_response_ms"] / r["warm_http_ms"]
        r["after_idle_over_warm_http"] = r["after_idle_ms"] / r["warm_http_ms"]
    return results
