"""What ten Python functions cost: build time, compile time, disk and resident memory.

Each function is a distinct handler.py (so nothing is shared by content hash), built
with componentize-py, deployed into one platform (compiled once into the disk cache),
then invoked once each (all ten warm), next to the same figures for the Zig hello::

    python -m bench.python_guests [--count 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.servers import ROOT
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.toolchain.builder import build_function

MiB = 1024 * 1024


def _rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(count: int) -> dict[str, Any]:
    src = ROOT / "tests" / "guests" / "hello_py" / "handler.py"
    out: dict[str, Any] = {"functions": count}
    with tempfile.TemporaryDirectory() as tmp:
        builds, wasms = [], []
        for i in range(count):
            d = Path(tmp) / f"py{i}"
            d.mkdir()
            shutil.copy(src, d / "handler.py")
            (d / "handler.py").write_text((d / "handler.py").read_text() + f"\nVARIANT = {i}\n")
            t0 = time.perf_counter()
            wasms.append(build_function(d).wasm.read_bytes())
            builds.append(time.perf_counter() - t0)
        out["build_s_median"] = sorted(builds)[count // 2]
        out["component_mib"] = len(wasms[0]) / MiB
        platform = Platform(Path(tmp) / "data")
        try:
            rss0 = _rss()
            compiles = []
            for i, wasm in enumerate(wasms):
                t0 = time.perf_counter()
                platform.deploy(function_spec_from_dict(f"py{i}", {"wasm": "x.wasm"}), wasm)
                compiles.append(time.perf_counter() - t0)
            out["deploy_compile_s_median"] = sorted(compiles)[count // 2]
            out["cache_disk_mib"] = _du(platform.data_dir / "cache") / MiB
            out["modules_disk_mib"] = _du(platform.data_dir / "modules") / MiB
            rss_deployed = _rss()
            invoke = []
            for i in range(count):
                t0 = time.perf_counter()
                platform.invoke(f"py{i}", {"kind": "invoke", "input": None})
                invoke.append((time.perf_counter() - t0) * 1000)
            out["first_invoke_ms_median"] = sorted(invoke)[count // 2]
            t0 = time.perf_counter()
            for _ in range(50):
                platform.invoke("py0", {"kind": "invoke", "input": None})
            out["warm_invoke_ms"] = (time.perf_counter() - t0) * 1000 / 50
            out["rss_growth_deployed_mib"] = (rss_deployed - rss0) / MiB
            out["rss_growth_all_warm_mib"] = (_rss() - rss0) / MiB
            out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        finally:
            platform.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10)
    print(json.dumps(run(parser.parse_args().count), indent=2))


if __name__ == "__main__":
    main()
