"""``python -m bench [SCENARIO…] [--quick]``: every scenario, one table each, one JSON.

Figures go to ``bench/results/latest.json`` with the machine, the versions and the
date. Every figure that can be is next to a reference measured in the same run, and
the ratio is what to read: this machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import (
    coldstart,
    hosts,
    http,
    isolation,
    memory,
    metering,
    outbound,
    policies,
    services,
    storm,
    triggers,
    workflows,
)

SCENARIOS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "coldstart": coldstart.run,
    "isolation": isolation.run,
    "isolation-storm": storm.run,
    "http": http.run,
    "memory": memory.run,
    "policies": policies.run,
    "metering": metering.run,
    "services": services.run,
    "outbound": outbound.run,
    "triggers": triggers.run,
    "workflows": workflows.run,
    "hosts": hosts.run,
}
RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
console = Console()


def machine() -> dict[str, Any]:
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": {
            p: version(p) for p in ("wasmtime", "starlette", "uvicorn", "lmdb", "ziglang")
        },
    }


def table(name: str, figures: dict[str, Any]) -> Table:
    t = Table(title=name, show_lines=False)
    t.add_column("measure")
    t.add_column("value", justify="right")

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, float):
            t.add_row(prefix, f"{value:,.3f}" if abs(value) < 100 else f"{value:,.1f}")
        else:
            t.add_row(prefix, str(value))

    add("", figures)
    return t


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], metavar="SCENARIO")
    parser.add_argument("--quick", action="store_true", help="a smoke run (about a minute)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    chosen = args.scenarios or list(SCENARIOS)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick, "scenarios": {}}
    for name in chosen:
        with console.status(f"running {name}{' (quick)' if args.quick else ''}…"):
            t0 = time.perf_counter()
            figures = SCENARIOS[name](args.quick)
            figures["scenario_seconds"] = time.perf_counter() - t0
        results["scenarios"][name] = figures
        console.print(table(name, figures))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    console.print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
