"""Resident memory of a host with 1, 10 and 100 functions warm, and after scale to zero.

Each function is a separately deployed copy of hello (same module bytes, so the
module cache holds one artifact but every function has its own warm InstancePre).
The reference is the same server's memory with no function deployed.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from bench.servers import ROOT, nimbus
from host.toolchain.builder import build_function

MiB = 1024 * 1024


def run(quick: bool) -> dict[str, Any]:
    wasm = build_function(ROOT / "functions" / "hello").wasm.read_bytes()
    counts = (1, 10, 30) if quick else (1, 10, 100)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        server = nimbus("serve", "--data", str(Path(tmp) / "data"))
        try:
            admin = server.admin
            time.sleep(0.5)
            base = server.rss_bytes()
            results["empty_rss_mib"] = base / MiB
            deployed = 0
            for n in counts:
                while deployed < n:
                    r = admin.put(
                        f"/functions/f{deployed}",
                        files={"module": ("hello.wasm", wasm)},
                        data={"config": '{"idle_ttl": "3s"}'},
                    )
                    r.raise_for_status()
                    deployed += 1
                for i in range(n):
                    admin.post(f"/functions/f{i}/invoke", content="{}").raise_for_status()
                rss = server.rss_bytes()
                results[f"warm_{n}_rss_mib"] = rss / MiB
                results[f"warm_{n}_over_empty"] = rss / base
            time.sleep(5)  # idle_ttl 3s + the sweep: all dropped
            rss = server.rss_bytes()
            results["after_idle_rss_mib"] = rss / MiB
            results["after_idle_over_empty"] = rss / base
        finally:
            server.stop()
    return results
