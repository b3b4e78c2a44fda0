"""``nimbus usage``: requests, GB-seconds and cost per function, as a rich table.

A client of ``GET /_admin/usage`` (``host/gateway/usage_api.py``), so the command and
the API always show the same numbers: ``--json`` prints the API's document as is.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from host.cli.data import admin_client

out = Console()


def cmd_usage(args: argparse.Namespace) -> None:
    params = {"since": args.since, "by": args.by}
    if args.function:
        params["function"] = args.function
    report: dict[str, Any] = admin_client(args).request("GET", "/usage", params=params)
    if args.json:
        out.print_json(json.dumps(report))
        return
    out.print(usage_table(report))


def usage_table(report: dict[str, Any]) -> Table:
    """The report as a table: one row per function per period, then the total."""
    currency = report["prices"]["currency"]
    table = Table(
        report["by"], "function", "requests", "errors", "billed ms", "CPU ms", "GB-s",
        "peak mem", "out", f"cost ({currency})",
        title=f"usage by {report['by']}",
        caption=_prices_caption(report["prices"]),
    )  # fmt: skip
    for r in report["rows"]:
        table.add_row(
            r["period"], r["function"], str(r["requests"]), str(r["errors"]),
            str(r["billed_ms"]), f"{r['cpu_ms']:.1f}", f"{r['gb_s']:.6f}",
            _size(r["peak_memory"]), _size(r["bytes_out"]), f"{r['cost']:.8f}",
        )  # fmt: skip
    t = report["total"]
    table.add_section()
    table.add_row(
        "total", "", str(t["requests"]), str(t["errors"]), str(t["billed_ms"]),
        f"{t['cpu_ms']:.1f}", f"{t['gb_s']:.6f}", _size(t["peak_memory"]),
        _size(t["bytes_out"]), f"{t['cost']:.8f}", style="bold",
    )  # fmt: skip
    return table


def _prices_caption(p: dict[str, Any]) -> str:
    return (
        f"{p['per_million_requests']} per 1M requests, {p['per_gb_second']} per GB-s, "
        f"{p['per_gb_out']} per GB out"
    )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"


def add_usage_command(sub: Any, remote: Callable[[argparse.ArgumentParser], None]) -> None:
    c = sub.add_parser("usage", help="metered usage and its cost per function")
    c.add_argument("--function", help="only this function")
    c.add_argument("--since", default="7d", help="how far back (a duration: 7d, 12h; 7d)")
    c.add_argument("--by", choices=("hour", "day"), default="hour")
    c.add_argument("--json", action="store_true", help="the admin API's JSON as is")
    c.set_defaults(handler=cmd_usage)
    remote(c)
