"""The component's export: decode the event, call the function's ``handle``, encode
what it returned. An exception becomes the response's ``error`` (the invocation
fails; its writes are dropped). Everything is imported at build time: componentize-py
snapshots the initialised interpreter, and a module imported later is not there."""

from __future__ import annotations

import traceback

import handler  # the function's module: imported now, so the build snapshots it
import msgpack
import wit_world

from nimbus import log
from nimbus.events import decode
from nimbus.response import to_map


class WitWorld(wit_world.WitWorld):
    def handle(self, event: bytes) -> bytes:
        try:
            result = to_map(handler.handle(decode(event)))
        except Exception as e:  # the function failed: report it, keep nothing
            log.error("".join(traceback.format_exception(e)).strip())
            result = {"error": {"kind": type(e).__name__, "message": str(e)}}
        return msgpack.packb(result, use_bin_type=True, default=_default)


def _default(value: object) -> object:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot send a {type(value).__name__} to the host")
