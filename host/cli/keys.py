"""``nimbus keys create|ls|revoke``: the gateway's API keys, through the admin API.

The key's text is printed once, by ``create``; the server keeps only its hash.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from host.cli.data import admin_client

out = Console()
err = Console(stderr=True)


def cmd_keys(args: argparse.Namespace) -> None:
    client = admin_client(args)
    if args.action == "create":
        body: dict[str, Any] = {"name": args.name, "policies": args.policy, "routes": args.route}
        if args.expires:
            body["expires"] = args.expires
        key = client.request("POST", "/keys", content=json.dumps(body))
        if args.json:
            out.print_json(json.dumps(key))
            return
        err.print(f"created key {key['id']} ({key['name']}); it is shown only now:")
        sys.stdout.write(key["api_key"] + "\n")  # plain: scripts capture it
    elif args.action == "ls":
        keys = client.request("GET", "/keys")["keys"]
        if args.json:
            out.print_json(json.dumps(keys))
            return
        table = Table("id", "name", "created", "expires", "revoked", "policies", "routes")
        for k in keys:
            table.add_row(
                k["id"],
                k["name"],
                _when(k["created_ms"]),
                _when(k["expires_ms"]),
                _when(k["revoked_ms"]),
                ", ".join(k["policies"]) or "any",
                ", ".join(k["routes"]) or "any",
            )
        out.print(table)
    else:
        key = client.request("DELETE", f"/keys/{args.key_id}")
        out.print(f"revoked {key['id']} ({key['name']})")


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def add_commands(sub: Any, remote: Callable[[argparse.ArgumentParser], None]) -> None:
    keys = sub.add_parser("keys", help="create, list and revoke gateway API keys").add_subparsers(
        dest="action", required=True
    )
    c = keys.add_parser("create", help="create a key (its text is printed once)")
    c.add_argument("name", help="who or what the key is for")
    c.add_argument("--expires", help="lifetime: '30d', '12h', … (default: never)")
    c.add_argument("--policy", action="append", default=[], help="only routes with this policy")
    c.add_argument("--route", action="append", default=[], help="only this route path")
    c.add_argument("--json", action="store_true")
    remote(c)
    c = keys.add_parser("ls", help="list keys (never their text)")
    c.add_argument("--json", action="store_true")
    remote(c)
    c = keys.add_parser("revoke", help="revoke a key by id")
    c.add_argument("key_id")
    remote(c)
    for p in keys.choices.values():
        p.set_defaults(handler=cmd_keys)
