"""``nimbus serve``'s arguments and its start, kept apart from the rest of the CLI.

``nimbus serve`` is how a server (re)starts, so its start time is the platform's cold
start: ``entry.py`` runs it from here without importing the other commands (their
terminal tables, HTTP client, build toolchain), which take longer to import than the
server's own parts.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_DATA = Path(".nimbus")


def data_argument(c: argparse.ArgumentParser) -> None:
    c.add_argument("--data", type=Path, default=DEFAULT_DATA, help="data dir (.nimbus)")


def secrets_key_argument(c: argparse.ArgumentParser) -> None:
    """``--secrets-key``, on every command that opens the data dir's secrets itself."""
    c.add_argument(
        "--secrets-key",
        type=Path,
        help="the file of the key secrets are sealed with (NIMBUS_SECRETS_KEY_FILE; "
        "default: the data dir's secrets.key); the same file on every host of a PostgreSQL store",
    )


def serving_arguments(c: argparse.ArgumentParser) -> None:
    """The data dir, address and worker count of a serving command (``up``, ``serve``)."""
    data_argument(c)
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=8080)
    c.add_argument("--workers", type=int, default=1, help="processes sharing the data")
    c.add_argument(
        "--store",
        help="where the services live: lmdb (the data dir, default) or a PostgreSQL URL "
        "shared by several hosts (NIMBUS_STORE; [app] store)",
    )
    secrets_key_argument(c)
    # the choices of host/telemetry/logformat.py (not imported: the CLI starts fast)
    c.add_argument("--log-format", choices=("text", "json"), default="text")
    c.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        default="warning",
        help="Nimbus's own log lines (info: one per invocation)",
    )


def announcement(args: argparse.Namespace) -> str:
    from host.gateway.auth import TOKEN_FILE

    return (
        f"serving on http://{args.host}:{args.port} ({args.workers} worker(s)); "
        f"admin token in {Path(args.data) / TOKEN_FILE} unless NIMBUS_ADMIN_TOKEN is set"
    )


def choose_store(store: str) -> None:
    """Make ``store`` this process's and its workers' (they read ``NIMBUS_STORE``);
    a PostgreSQL one is tried first, so that a bad one is one clear error here."""
    from host.services.factory import STORE_ENV, check_store, is_shared

    os.environ[STORE_ENV] = check_store(store)
    if is_shared(store):
        from host.services.pg.store import PgStore

        PgStore(store, max_size=1).close()


def choose_secrets_key(path: Path | None) -> None:
    """Make ``path`` the secrets key file of this process and its workers (they read
    ``NIMBUS_SECRETS_KEY_FILE``); None leaves the environment's (or the default)."""
    from host.services.secrets import KEY_FILE_ENV

    if path is not None:
        os.environ[KEY_FILE_ENV] = str(path.resolve())


def choose_serving(args: argparse.Namespace, app_store: str = "") -> None:
    """The store and the secrets key of a command that opens the data dir (``up``,
    ``serve``, ``dev``), each from its flag, then its variable, then the default (the
    app's ``[app] store``, the data dir's ``secrets.key``)."""
    from host.services.factory import STORE_ENV

    choose_store(args.store or os.environ.get(STORE_ENV, "") or app_store)
    choose_secrets_key(args.secrets_key)


def serve_command(argv: Sequence[str]) -> int:
    """``nimbus serve ARGS`` (without the word ``serve``), as ``main.py`` would run it."""
    parser = argparse.ArgumentParser(
        prog="nimbus serve", description="serve the functions already deployed in the data dir"
    )
    serving_arguments(parser)
    args = parser.parse_args(argv)
    from host.errors import NimbusError
    from host.server import serve

    try:
        choose_serving(args)
    except NimbusError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    print(announcement(args), file=sys.stderr, flush=True)
    serve(args.data, args.host, args.port, args.workers, args.log_format, args.log_level)
    return 0
