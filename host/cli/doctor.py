"""``nimbus doctor``: checks what a working setup needs and says what to fix.

The toolchains (Zig for Zig and C functions and for the shared Python runtime), the
app manifest in the current directory, the data dir, the admin token and the
server. Each check answers ok, a warning or a problem, with the next thing to try;
the command fails when there is a problem, so a script can gate on it.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from msgspec import Struct
from msgspec.structs import asdict
from rich.console import Console
from rich.markup import escape

from host.cli.client import DEFAULT_URL, resolve_token
from host.errors import NimbusError

out = Console(highlight=False)
MARKS = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "problem": "[red]✗[/]"}


class Check(Struct, frozen=True):
    """One finding: what was checked, how it went, and what to do about it."""

    name: str
    status: str  # "ok", "warn" or "problem"
    detail: str
    fix: str = ""


def add_command(sub: Any, remote: Callable[[argparse.ArgumentParser], None]) -> None:
    c = sub.add_parser(
        "doctor",
        help="check the toolchains, the app, the data dir, the admin token and the server",
        description="check the toolchains, the app, the data dir, the admin token and the server",
    )
    c.set_defaults(handler=cmd_doctor)
    c.add_argument("--json", action="store_true", help="the findings as JSON")
    remote(c)


def cmd_doctor(args: argparse.Namespace) -> int:
    data = Path(args.data)
    url = (args.url or os.environ.get("NIMBUS_URL") or DEFAULT_URL).rstrip("/")
    checks = [
        *toolchains(),
        app(Path.cwd()),
        data_dir(data),
        token(args.token, data),
        server(url, resolve_token(args.token, data)),
    ]
    if args.json:
        out.print_json(json.dumps([asdict(c) for c in checks]))
    else:
        for c in checks:
            out.print(f"{MARKS[c.status]} [bold]{c.name}[/]: {escape(c.detail)}", soft_wrap=True)
            if c.fix:
                out.print(f"    → {escape(c.fix)}", soft_wrap=True)
    return 1 if any(c.status == "problem" for c in checks) else 0


def toolchains() -> list[Check]:
    from host.toolchain.python_runtime import CPYTHON_WASI, PYTHON_VERSION, built_runtime
    from host.toolchain.zig import zig_version

    found = []
    try:
        found.append(Check("zig", "ok", f"Zig {zig_version()} builds Zig and C functions"))
    except NimbusError as e:
        found.append(
            Check(
                "zig",
                "problem",
                f"{e}",
                "reinstall the ziglang package into this environment: "
                "`make .venv/.installed` (or `pip install -e .`)",
            )
        )
    try:
        built = built_runtime()
        if built is not None:
            detail = f"the shared Python {PYTHON_VERSION} runtime is built ({built})"
        else:
            name, version, _ = CPYTHON_WASI
            detail = (
                f"the shared Python {PYTHON_VERSION} runtime is built by the first Python "
                f"deploy (CPython for WASI from PyPI's {name} {version}, ~85 MB once, then "
                "about half a minute)"
            )
        found.append(Check("python", "ok", detail))
    except NimbusError as e:
        found.append(Check("python", "warn", str(e), "only needed for Python functions"))
    return found


def app(here: Path) -> Check:
    from host.manifest.app import load_manifest

    path = here / "nimbus.toml"
    if not path.is_file():
        return Check(
            "app",
            "warn",
            f"no nimbus.toml in {here}",
            "run nimbus in an app directory, or create one: nimbus new NAME --lang zig",
        )
    try:
        manifest = load_manifest(path)
    except NimbusError as e:
        return Check("app", "problem", str(e), "fix the keys named above in nimbus.toml")
    return Check(
        "app",
        "ok",
        f"{path}: {len(manifest.functions)} function(s), {len(manifest.routes)} route(s)",
    )


def data_dir(data: Path) -> Check:
    if not data.exists():
        return Check(
            "data dir",
            "warn",
            f"{data} does not exist yet",
            "`nimbus up`, `nimbus dev` or `make up` create it (or pass --data DIR)",
        )
    if not data.is_dir() or not os.access(data, os.W_OK | os.X_OK):
        return Check(
            "data dir",
            "problem",
            f"{data} is not a writable directory",
            f"fix its permissions (chmod u+rwx {data}) or pass another --data DIR",
        )
    db = data / "db"
    what = "holds a database" if db.exists() else "has no database yet (created on first start)"
    return Check("data dir", "ok", f"{data} {what}")


def token(given: str | None, data: Path) -> Check:
    from host.gateway.auth import ENV_VAR, TOKEN_FILE

    if given:
        return Check("admin token", "ok", "given with --token")
    if os.environ.get(ENV_VAR):
        return Check("admin token", "ok", f"from {ENV_VAR}")
    path = data / TOKEN_FILE
    if not path.exists():
        return Check(
            "admin token",
            "problem",
            f"no admin token: {path} is missing and {ENV_VAR} is not set",
            f"start the server once on this data dir (`nimbus up`), which creates {path}; "
            f"or set {ENV_VAR}, or pass --data for the server's data dir",
        )
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        return Check(
            "admin token",
            "warn",
            f"{path} is readable by others (mode {mode:o})",
            f"chmod 600 {path}",
        )
    return Check("admin token", "ok", f"{path} (mode {mode:o})")


def server(url: str, admin_token: str | None) -> Check:
    try:
        health = httpx.get(f"{url}/_admin/health", timeout=2)
    except httpx.HTTPError as e:
        return Check(
            "server",
            "warn",
            f"no server answers at {url} ({type(e).__name__})",
            "start one: `make up` or `nimbus dev`; or point at yours with --url / NIMBUS_URL",
        )
    if health.status_code != 200:
        return Check(
            "server",
            "problem",
            f"{url}/_admin/health answered {health.status_code}",
            "is this a Nimbus server? check --url / NIMBUS_URL",
        )
    if admin_token is None:
        return Check("server", "ok", f"{url} is up (admin calls need a token, see above)")
    r = httpx.get(
        f"{url}/_admin/functions", headers={"authorization": f"Bearer {admin_token}"}, timeout=5
    )
    if r.status_code in (401, 403):
        return Check(
            "server",
            "problem",
            f"{url} is up but refuses the admin token ({r.status_code})",
            "the server uses another data dir's token: pass its --data, or set NIMBUS_ADMIN_TOKEN",
        )
    count = len(r.json().get("functions", [])) if r.status_code == 200 else "?"
    return Check("server", "ok", f"{url} is up, {count} function(s) deployed, token accepted")
