"""What Python functions cost in the shared runtime, next to the Zig hello's figures.

One run measures: the shared runtime's build (once per machine, skipped when cached),
the first deploy on a fresh host (compiles the runtime), the next deploys (build +
deploy of another function, then of a changed one), an unchanged build, loading from
the disk cache in a fresh process, the first response of a fresh ``nimbus serve`` and
after scale to zero, fresh instance + call (a hello and a handler importing json, re,
datetime and dataclasses; back to back, and spaced 5 ms apart), instantiation alone
and its floor in wasmtime (``bench/instantiate_floor.py``), and disk, compile time and
RSS for 1 and for N functions::

    python -m bench.python_guests [--count 10] [--calls 300]
    python -m bench.python_guests --fresh-only [--calls 300]   # fresh instance + call only
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench import instantiate_floor
from bench.runtime import measure, percentile
from bench.servers import ROOT, Process, nimbus
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.platform.python_runtime import runtime_wasm
from host.runtime.invocation import Invocation
from host.runtime.runtime import LoadedFunction, Runtime
from host.toolchain.builder import build_function
from host.toolchain.python_runtime import runtime_dir

MiB = 1024 * 1024
#: the gap between spaced calls
SPACING_S = 0.005
#: how long RSS is left to settle before it is read (the background thread makes its
#: instances ahead in the meantime, so 1 and N functions are compared alike)
SETTLE_S = 0.5
HELLO = ROOT / "tests" / "guests" / "hello_py" / "handler.py"
IMPORT_HEAVY = """
import dataclasses, datetime, json, re

@dataclasses.dataclass
class Order:
    id: int
    placed: str

def handle(event):
    when = datetime.datetime(2026, 1, 2, 3, 4, 5).isoformat()
    order = Order(int(re.sub(r"\\D", "", "order-42")), when)
    return json.loads(json.dumps(dataclasses.asdict(order)))
"""
#: the floor: instantiate, call and tear down around a handler that does nothing
RETURNS_AT_ONCE = "def handle(event):\n    return None\n"
_LOAD_PROBE = """
import sys, time
SETTLE_S = %s
import msgpack
from pathlib import Path
from host.hostcalls.catalog import all_host_functions
from host.runtime.invocation import Invocation
from host.runtime.runtime import Runtime
from host.platform.python_runtime import runtime_wasm

def rss():  # RSS and anonymous memory, once the instances made ahead are made
    time.sleep(SETTLE_S)
    lines = Path("/proc/self/status").read_text().splitlines()
    status = dict(line.split(":", 1) for line in lines)
    return [int(status[field].split()[0]) * 1024 for field in ("VmRSS", "RssAnon")]

wasms = [Path(p).read_bytes() for p in sys.argv[2:]]
event = msgpack.packb({"kind": "invoke", "input": None})
rss0, anon0 = rss()
rt = Runtime(Path(sys.argv[1]), all_host_functions(),
             python_runtime=runtime_wasm)
t0 = time.perf_counter()
fn = rt.load("f0", wasms[0])
load_ms = (time.perf_counter() - t0) * 1000
rt.invoke(fn, event, Invocation("req", "f0"))
rss1, anon1 = rss()
for i, wasm in enumerate(wasms):
    rt.invoke(rt.load(f"f{i}", wasm), event, Invocation("req", f"f{i}"))
