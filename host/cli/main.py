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
from rich.markup import escape
from rich.table import Table

from host.cli import keys
from host.cli.backup import add_commands as add_backup_commands
from host.cli.completion import add_command as add_completion
from host.cli.data import add_commands, admin_client
from host.cli.dev import add_command as add_dev
from host.cli.doctor import add_command as add_doctor
from host.cli.invoke import add_arguments as invoke_arguments
from host.cli.logs import follow_logs
from host.cli.new import add_command as add_new
from host.cli.secrets import add_secret_commands
from host.cli.serving import (
    announcement,
    choose_serving,
    data_argument,
    serving_arguments,
)
from host.cli.usage import add_usage_command
from host.errors import NimbusError, PayloadTooLarge
from host.manifest.functions import MAX_MODULE_BYTES

err = Console(stderr=True)
out = Console()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int | None] = args.handler
    try:
        return handler(args) or 0
    except NimbusError as e:
        # soft_wrap: a compiler's message stays as it wrote it, lines not re-wrapped
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        return 1
    except json.JSONDecodeError as e:
        err.print(
            f"error: an argument is not valid JSON ({e}); quote it for the shell, "
            """e.g. '{"n": 1}'""",
            highlight=False,
            markup=False,
        )
        return 1
    except KeyboardInterrupt:
        return 130


# --- running -------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> None:
    from host.manifest.app import load_manifest
    from host.platform.apply import apply_manifest
    from host.platform.platform import Platform
    from host.server import serve

    manifest = load_manifest(Path(args.app))
    choose_serving(args, manifest.store)
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
    serve(args.data, args.host, args.port, args.workers, args.log_format, args.log_level)


def cmd_serve(args: argparse.Namespace) -> None:
    from host.server import serve

    choose_serving(args)
    _announce(args)
    serve(args.data, args.host, args.port, args.workers, args.log_format, args.log_level)


def _announce(args: argparse.Namespace) -> None:
    err.print(announcement(args))


def cmd_build(args: argparse.Namespace) -> None:
    from host.manifest.app import load_manifest
    from host.platform.apply import build_app
    from host.toolchain.builder import build_function

    target = Path(args.path)
    if (target / "nimbus.toml").exists() or target.suffix == ".toml":
        for name, (wasm, rebuilt, language) in build_app(load_manifest(target)).items():
            note = "built" if rebuilt else "up to date"
            out.print(f"{name}: {language}, {len(wasm)} bytes, {note}")
        return
    result = build_function(target)
    note = "built" if result.rebuilt else "up to date"
    out.print(f"{result.wasm} ({result.language}, {result.wasm.stat().st_size} bytes, {note})")


# --- admin API clients ---------------------------------------------------------------


def cmd_ls(args: argparse.Namespace) -> None:
    functions = admin_client(args).functions()
    if args.json:
        out.print_json(json.dumps(functions))
        return
    table = Table("name", "version", "sha256", "pool", "in flight", "capacity", "routes")
    for f in functions:
        routes = ", ".join(f"{'|'.join(r['methods'])} {r['path']}" for r in f["routes"])
        c = f["config"]
        pool = "[green]warm[/]" if f.get("warm") else "[dim]cold[/]"
        limits = [f"max {c['max_concurrency']}"] if c.get("max_concurrency") else []
        if c.get("min_warm"):
            limits.append(f"min_warm {c['min_warm']}")
        limits.append(f"idle {c['idle_ttl']}")
        table.add_row(
            f["name"], str(f["version"]), f["sha256"][:12], pool, str(f.get("in_flight", 0)),
            ", ".join(limits), routes or "-",
        )  # fmt: skip
    out.print(table)


def cmd_get(args: argparse.Namespace) -> None:
    out.print_json(json.dumps(admin_client(args).function(args.name)))


def cmd_deploy(args: argparse.Namespace) -> None:
    from host.toolchain.builder import build_function

    source = Path(args.module)
    wasm_path = build_function(source).wasm if source.is_dir() else source
    config = json.loads(args.config) if args.config else {}
    size = wasm_path.stat().st_size
    if size > MAX_MODULE_BYTES:  # refused before a byte is uploaded
        raise PayloadTooLarge(
            f"{wasm_path} is {size} bytes; a deploy accepts modules of at most "
            f"{MAX_MODULE_BYTES} bytes"
        )
    dep = admin_client(args).deploy(args.name, wasm_path.read_bytes(), config)
    out.print(f"deployed {dep['name']} version {dep['version']} ({dep['sha256'][:12]})")


def cmd_rm(args: argparse.Namespace) -> None:
    admin_client(args).remove(args.name)
    out.print(f"removed {args.name}")


def cmd_invoke(args: argparse.Namespace) -> int:
    from host.cli.invoke import cmd_invoke as invoke

    return invoke(args, admin_client)


def cmd_routes(args: argparse.Namespace) -> None:
    routes = admin_client(args).routes()
    if args.json:
        out.print_json(json.dumps(routes))
        return
    table = Table("methods", "path", "function", "policies")
    for r in routes:
        policies = r.get("policies")
        shown = "(defaults)" if policies is None else ", ".join(policies) or "-"
        table.add_row(
            "|".join(r["methods"]), r["path"], r.get("function", r.get("workflow", "")), shown
        )
    out.print(table)


def cmd_logs(args: argparse.Namespace) -> None:
    if args.follow:
        follow_logs(admin_client(args), args.function, args.request_id, args.json)
        return
    records = admin_client(args).invocations(args.function, args.limit)
    if args.request_id:
        records = [r for r in records if args.request_id in r["request_id"]]
    if args.json:
        out.print_json(json.dumps(records))
        return
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


# --- the parser ----------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="nimbus", description="Serverless functions on wasm.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")

    def command(name: str, fn: Callable[..., Any], help: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help, description=help)
        c.set_defaults(handler=fn)
        return c

    data = data_argument
    serving = serving_arguments

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
    add_backup_commands(command, data)

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
        "invoke",
        cmd_invoke,
        "run a function once: locally through its app (writes kept only with --commit), "
        "a dir/.wasm, or --remote NAME",
    )
    invoke_arguments(c)
    remote(c)
    c = command("routes", cmd_routes, "list HTTP routes")
    c.add_argument("--json", action="store_true")
    remote(c)
    c = command("logs", cmd_logs, "recent invocations with their log lines (-f: follow)")
    c.add_argument("-f", "--follow", action="store_true", help="stream new lines as they come")
    c.add_argument("--function")
    c.add_argument("--request-id", help="only this request (or ids containing this)")
    c.add_argument("--limit", type=int, default=20)
    c.add_argument("--json", action="store_true")
    remote(c)
    add_commands(sub, remote)
    add_new(sub)
    add_dev(sub, serving)
    add_doctor(sub, remote)
    add_completion(sub, _parser)
    keys.add_commands(sub, remote)
    add_secret_commands(sub, remote)
    add_usage_command(sub, remote)
    return p


if __name__ == "__main__":
    sys.exit(main())
