"""``nimbus secrets set|ls|rm``: the secrets functions read with ``secret_get``.

A value never goes on the command line (where ``ps`` and shell history would keep
it): ``set`` reads it from ``--file`` or standard input (a prompt without echo on a
terminal; one trailing newline is dropped from piped input). ``ls`` shows names and
dates only. All three are clients of the admin API (``/_admin/secrets``).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rich.console import Console
from rich.table import Table

from host.cli.data import admin_client
from host.errors import InvalidRequest

out = Console()
err = Console(stderr=True)


def read_value(file: str | None) -> bytes:
    """The secret's value from ``file``, a terminal prompt, or piped standard input."""
    if file is not None:
        value = Path(file).read_bytes()
    elif sys.stdin.isatty():
        value = getpass.getpass("value: ").encode()
    else:
        value = sys.stdin.buffer.read()
        value = value.removesuffix(b"\n").removesuffix(b"\r")
    if not value:
        raise InvalidRequest("the secret's value is empty; pipe it in or use --file")
    return value


def cmd_secrets(args: argparse.Namespace) -> None:
    c = admin_client(args)
    if args.action == "set":
        info = c.request("PUT", f"/secrets/{quote(args.name)}", content=read_value(args.file))
        err.print(f"secret {info['name']} set; the next invocation reads it")
    elif args.action == "rm":
        c.request("DELETE", f"/secrets/{quote(args.name)}")
        err.print(f"secret {args.name} removed")
    else:
        table = Table("name", "created", "updated")
        for s in c.request("GET", "/secrets")["secrets"]:
            table.add_row(s["name"], _when(s["created_ms"]), _when(s["updated_ms"]))
        out.print(table)


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def add_secret_commands(sub: Any, remote: Callable[[argparse.ArgumentParser], None]) -> None:
    secrets = sub.add_parser(
        "secrets", help="set, list and remove secrets (values from stdin or a file)"
    ).add_subparsers(dest="action", required=True)
    c = secrets.add_parser("set", help="set or rotate a secret (value from stdin or --file)")
    c.add_argument("name", help="e.g. PAYMENT_API_KEY")
    c.add_argument("--file", help="read the value from this file instead of stdin")
    c.set_defaults(handler=cmd_secrets)
    remote(c)
    c = secrets.add_parser("ls", help="secret names and dates (never values)")
    c.set_defaults(handler=cmd_secrets)
    remote(c)
    c = secrets.add_parser("rm", help="remove a secret")
    c.add_argument("name")
    c.set_defaults(handler=cmd_secrets)
    remote(c)