rss2, anon2 = rss()
print(load_ms, fn.cache_hit, rss1 - rss0, rss2 - rss0, anon1 - anon0, anon2 - anon0)
"""


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _function(root: Path, i: int, source: str | None = None) -> Path:
    d = root / f"py{i}"
    d.mkdir(exist_ok=True)
    text = HELLO.read_text() if source is None else source
    (d / "handler.py").write_text(text + f"\nVARIANT = {i}\n")
    return d


def _build_and_deploy(platform: Platform, src: Path, name: str) -> float:
    t0 = time.perf_counter()
    wasm = build_function(src).wasm.read_bytes()
    platform.deploy(function_spec_from_dict(name, {"wasm": "x.wasm", "idle_ttl": "1h"}), wasm)
    return time.perf_counter() - t0


def _fresh_calls(
    rt: Runtime, fn: LoadedFunction, calls: int, gap_s: float = 0.0
) -> dict[str, float]:
    """Fresh instance + call, back to back, or spaced ``gap_s`` apart (requests that
    arrive one at a time: a Python instance is then made, and the last one dropped,
    between calls instead of during them)."""
    from bench.runtime import hello_event

    event = hello_event()
    for _ in range(20):
        rt.invoke(fn, event, Invocation("req-bench", fn.name))
    us, cpu = [], []
    faults = 0
    for _ in range(calls):
        if gap_s:
            time.sleep(gap_s)
        f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        rt.invoke(fn, event, Invocation("req-bench", fn.name))
        cpu.append((time.thread_time_ns() - c0) / 1000)
        us.append((time.perf_counter_ns() - t0) / 1000)
        faults += resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0
    return {
        "median_us": statistics.median(us),
        "p99_us": percentile(us, 0.99),
        # this thread's CPU time: what a shared, oversubscribed machine inflates least
        "cpu_median_us": statistics.median(cpu),
        # page faults on the calling thread (copy-on-write of the memory image, mostly)
        "faults_per_call": faults / calls,
    }


def _made_ahead_or_not(cache: Path, wasm: bytes, calls: int) -> dict[str, Any]:
    """Fresh instance + call of the hello with instances made ahead and warmed (the
    default), made ahead only, and made inline, in one process, in alternating blocks
    (so all see the same machine load): back to back, and spaced 5 ms apart."""
    from bench.runtime import hello_event
    from host.hostcalls.catalog import all_host_functions

    event = hello_event()
    modes = ("made_ahead", "made_ahead_unwarmed", "inline")
    hosts = {}
    for mode in modes:
        rt = Runtime(
            cache, all_host_functions(), python_runtime=runtime_wasm, python_instances=mode
        )
        hosts[mode] = (rt, rt.load("hello", wasm))
    out: dict[str, Any] = {"instantiate_alone_us": _instantiate_alone(*hosts["inline"], calls)}
    try:
        for gap in (0.0, SPACING_S):
            wall: dict[str, list[float]] = {mode: [] for mode in modes}
            cpu: dict[str, list[float]] = {mode: [] for mode in modes}
            for block in range(max(2, calls // 25)):
                for mode in modes[:: 1 if block % 2 else -1]:
                    rt, fn = hosts[mode]
                    for i in range(25):
                        time.sleep(gap)
                        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
                        rt.invoke(fn, event, Invocation("r", "hello"))
                        if i >= 3:  # the block's first calls find the other's leftovers
                            cpu[mode].append((time.thread_time_ns() - c0) / 1000)
                            wall[mode].append((time.perf_counter_ns() - t0) / 1000)
            for mode in modes:
                key = f"{mode}_{'back_to_back' if not gap else 'spaced_5ms'}"
                out[key] = {
                    "median_us": statistics.median(wall[mode]),
                    "p99_us": percentile(wall[mode], 0.99),
                    "cpu_median_us": statistics.median(cpu[mode]),
                }
    finally:
        for rt, _ in hosts.values():
            rt.close()
    return out


def _instantiate_alone(rt: Runtime, fn: LoadedFunction, calls: int) -> float:
    """Median microseconds to instantiate the runtime in a fresh store (no call): the
    part of a fresh instance + call that a made-ahead instance takes off the request's
    path (see ``bench/instantiate_floor.py`` for what wasmtime spends it on)."""
    from host.runtime import native

    times = []
    for key in range(calls):
        store = native.NativeStore(fn.engine_ptr, key, fn.limits.memory_bytes)
        store.set_deadline(1 << 20)
        store.give_empty_wasi()
        t0 = time.perf_counter_ns()
        native.instantiate(fn.pre_ptr, store.ctx)
        times.append((time.perf_counter_ns() - t0) / 1000)
        store.close()
    return statistics.median(times)


def _fresh_process(cache: Path, wasms: list[Path]) -> tuple[float, ...]:
    """A new process loading from ``cache``: the first function's load time (ms), and
    its RSS growth (MiB) with the first function warm and with all of them warm, then
    the same for its anonymous memory alone (RSS counts each mapping of a page of the
    shared runtime's image, which the page cache holds once)."""
    out = subprocess.run(
        [sys.executable, "-c", _LOAD_PROBE % SETTLE_S, str(cache), *map(str, wasms)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.split()
    assert out[1] == "True", "the fresh process did not hit the cache"
    return (float(out[0]), *(int(x) / MiB for x in out[2:6]))


def _server(tmp: Path, wasms: dict[str, Path], cache: Path) -> dict[str, dict[str, float]]:
    """First response of a fresh ``nimbus serve`` (asked as soon as it answers, and
    once it is ready) and after scale to zero, per function (the data dir shares
    ``cache``: the runtime is compiled there already)."""
    app = tmp / "app"
    app.mkdir(parents=True)
    lines = []
    for name, wasm in wasms.items():
        lines += [f"[functions.{name}]", f'wasm = "{wasm}"', 'idle_ttl = "1s"', ""]
        lines += ["[[routes]]", 'method = "GET"', f'path = "/{name}/{{name}}"']
        lines += [f'function = "{name}"', ""]
    (app / "nimbus.toml").write_text("\n".join(lines))
    data = tmp / "data"
    data.mkdir()
    (data / "cache").symlink_to(cache)
    nimbus("up", str(app), "--data", str(data)).stop()  # deploys and fills the cache
    out: dict[str, dict[str, float]] = {n: {} for n in wasms}
    client = httpx.Client(timeout=60)

    def timed(server: Process, name: str) -> float:
        t0 = time.perf_counter()
        client.get(f"{server.url}/{name}/x").raise_for_status()
        return (time.perf_counter() - t0) * 1000

    for name in wasms:  # asked as soon as a fresh server answers, before it is ready
        server = nimbus("serve", "--data", str(data))
        try:
            out[name]["first_response_at_listen_ms"] = timed(server, name)
        finally:
            server.stop()
    server = nimbus("serve", "--data", str(data))
    try:
        server.wait_ready()  # its Python functions prepared, once it listens
        client.get(f"{server.url}/_admin/health")  # the connection, opened
        for name in wasms:
            out[name]["first_response_ms"] = timed(server, name)
            warm = [timed(server, name) for _ in range(20)]
            out[name]["warm_http_ms"] = statistics.median(warm)
        time.sleep(2.5)  # idle_ttl 1s + the 1s sweep: every function dropped
        for name in wasms:
            out[name]["after_scale_to_zero_ms"] = timed(server, name)
    finally:
        server.stop()
    return out


def run(count: int, calls: int) -> dict[str, Any]:
    out: dict[str, Any] = {"functions": count}
    zig_wasm = build_function(ROOT / "functions" / "hello").wasm
    zig = measure(zig_wasm.read_bytes(), calls * 10)
    t0 = time.perf_counter()
    cached = any(runtime_dir().glob("runtime-*.wasm"))
    runtime_path = runtime_wasm()
    out["runtime_build_s"] = None if cached else time.perf_counter() - t0
    out["runtime_module_mib"] = runtime_path.stat().st_size / MiB
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        srcs = [_function(tmp, i) for i in range(count)]
        heavy = _function(tmp, count, IMPORT_HEAVY)
        rss0 = _rss()
        platform = Platform(tmp / "data")
        try:
            first = _build_and_deploy(platform, srcs[0], "py0")
            platform.invoke("py0", {"kind": "invoke", "input": None})
            out["first_deploy_s"] = first
            out["disk_1_mib"] = _du(platform.data_dir / "cache") / MiB
            time.sleep(SETTLE_S)
            out["rss_1_warm_mib"] = (_rss() - rss0) / MiB
            nexts = [_build_and_deploy(platform, s, f"py{i + 1}") for i, s in enumerate(srcs[1:])]
            out["next_deploy_s_median"] = statistics.median(nexts)
            out["next_deploy_s_max"] = max(nexts)
            out["compile_1_s"] = first
            out["compile_n_s"] = first + sum(nexts)
            out[f"rss_{count}_deployed_mib"] = (_rss() - rss0) / MiB
            for i in range(count):
                platform.invoke(f"py{i}", {"kind": "invoke", "input": None})
            time.sleep(SETTLE_S)
            out[f"rss_{count}_warm_mib"] = (_rss() - rss0) / MiB
            out[f"disk_{count}_mib"] = _du(platform.data_dir / "cache") / MiB
            _function(tmp, 1, HELLO.read_text() + "\nCHANGED = True\n")
            out["changed_redeploy_s"] = _build_and_deploy(platform, srcs[1], "py1")
            t0 = time.perf_counter()
            assert not build_function(srcs[0]).rebuilt
            out["unchanged_build_ms"] = (time.perf_counter() - t0) * 1000
            _build_and_deploy(platform, heavy, "heavy")
            rt = platform.runtime
            hello_fn = rt.load("hello", build_function(srcs[0]).wasm.read_bytes())
            heavy_fn = rt.load("heavy", build_function(heavy).wasm.read_bytes())
            zig_fn = rt.load("zig", zig_wasm.read_bytes())
            out["fresh_call_hello"] = _fresh_calls(rt, hello_fn, calls)
            out["fresh_call_import_heavy"] = _fresh_calls(rt, heavy_fn, calls)
            out["fresh_call_hello_spaced_5ms"] = _fresh_calls(rt, hello_fn, calls, SPACING_S)
            out["fresh_call_import_heavy_spaced_5ms"] = _fresh_calls(rt, heavy_fn, calls, SPACING_S)
            out["fresh_call_zig_same_harness"] = _fresh_calls(rt, zig_fn, calls * 10)
            cache = platform.data_dir / "cache"
            wasms = [build_function(s).wasm for s in srcs]
            out["fresh_call_hello_made_ahead_or_not"] = _made_ahead_or_not(
                cache, wasms[0].read_bytes(), calls
            )
        finally:
            platform.close()
        probes = [_fresh_process(cache, wasms) for _ in range(3)]
        out["cache_load_fresh_process_ms"] = statistics.median(p[0] for p in probes)
        out["fresh_process_rss_1_warm_mib"] = statistics.median(p[1] for p in probes)
        out[f"fresh_process_rss_{count}_warm_mib"] = statistics.median(p[2] for p in probes)
        out["fresh_process_anon_1_warm_mib"] = statistics.median(p[3] for p in probes)
        out[f"fresh_process_anon_{count}_warm_mib"] = statistics.median(p[4] for p in probes)
        wasm0 = wasms[0]
        print(json.dumps(out), file=sys.stderr)  # the in-process figures, in case
        server = _server(tmp / "serve", {"zig": zig_wasm, "python": wasm0}, cache)
    out["server"] = server["python"]
    out["instantiate_floor"] = instantiate_floor.measure()
    out["zig_hello"] = {
        "module_kib": zig_wasm.stat().st_size / 1024,
        "compile_ms": zig["compile_ms"],
        "cache_load_ms": zig["cache_load_ms"],
        "fresh_call_median_us": zig["fresh_median_us"],
        "fresh_call_p99_us": zig["fresh_p99_us"],
        **server["zig"],
    }
    out["ratios"] = {
        f"disk_{count}_over_1": out[f"disk_{count}_mib"] / out["disk_1_mib"],
        f"compile_{count}_over_1": out["compile_n_s"] / out["compile_1_s"],
        f"rss_{count}_warm_over_1": out[f"rss_{count}_warm_mib"] / out["rss_1_warm_mib"],
        f"fresh_process_rss_{count}_over_1": out[f"fresh_process_rss_{count}_warm_mib"]
        / out["fresh_process_rss_1_warm_mib"],
        f"fresh_process_anon_{count}_over_1": out[f"fresh_process_anon_{count}_warm_mib"]
        / out["fresh_process_anon_1_warm_mib"],
        "python_fresh_over_zig": out["fresh_call_hello"]["median_us"] / zig["fresh_median_us"],
        "python_fresh_cpu_over_zig": out["fresh_call_hello"]["cpu_median_us"]
        / out["fresh_call_zig_same_harness"]["cpu_median_us"],
    }
    return out


def fresh_only(calls: int) -> dict[str, Any]:
    """Only fresh instance + call, back to back (the hello, the import-heavy handler,
    one that returns at once, and the Zig hello in the same harness): a minute where
    the whole run takes several."""
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # compiled by one platform, measured in another loading it from the cache, as a
        # host does after its first deploy (a process that has just compiled the runtime
        # instantiates it slower)
        compiling = Platform(tmp / "data")
        try:
            compiling.runtime.python().start()
        finally:
            compiling.close()
        platform = Platform(tmp / "data")
        try:
            rt = platform.runtime
            sources = {
                "hello": None,
                "import_heavy": IMPORT_HEAVY,
                "returns_at_once": RETURNS_AT_ONCE,
            }
            for i, (name, source) in enumerate(sources.items()):
                fn = rt.load(name, build_function(_function(tmp, i, source)).wasm.read_bytes())
                out[f"fresh_call_{name}"] = _fresh_calls(rt, fn, calls)
            zig = rt.load("zig", build_function(ROOT / "functions" / "hello").wasm.read_bytes())
            out["fresh_call_zig_same_harness"] = _fresh_calls(rt, zig, calls * 10)
        finally:
            platform.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument(
        "--fresh-only", action="store_true", help="measure only fresh instance + call"
    )
    args = parser.parse_args()
    result = fresh_only(args.calls) if args.fresh_only else run(args.count, args.calls)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
