"""The component's export: decode the event, call the function's ``handle``, encode
what it returned. An exception becomes the response's ``error`` (the invocation
fails; its writes are dropped). Everything is imported at build time: componentize-py
snapshots the initialised interpreter, and a module imported later is not there."""

from __future__ import annotations

import dataclasses
import traceback

import handler  # the function's module: imported now, so the build snapshots it
import msgpack
import wit_world

from nimbus import log
from nimbus.events import decode
from nimbus.response import to_map


#: error kinds the host turns into FunctionCrashed / FunctionOutOfMemory (a function
#: that *returns* {"error": …} fails with FunctionFailed instead)
CRASHED = "nimbus.UnhandledException"
OUT_OF_MEMORY = "nimbus.MemoryError"


class WitWorld(wit_world.WitWorld):
    def handle(self, event: bytes) -> bytes:
        try:
            result = to_map(handler.handle(decode(event)))
        except MemoryError:
            result = {"error": {"kind": OUT_OF_MEMORY, "message": "MemoryError"}}
        except BaseException as e:  # the function crashed: its traceback goes to the log
            log.error("".join(traceback.format_exception(e)).strip())
            result = {"error": {"kind": CRASHED, "message": f"{type(e).__name__}: {e}"}}
        try:
            return msgpack.packb(result, use_bin_type=True, default=_default)
        except Exception as e:  # a result msgpack cannot carry
            log.error(f"the function returned what cannot be sent: {e}")
            error = {"kind": CRASHED, "message": f"unsendable result: {e}"}
            return msgpack.packb({"error": error})


def _default(value: object) -> object:
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"cannot send a {type(value).__name__} to the host")
