"""``nimbus backup`` and ``nimbus restore``: a copy of a data dir that a host serves as is.

See ``host/platform/backup.py`` for what is copied and why the copy is consistent
while the server keeps writing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

out = Console()

Command = Callable[[str, Callable[..., Any], str], argparse.ArgumentParser]


def cmd_backup(args: argparse.Namespace) -> None:
    from host.platform.backup import backup

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
    data(c)
    c = command("restore", cmd_restore, "copy a backup into a new data dir, checking it first")
    c.add_argument("backup", help="a directory written by `nimbus backup`")
    data(c)
