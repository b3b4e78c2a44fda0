"""The ``nimbus`` command: run an app, build functions, and talk to a running server.

``nimbus up APP`` builds and deploys the app in ``APP/nimbus.toml`` and serves it;
``nimbus serve`` serves what a data dir already holds. The other commands are clients
of the admin API (``ls``, ``deploy``, ``invoke``, …) or work on the data dir directly
(``backup``). Errors print one clear line and exit with status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from host.errors import InvalidRequest, NimbusError
from host.jsonable import jsonable

DEFAULT_DATA = Path(".nimbus")
err = Console(stderr=True)
out = Console()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except NimbusError as e:
        err.print(f"[bold red]error:[/] {e}", highlight=False)
        return 1
    except KeyboardInterrupt:
        return 130


# --- running -------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> None:
    from host.apply import apply_manifest
    from host.gateway.server import serve
    from host.manifest import load_manifest
    from host.platform import Platform

    manifest = load_manifest(Path(args.app))
    platform = Platform(args.data)
    try:
        with err.status("building functions…"):
            applied = apply_manifest(platform, manifest)
    finally:
        platform.close()
    for a in applied:
        note = "built" if a.rebuilt else "up to date"
        err.print(f"  {a.name} [dim]({a.language}, {note})[/] → version {a.version}")
    _announce(args)
    serve(args.data, args.host, args.port, args.workers)


def cmd_serve(args: argparse.Namespace) -> None:
    from host.gateway.server import serve

    _announce(args)
    serve(args.data, args.host, args.port, args.workers)


def _announce(args: argparse.Namespace) -> None:
    from host.gateway.auth import TOKEN_FILE

    err.print(
        f"serving on http://{args.host}:{args.port} ({args.workers} worker(s)); "
        f"admin token in {Path(args.data) / TOKEN_FILE} unless NIMBUS_ADMIN_TOKEN is set"
    )


def cmd_build(args: argparse.Namespace) -> None:
    from host.apply import build_app
    from host.build import build_function
    from host.manifest import load_manifest

    target = Path(args.path)
    if (target / "nimbus.toml").exists() or target.suffix == ".toml":
        for name, (wasm, rebuilt, language) in build_app(load_manifest(target)).items():
            note = "built" if rebuilt else "up to date"
            out.print(f"{name}: {language}, {len(wasm)} bytes, {note}")
        return
    result = build_function(target)
    note = "built" if result.rebuilt else "up to date"
    out.print(f"{result.wasm} ({result.language}, {result.wasm.stat().st_size} bytes, {note})")


def cmd_backup(args: argparse.Namespace) -> None:
    from host.services import Services

    services = Services(Path(args.data) / "db")
    try:
        services.backup(Path(args.dest))
    finally:
        services.close()
    out.print(f"backup written to {args.dest}")


# --- admin API clients ---------------------------------------------------------------


def _client(args: argparse.Namespace) -> Any:
    from host.client import AdminClient, resolve_token

    return AdminClient(args.url, resolve_token(args.token, Path(args.data)))


def cmd_ls(args: argparse.Namespace) -> None:
    functions = _client(args).functions()
    if args.json:
        out.print_json(json.dumps(functions))
        return
    table = Table("name", "version", "sha256", "routes")
    for f in functions:
        routes = ", ".join(f"{'|'.join(r['methods'])} {r['path']}" for r in f["routes"])
        table.add_row(f["name"], str(f["version"]), f["sha256"][:12], routes or "-")
    out.print(table)


def cmd_get(args: argparse.Namespace) -> None:
    out.print_json(json.dumps(_client(args).function(args.name)))


def cmd_deploy(args: argparse.Namespace) -> None:
    from host.build import build_function

    source = Path(args.module)
    wasm_path = build_function(source).wasm if source.is_dir() else source
    config = json.loads(args.config) if args.config else {}
    dep = _client(args).deploy(args.name, wasm_path.read_bytes(), config)
    out.print(f"deployed {dep['name']} version {dep['version']} ({dep['sha256'][:12]})")


def cmd_rm(args: argparse.Namespace) -> None:
    _client(args).remove(args.name)
    out.print(f"removed {args.name}")


def cmd_invoke(args: argparse.Namespace) -> int:
    if args.http and args.event:
        raise InvalidRequest("give either --event or --http, not both")
    payload = json.loads(args.event) if args.event else None
    if args.http:
        payload = _http_event(args.http, args.body)
    if args.remote:
        result = _client(args).invoke(args.target, payload)
        logs = [(line["level"], line["message"]) for line in result["logs"]]
        response = result["response"]
    else:
        local = _invoke_local(args, payload)
        logs = [(line.level, line.message) for line in local.logs]
        response = local.response
    for level, message in logs:
        err.print(f"[dim]{level}[/] {message}", highlight=False)
    out.print_json(json.dumps(jsonable(response)))
    return 0


def _http_event(spec: list[str], body: str | None) -> dict[str, Any]:
    from urllib.parse import parse_qsl, urlsplit

    method, target = spec
    url = urlsplit(target)
    return {
        "kind": "http",
        "method": method.upper(),
        "path": url.path or "/",
        "params": {},
        "query": dict(parse_qsl(url.query)),
        "raw_query": url.query,
        "headers": {},
        "body": (body or "").encode(),
    }


def _invoke_local(args: argparse.Namespace, payload: Any) -> Any:
    from host.build import build_function
    from host.manifest import function_spec_from_dict
    from host.platform import Platform

    target = Path(args.target)
    if target.is_dir():
        with err.status(f"building {target}…"):
            wasm = build_function(target).wasm
        name = target.resolve().name
    elif target.is_file():
        wasm, name = target, target.stem
    else:
        raise InvalidRequest(f"{target}: no such function dir or .wasm (use --remote for a name)")
    config = json.loads(args.config) if args.config else {}
    config.setdefault("wasm", str(wasm))
    spec = function_spec_from_dict(name, config, where="--config")
    event = (
        payload
        if isinstance(payload, dict) and "kind" in payload
        else {
            "kind": "invoke",
            "input": payload,
        }
    )
    platform = Platform(Path(args.data))
    try:
        return platform.invoke_module(spec, wasm.read_bytes(), event)
    finally:
        platform.close()


def cmd_routes(args: argparse.Namespace) -> None:
    table = Table("methods", "path", "function")
    for r in _client(args).routes():
        table.add_row("|".join(r["methods"]), r["path"], r["function"])
    out.print(table)


def cmd_logs(args: argparse.Namespace) -> None:
    records = _client(args).invocations(args.function, args.limit)
    table = Table("request", "function", "trigger", "cold", "ms", "outcome", "logs")
    for r in records:
        logs = "\n".join(f"{lvl}: {msg}" for lvl, msg in r["logs"])
        table.add_row(
            r["request_id"],
            f"{r['function']}@{r['version']}",
            r["trigger"],
            "yes" if r["cold"] else "",
            f"{r['duration_ms']:.2f}",
            r["outcome"],
            logs,
        )
    out.print(table)


def cmd_kv(args: argparse.Namespace) -> None:
    c = _client(args)
    if args.action == "get":
        out.print_json(json.dumps(c.kv_get(args.table, args.key)))
    elif args.action == "put":
        out.print_json(json.dumps(c.kv_put(args.table, args.key, json.loads(args.value))))
    elif args.action == "rm":
        out.print_json(json.dumps(c.kv_delete(args.table, args.key)))
    else:
        page = c.kv_scan(args.table, args.prefix, args.limit, args.cursor)
        table = Table("key", "version", "value")
        for item in page["items"]:
            table.add_row(str(item["key"]), str(item["version"]), json.dumps(item["value"]))
        out.print(table)
        if page["cursor"]:
            out.print(f"more: --cursor {page['cursor']}")


def cmd_blob(args: argparse.Namespace) -> None:
    c = _client(args)
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
        table = Table("key", "size", "content type", "etag")
        for item in c.blob_list(args.bucket, args.prefix, args.limit)["items"]:
            table.add_row(
                str(item["key"]), str(item["size"]), item["content_type"], item["etag"][:12]
            )
        out.print(table)


def cmd_queue(args: argparse.Namespace) -> None:
    c = _client(args)
    if args.action == "send":
        out.print_json(json.dumps(c.queue_send(args.queue, json.loads(args.body), args.delay_ms)))
    elif args.action == "peek":
        out.print_json(json.dumps(c.queue_peek(args.queue, args.limit)))
    else:
        table = Table("queue", "depth", "in flight", "delayed")
        for name, st in c.queue_stats().items():
            table.add_row(name, str(st["depth"]), str(st["in_flight"]), str(st["delayed"]))
        out.print(table)


def cmd_dlq(args: argparse.Namespace) -> None:
    c = _client(args)
    if args.action == "replay":
        r = c.dlq_replay(args.queue)
        out.print(f"replayed {r['replayed']} message(s) from {r['from']} to {r['to']}")
        return
    r = c.dlq(args.queue, args.limit)
    table = Table("id", "attempts", "last error", "body", title=f"dead letters: {r['dead_letter']}")
    for m in r["messages"]:
        table.add_row(m["id"], str(m["attempt"]), m["last_error"] or "", json.dumps(m["body"]))
    out.print(table)


def cmd_publish(args: argparse.Namespace) -> None:
    out.print_json(json.dumps(_client(args).publish(args.topic, json.loads(args.payload))))


def cmd_schedules(args: argparse.Namespace) -> None:
    import datetime

    table = Table("name", "cron", "timezone", "function", "next fire (UTC)")
    for sc in _client(args).schedules():
        when = datetime.datetime.fromtimestamp(sc["next_ms"] / 1000, datetime.UTC)
        table.add_row(sc["name"], sc["cron"], sc["timezone"], sc["function"], when.isoformat())
    out.print(table)


def cmd_wf(args: argparse.Namespace) -> int:
    c = _client(args)
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
        table = Table("run", "workflow", "status", "current step", "started", "took")
        table.columns[0].overflow = "fold"
        for r in c.wf_runs(args.workflow, args.status, args.limit):
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


# --- the parser ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nimbus", description="Serverless functions on wasm.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[..., Any], help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(handler=fn)
        return c

    def data(c: argparse.ArgumentParser) -> None:
        c.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (.nimbus)")

    def serving(c: argparse.ArgumentParser) -> None:
        data(c)
        c.add_argument("--host", default="127.0.0.1")
        c.add_argument("--port", type=int, default=8080)
        c.add_argument("--workers", type=int, default=1, help="processes sharing the data")

    def remote(c: argparse.ArgumentParser) -> None:
        data(c)
        c.add_argument("--url", help="server URL (NIMBUS_URL, default http://127.0.0.1:8080)")
        c.add_argument("--token", help="admin token (NIMBUS_ADMIN_TOKEN, or the data dir's)")

    c = command("up", cmd_up, "build and deploy the app in APP/nimbus.toml, then serve it")
    c.add_argument("app", nargs="?", default=".", help="app dir or nimbus.toml")
    serving(c)
    serving(command("serve", cmd_serve, "serve the functions already deployed in the data dir"))
    c = command("build", cmd_build, "build a function dir, or every function of an app")
    c.add_argument("path", nargs="?", default=".")
    c = command("backup", cmd_backup, "write a consistent copy of the data (safe while serving)")
    c.add_argument("dest", help="directory to write the copy into")
    data(c)

    c = command("ls", cmd_ls, "list deployed functions")
    c.add_argument("--json", action="store_true")
    remote(c)
    c = command("get", cmd_get, "show one deployed function")
    c.add_argument("name")
    remote(c)
    c = command("deploy", cmd_deploy, "deploy a .wasm (or a function dir, built first)")
    c.add_argument("name")
    c.add_argument("module", help=".wasm file or function source dir")
    c.add_argument("--config", help="JSON config, keys as in a [functions.NAME] table")
    remote(c)
    c = command("rm", cmd_rm, "remove a deployed function")
    c.add_argument("name")
    remote(c)
    c = command(
        "invoke", cmd_invoke, "run a function once: a dir/.wasm in-process, or --remote NAME"
    )
    c.add_argument("target", help="function dir or .wasm (built if needed), or a deployed name")
    c.add_argument("--event", help="JSON: a full event (with 'kind') or the input of an invoke")
    c.add_argument("--http", nargs=2, metavar=("METHOD", "PATH"), help="shape an http event")
    c.add_argument("--body", help="request body for --http")
    c.add_argument("--config", help="JSON config for a local run (limits, env, grants)")
    c.add_argument("--remote", action="store_true", help="invoke a deployed function by name")
    remote(c)
    remote(command("routes", cmd_routes, "list HTTP routes"))
    c = command("logs", cmd_logs, "recent invocations with their log lines")
    c.add_argument("--function")
    c.add_argument("--limit", type=int, default=20)
    remote(c)
    _service_commands(sub, remote)
    return p


def _service_commands(sub: Any, remote: Callable[[argparse.ArgumentParser], None]) -> None:
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
    remote(queue.add_parser("stats", help="depth, in flight and delayed per queue"))
    queue.choices["stats"].set_defaults(handler=cmd_queue)

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
    c.set_defaults(handler=cmd_wf)
    remote(c)
    for action, helptext in (("show", "a run's status and history"), ("cancel", "cancel a run")):
        c = wf.add_parser(action, help=helptext)
        c.add_argument("run")
        c.set_defaults(handler=cmd_wf)
        remote(c)
    c = sub.add_parser("schedules", help="schedules with their next fire time")
    c.set_defaults(handler=cmd_schedules)
    remote(c)


if __name__ == "__main__":
    sys.exit(main())
