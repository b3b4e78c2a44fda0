"""``nimbus logs -f``: invocation log lines as they come, coloured by level.

A client of ``GET /_admin/logs/stream`` (``host/gateway/logs_api.py``): each record
the server streams is printed as its log lines, then one line saying how the
invocation ended (as Lambda's END/REPORT lines do), or as JSON lines with ``--json``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from rich.console import Console
from rich.markup import escape

from host.cli.client import AdminClient

LEVEL_STYLES = {"debug": "dim", "info": "", "warn": "yellow", "error": "bold red"}


def follow_logs(
    client: AdminClient, function: str | None, request_id: str | None, as_json: bool
) -> None:
    """Print what the server streams until it stops (or Ctrl-C)."""
    params = {k: v for k, v in (("function", function), ("request_id", request_id)) if v}
    out = Console(highlight=False, soft_wrap=True)
    for record in client.follow(params):
        if as_json:
            print(json.dumps(record), flush=True)
        else:
            for line in record_lines(record):
                out.print(line)


def record_lines(r: dict[str, Any]) -> list[str]:
    """One record as rich-markup lines: its log lines, then how it ended."""
    stamp = _clock(r["started_ms"])
    who = f"[cyan]{escape(r['function'])}[/] [dim]{escape(r['request_id'])}[/]"
    lines = []
    for level, message in r["logs"]:
        style = LEVEL_STYLES.get(level, "")
        text = f"{level.upper():5} {escape(message)}"
        lines.append(f"{stamp} {who} " + (f"[{style}]{text}[/]" if style else text))
    ok = r["outcome"] == "ok"
    end = "[green]END ok[/]" if ok else f"[bold red]END {escape(r['outcome'])}[/]"
    detail = f" {escape(r['error'])}" if r.get("error") else ""
    cold = " cold" if r["cold"] else ""
    lines.append(f"{stamp} {who} {end} {r['duration_ms']:.2f} ms {r['trigger']}{cold}{detail}")
    return lines


def _clock(ms: int) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}"
