"""HTTP throughput and latency against the ceiling of the stack, in one run.

(a) a bare Starlette+Uvicorn endpoint returning the same bytes as hello, started by
the harness; (b) hello through the Nimbus gateway; (c) hello with a table read;
(d) hello through two gateway workers; (e) the Node peer, Node's http server with a
new WebAssembly instance of an equivalent hello module per request, when ``node`` is
installed (the ratio ``b_over_node`` is the one issue #17 sets a target for). The load
generator is ``wrk`` when it can be
installed, else the asyncio client in ``bench/loadgen.py``; the output says which.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.loadgen import run_load
from bench.servers import ROOT, Process, bare_starlette, nimbus, node_fresh, peer_wasm
from host.toolchain.builder import build_function


def wrk_path() -> str | None:
    """``wrk`` from PATH, installing it with apt-get when possible."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get"):
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        capture_output=True,
        check=False,
        timeout=300,
    )
    return shutil.which("wrk")


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(
    wrk: str, url: str, seconds: int, connections: int, headers: dict[str, str] | None = None
) -> dict[str, float]:
    extra = [a for k, v in (headers or {}).items() for a in ("-H", f"{k}: {v}")]
    out = subprocess.run(
        [
            wrk,
            f"-t{min(2, connections)}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        return float(m.group(1)) * _UNITS[m.group(2)] if m else 0.0

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": pct("50"),
        "p99_ms": pct("99"),
        "errors": float(errors.group(1)) if errors else 0.0,
    }


#: seconds of unmeasured load before each measured run (not in --quick)
WARMUP_S = 2


def measure(
    proc: Process,
    path: str,
    seconds: int,
    connections: int,
    wrk: str | None,
    headers: dict[str, str] | None = None,
) -> dict[str, float]:
    """Throughput and latency of ``GET path`` (wrk when there is one)."""
    if wrk:
        return _wrk(wrk, proc.url + path, seconds, connections, headers)
    r = run_load("127.0.0.1", proc.port, path, seconds, connections, headers)
    return {
        "rps": r.rps,
        "p50_ms": r.percentile(0.5),
        "p99_ms": r.percentile(0.99),
        "errors": float(r.errors),
    }


def _app(tmp: Path) -> Path:
    hello = build_function(ROOT / "functions" / "hello").wasm
    reader = build_function(ROOT / "bench" / "guests" / "kvread_zig").wasm
    app = tmp / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(
        f"""
[functions.hello]
wasm = "{hello}"

[functions.kvread]
wasm = "{reader}"
grants = {{ tables = {{ bench = "read" }} }}

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"

[[routes]]
method = "GET"
path = "/kv/{{name}}"
function = "kvread"
"""
    )
    return app


def run(quick: bool) -> dict[str, Any]:
    seconds = 1 if quick else 10
    connections = 16
    wrk = wrk_path()
    results: dict[str, Any] = {"load_generator": "wrk" if wrk else "asyncio (bench/loadgen.py)"}
    results["connections"] = connections
    results["seconds"] = seconds
    warmup = 0 if quick else WARMUP_S

    def timed(proc: Process, path: str) -> dict[str, float]:
        """After ``warmup`` seconds of the same load, unmeasured (every worker up,
        the function past its first runs in threads), as the peers harness does."""
        if warmup:
            measure(proc, path, warmup, connections, wrk)
        return measure(proc, path, seconds, connections, wrk)

    bare = bare_starlette(b"hello, bench\n")
    try:
        results["a_bare_starlette"] = timed(bare, "/hello/bench")
    finally:
        bare.stop()
    with tempfile.TemporaryDirectory() as tmp:
        app = _app(Path(tmp))
        data = Path(tmp) / "data"
        server = nimbus("up", str(app), "--data", str(data))
        try:
            server.admin.post("/functions/kvread/invoke", content="{}")
            results["b_hello"] = timed(server, "/hello/bench")
            results["c_hello_table_read"] = timed(server, "/kv/bench")
        finally:
            server.stop()
        two = nimbus("serve", "--data", str(data), "--workers", "2")
        try:
            results["d_hello_2_workers"] = timed(two, "/hello/bench")
        finally:
            two.stop()
        node = node_fresh(peer_wasm(Path(tmp)))
        if node is not None:
            try:
                results["e_node_fresh_instance"] = timed(node, "/hello/bench")
            finally:
                node.stop()
    ceiling = results["a_bare_starlette"]["rps"]
    for key in ("b_hello", "c_hello_table_read", "d_hello_2_workers", "e_node_fresh_instance"):
        if key in results:
            results[key]["over_bare"] = results[key]["rps"] / ceiling if ceiling else 0.0
    if "e_node_fresh_instance" in results:
        node_rps = results["e_node_fresh_instance"]["rps"]
        results["b_over_node"] = results["b_hello"]["rps"] / node_rps if node_rps else 0.0
    return results
