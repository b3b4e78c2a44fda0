"""A function ready to run: its compiled module, linked, with the limits it runs under."""

from __future__ import annotations

from typing import Any

import wasmtime
from msgspec import Struct

from host.runtime.limits import Limits


class LoadedFunction(Struct, frozen=True):
    """A module linked and ready to instantiate, with the limits it runs under."""

    name: str
    sha256: str
    module: Any  # a wasmtime Module, or the code bundle (bytes) for kind "python"
    pre: wasmtime.InstancePre | None
    limits: Limits
    cache_hit: bool
    kind: str = "module"
    #: the InstancePre's C pointer, looked up once (``pre.ptr()`` checks on every call)
    pre_ptr: Any = None
    #: the C pointer of the engine its stores are made in (the Python runtime has one
    #: of its own: ``runtime.py``)
    engine_ptr: Any = None
    #: its instances made ahead (``ready.ReadyInstances``: the Python runtime's), or None
    ready: Any = None
