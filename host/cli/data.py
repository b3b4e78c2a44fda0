"""The ``nimbus`` commands about what the functions use: tables, blobs, queues, dead
letters, the event bus, schedules and workflow runs (all clients of the admin API).

Kept apart from ``main.py`` (running, building, deploying) so each file stays
about one thing; ``add_commands`` hangs them on the main parser.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from host.errors import InvalidRequest

out = Console()
err = Console(stderr=True)


def admin_client(args: argparse.Namespace) -> Any:
    """The admin API client for ``--url`` / ``--token`` / ``--data``."""
    from host.cli.client import AdminClient, resolve_token

    return AdminClient(args.url, resolve_token(args.token, Path(args.data)))


def as_json(args: argparse.Namespace, value: Any) -> bool:
    """Print ``value`` as JSON when the command was given ``--json`` (for scripts)."""
    if getattr(args, "json", False):
        out.print_json(json.dumps(value))
        return True
    return False


def json_flag(c: argparse.ArgumentParser) -> None:
    c.add_argument("--json", action="store_true", help="print JSON instead of a table")


def cmd_kv(args: argparse.Namespace) -> None:
    c = admin_client(args)
    if args.action == "get":
        out.print_json(json.dumps(c.kv_get(args.table, args.key)))
    elif args.action == "put":
        out.print_json(json.dumps(c.kv_put(args.table, args.key, json.loads(args.value))))
    elif args.action == "rm":
        out.print_json(json.dumps(c.kv_delete(args.table, args.key)))
    elif args.action == "indexes":
        out.print_json(json.dumps(c.kv_indexes(args.table)["indexes"]))
    else:
        if args.action == "query":
            bounds = {"eq": args.eq, "start": args.start, "end": args.end}
            page = c.kv_query(args.table, args.index, bounds, args.limit, args.cursor, args.reverse)
        else:
            page = c.kv_scan(args.table, args.prefix, args.limit, args.cursor)
        if as_json(args, page):
            return
        table = Table("key", "version", "value")
        for item in page["items"]:
            table.add_row(str(item["key"]), str(item["version"]), json.dumps(item["value"]))
        out.print(table)
        if page["cursor"]:
            out.print(f"more: --cursor {page['cursor']}")


def cmd_blob(args: argparse.Namespace) -> None:
    c = admin_client(args)
    if args.action == "put":
        data = Path(args.file).read_bytes()
        out.print_json(json.dumps(c.blob_put(args.bucket, args.key, data, args.content_type)))
    elif args.action == "get":
        data = c.blob_get(args.bucket, args.key)
        if args.output:
            Path(args.output).write_bytes(data)
        else:
            sys.stdout.buffer.write(data)
    else:
        listing = c.blob_list(args.bucket, args.prefix, args.limit)
        if as_json(args, listing):
            return
        table = Table("key", "size", "content type", "etag")
        for item in listing["items"]:
            table.add_row(
                str(item["key"]), str(item["size"]), item["content_type"], item["etag"][:12]
            )
        out.print(table)


def cmd_queue(args: argparse.Namespace) -> None:
    c = admin_client(args)
    if args.action == "send":
        out.print_json(json.dumps(c.queue_send(args.queue, json.loads(args.body), args.delay_ms)))
    elif args.action == "peek":
        out.print_json(json.dumps(c.queue_peek(args.queue, args.limit)))
    else:
        stats = c.queue_stats()
        if as_json(args, stats):
            return
        table = Table("queue", "depth", "in flight", "delayed")
        for name, st in stats.items():
            table.add_row(name, str(st["depth"]), str(st["in_flight"]), str(st["delayed"]))
        out.print(table)


def cmd_dlq(args: argparse.Namespace) -> None:
    c = admin_client(args)
    if args.action == "replay":
        r = c.dlq_replay(args.queue)
        out.print(f"replayed {r['replayed']} message(s) from {r['from']} to {r['to']}")
        return
    r = c.dlq(args.queue, args.limit)
    if as_json(args, r):
        return
    table = Table("id", "attempts", "last error", "body", title=f"dead letters: {r['dead_letter']}")
    for m in r["messages"]:
        table.add_row(m["id"], str(m["attempt"]), m["last_error"] or "", json.dumps(m["body"]))
    out.print(table)


def cmd_publish(args: argparse.Namespace) -> None:
    out.print_json(json.dumps(admin_client(args).publish(args.topic, json.loads(args.payload))))


def cmd_schedules(args: argparse.Namespace) -> None:
    import datetime

    if args.action == "run":
        if not args.name:
            raise InvalidRequest("which schedule? nimbus schedules run NAME")
        fired = admin_client(args).schedule_run(args.name)
        err.print(f"schedule {args.name} fired: {fired['function']} runs now")
        return
    schedules = admin_client(args).schedules()
    if as_json(args, schedules):
        return
    table = Table("name", "cron", "timezone", "function", "next fire (UTC)")
    for sc in schedules:
        when = datetime.datetime.fromtimestamp(sc["next_ms"] / 1000, datetime.UTC)
        table.add_row(sc["name"], sc["cron"], sc["timezone"], sc["function"], when.isoformat())
    out.print(table)


def cmd_wf(args: argparse.Namespace) -> int:
    c = admin_client(args)
    if args.action == "start":
        run = c.wf_start(args.name, json.loads(args.input) if args.input else None, args.key)
        if args.wait:
            import time

            deadline = time.monotonic() + args.wait
            while run["status"] == "running" and time.monotonic() < deadline:
                time.sleep(0.2)
                run = c.wf_run(run["id"])
        out.print_json(json.dumps(run))
        return 0 if run["status"] in ("running", "succeeded") else 1
    if args.action == "ls":
        runs = c.wf_runs(args.workflow, args.status, args.limit)
        if as_json(args, runs):
            return 0
        table = Table("run", "workflow", "status", "current step", "started", "took")
        table.columns[0].overflow = "fold"
        for r in runs:
            took = f"{(r['ended_ms'] - r['started_ms']) / 1000:.2f}s" if r["ended_ms"] else ""
            table.add_row(
                r["id"],
                r["workflow"],
                r["status"],
                r["current"] or "",
                _when(r["started_ms"]),
                took,
            )
        out.print(table)
        return 0
    if args.action == "cancel":
        out.print_json(json.dumps(c.wf_cancel(args.run)))
        return 0
    run = c.wf_run(args.run)
    if as_json(args, run):
        return 0
    out.print(f"run {run['id']} of {run['workflow']}: [bold]{run['status']}[/]", highlight=False)
    if run["current"]:
        out.print(f"current step: {run['current']}")
    if run["error"]:
        out.print(
            f"error: {run['error']['kind']} in {run['error']['step']}: {run['error']['message']}"
        )
    for warning in run["warnings"]:
        out.print(f"[yellow]warning:[/] {warning}")
    table = Table("step", "attempt", "status", "started", "duration", "output / error")
    for h in run["history"]:
        detail = h.get("error") or h.get("output")
        table.add_row(
            h["step"],
            str(h["attempt"]),
            h["status"],
            _when(h["started_ms"]),
            f"{h['ended_ms'] - h['started_ms']} ms",
            json.dumps(detail)[:80],
        )
    out.print(table)
    return 0


def _when(ms: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


def add_commands(sub: Any, remote: Callable[[argparse.ArgumentParser], None]) -> None:
    kv = sub.add_parser("kv", help="read and write tables (debugging)").add_subparsers(
        dest="action", required=True
    )
    for action, helptext in (("get", "read a key"), ("put", "write a key"), ("rm", "delete a key")):
        c = kv.add_parser(action, help=helptext)
        c.add_argument("table")
        c.add_argument("key")
        if action == "put":
            c.add_argument("value", help="the value as JSON")
        c.set_defaults(handler=cmd_kv)
        remote(c)
    c = kv.add_parser("scan", help="list keys in order")
    c.add_argument("table")
    c.add_argument("--prefix", default="")
    c.add_argument("--limit", type=int, default=100)
    c.add_argument("--cursor")
    json_flag(c)
    c.set_defaults(handler=cmd_kv)
    remote(c)
    c = kv.add_parser("indexes", help="a table's indexes (field → type)")
    c.add_argument("table")
    c.set_defaults(handler=cmd_kv)
    remote(c)
    c = kv.add_parser(
        "query",
        help="list rows by an indexed field ([tables.NAME] indexes in nimbus.toml)",
        description="Rows of TABLE ordered by the INDEX field, then by key: those equal to "
        "--eq, or with --start <= field < --end (either may be left out). Bounds are read "
        "as the index's type: integers for an int index, text for string and bytes.",
    )
    c.add_argument("table")
    c.add_argument("index", help="the indexed field")
    c.add_argument("--eq", help="only rows whose field equals this")
    c.add_argument("--start", help="from this value (inclusive)")
    c.add_argument("--end", help="up to this value (exclusive)")
    c.add_argument("--reverse", action="store_true", help="from the end down")
    c.add_argument("--limit", type=int, default=100)
    c.add_argument("--cursor", help="the cursor a previous page printed")
    json_flag(c)
    c.set_defaults(handler=cmd_kv)
    remote(c)

    blob = sub.add_parser("blob", help="read and write buckets (debugging)").add_subparsers(
        dest="action", required=True
    )
    c = blob.add_parser("put", help="upload a file")
    c.add_argument("bucket")
    c.add_argument("key")
    c.add_argument("file")
    c.add_argument("--content-type", default="application/octet-stream")
    c.set_defaults(handler=cmd_blob)
    remote(c)
    c = blob.add_parser("get", help="download an object (to stdout or -o FILE)")
    c.add_argument("bucket")
    c.add_argument("key")
    c.add_argument("-o", "--output")
    c.set_defaults(handler=cmd_blob)
    remote(c)
    c = blob.add_parser("ls", help="list objects")
    c.add_argument("bucket")
    c.add_argument("--prefix", default="")
    c.add_argument("--limit", type=int, default=100)
    json_flag(c)
    c.set_defaults(handler=cmd_blob)
    remote(c)

    queue = sub.add_parser("queue", help="send to and look into queues").add_subparsers(
        dest="action", required=True
    )
    c = queue.add_parser("send", help="send a message (JSON)")
    c.add_argument("queue")
    c.add_argument("body", help="the message as JSON")
    c.add_argument("--delay-ms", type=int, default=0)
    c.set_defaults(handler=cmd_queue)
    remote(c)
    c = queue.add_parser("peek", help="look at the first messages without taking them")
    c.add_argument("queue")
    c.add_argument("--limit", type=int, default=20)
    c.set_defaults(handler=cmd_queue)
    remote(c)
    c = queue.add_parser("stats", help="depth, in flight and delayed per queue")
    json_flag(c)
    c.set_defaults(handler=cmd_queue)
    remote(c)

    dlq = sub.add_parser("dlq", help="dead-lettered messages of a queue").add_subparsers(
        dest="action", required=True
    )
    for action, helptext in (
        ("ls", "list a queue's dead letters"),
        ("replay", "send a queue's dead letters back to it, attempts reset"),
    ):
        c = dlq.add_parser(action, help=helptext)
        c.add_argument("queue")
        c.add_argument("--limit", type=int, default=50)
        if action == "ls":
            json_flag(c)
        c.set_defaults(handler=cmd_dlq)
        remote(c)
    c = sub.add_parser("publish", help="publish an event on the bus (JSON payload)")
    c.add_argument("topic")
    c.add_argument("payload")
    c.set_defaults(handler=cmd_publish)
    remote(c)
    wf = sub.add_parser("wf", help="start, list, show and cancel workflow runs").add_subparsers(
        dest="action", required=True
    )
    c = wf.add_parser("start", help="start a run")
    c.add_argument("name")
    c.add_argument("--input", help="the run's input as JSON")
    c.add_argument("--key", help="idempotency key: a second start with it returns the first run")
    c.add_argument("--wait", type=float, default=0, help="wait up to N seconds for the end")
    c.set_defaults(handler=cmd_wf)
    remote(c)
    c = wf.add_parser("ls", help="list runs, newest first")
    c.add_argument("--workflow")
    c.add_argument("--status", choices=["running", "succeeded", "failed", "cancelled"])
    c.add_argument("--limit", type=int, default=50)
    json_flag(c)
    c.set_defaults(handler=cmd_wf)
    remote(c)
    for action, helptext in (("show", "a run's status and history"), ("cancel", "cancel a run")):
        c = wf.add_parser(action, help=helptext)
        c.add_argument("run")
        if action == "show":
            json_flag(c)
        c.set_defaults(handler=cmd_wf)
        remote(c)
    c = sub.add_parser(
        "schedules",
        help="schedules with their next fire time; `schedules run NAME` fires one now",
    )
    c.add_argument("action", nargs="?", choices=["ls", "run"], default="ls")
    c.add_argument("name", nargs="?", help="the schedule to run now (with `run`)")
    json_flag(c)
    c.set_defaults(handler=cmd_schedules)
    remote(c)
