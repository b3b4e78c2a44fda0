"""The ``nimbus`` console script: ``nimbus serve`` straight to the server, every other
command through the full CLI (``main.py``)."""

from __future__ import annotations

import gc
import sys


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["serve"] and not {"-h", "--help"} & set(argv):
        # the server's imports make ~60,000 tracked objects and no garbage: the
        # collections they would trigger find nothing (~8 ms of a start); ``serve``
        # freezes what they made and turns the collector back on
        gc.disable()
        from host.cli.serving import serve_command

        return serve_command(argv[1:])
    from host.cli.main import main as full

    return full()
