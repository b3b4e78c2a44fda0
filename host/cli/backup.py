"""``nimbus backup`` and ``nimbus restore``: a copy of a data dir that a host serves as is.

See ``host/platform/backup.py`` for what is copied and why the copy is consistent
while the server keeps writing.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

out = Console()

Command = Callable[[str, Callable[..., Any], str], argparse.ArgumentParser]


def cmd_backup(args: argparse.Namespace) -> None:
    from host.errors import InvalidArgument
    from host.platform.backup import backup
    from host.services.factory import STORE_ENV, is_shared

    if is_shared(args.store or os.environ.get(STORE_ENV, "")):
        raise InvalidArgument(
            "nimbus backup copies an LMDB data dir; a PostgreSQL store is backed up by "
            "PostgreSQL: pg_dump -Fc -f nimbus.dump 'postgresql://…' (tables, blobs, "
            "queues, runs, schedules, deployments with their modules, usage), restored "
            "with pg_restore; see README 'Running several hosts'"
        )
    names = backup(Path(args.data), Path(args.dest))
    out.print(
        f"backup written to {args.dest} ({len(names)} function(s)); "
        f"serve it with: nimbus serve --data {args.dest}"
    )


def cmd_restore(args: argparse.Namespace) -> None:
    from host.platform.backup import restore

    names = restore(Path(args.backup), Path(args.data))
    out.print(f"restored {len(names)} function(s) into {args.data}")


def add_commands(command: Command, data: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``backup`` and ``restore`` on the ``nimbus`` parser."""
    c = command(
        "backup",
        cmd_backup,
        "write a copy of the data dir that `nimbus serve --data DEST` runs as is "
        "(safe while serving)",
    )
    c.add_argument("dest", help="new directory to write the copy into")
    c.add_argument("--store", help="the services' store (NIMBUS_STORE); PostgreSQL: pg_dump")
    data(c)
    c = command("restore", cmd_restore, "copy a backup into a new data dir, checking it first")
    c.add_argument("backup", help="a directory written by `nimbus backup`")
    data(c)
