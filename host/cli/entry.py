"""The ``nimbus`` console script: ``nimbus serve`` straight to the server, every other
command through the full CLI (``main.py``)."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["serve"] and not {"-h", "--help"} & set(argv):
        from host.cli.serving import serve_command

        return serve_command(argv[1:])
    from host.cli.main import main as full

    return full()
