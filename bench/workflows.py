"""Workflow overhead: a run of 10 trivial steps vs 10 direct invokes, and runs/s.

In-process, one engine thread: the per-step overhead is what durability costs (the
lease transaction, the run record, the completion committed with the step).
"""

from __future__ import annotations

import statistics
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

from bench.servers import ROOT
from host.manifest.functions import function_spec_from_dict
from host.manifest.workflows import parse_workflows
from host.orchestrator.engine import Orchestrator
from host.platform.platform import Platform
from host.toolchain.builder import build_function

STEPS = 10


def _definition() -> dict[str, Any]:
    lines = ["[W]", 'start = "s0"']
    for i in range(STEPS):
        lines += [f"[W.steps.s{i}]", 'function = "noop"']
        if i + 1 < STEPS:
            lines.append(f'on_success = "s{i + 1}"')
    return tomllib.loads("\n".join(lines))


def run(quick: bool) -> dict[str, Any]:
    runs = 20 if quick else 200
    wasm = build_function(ROOT / "tests" / "guests" / "counter_zig").wasm.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp))
        try:
            platform.deploy(function_spec_from_dict("noop", {"wasm": "n.wasm"}), wasm)
            engine = Orchestrator(platform, parse_workflows(_definition(), {"noop"}))
            direct = []
            for _ in range(runs):
                t0 = time.perf_counter()
                for _ in range(STEPS):
                    platform.invoke("noop", {"kind": "invoke"})
                direct.append((time.perf_counter() - t0) * 1000)
            one_by_one = []
            for _ in range(runs):
                t0 = time.perf_counter()
                run_id = engine.start("W", {})["id"]
                while engine.poll_once():
                    pass
                one_by_one.append((time.perf_counter() - t0) * 1000)
                assert engine.get(run_id)["status"] == "succeeded"
            t0 = time.perf_counter()
            for _ in range(runs):
                engine.start("W", {})
            while engine.poll_once(limit=64):
                pass
            concurrent_s = time.perf_counter() - t0
        finally:
            platform.close()
    wf_ms, direct_ms = statistics.median(one_by_one), statistics.median(direct)
    return {
        "steps": STEPS,
        "runs": runs,
        "run_of_10_steps_ms": wf_ms,
        "10_direct_invokes_ms": direct_ms,
        "overhead_per_step_ms": (wf_ms - direct_ms) / STEPS,
        "run_over_direct": wf_ms / direct_ms,
        "runs_per_s_one_engine": runs / concurrent_s,
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run(False), indent=2))
