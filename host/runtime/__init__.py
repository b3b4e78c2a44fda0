"""Everything that touches wasmtime: the engine, the module cache, the ABI and invoke."""

from host.runtime.imports import HostFunction
from host.runtime.invocation import Invocation, LogLine
from host.runtime.limits import Limits
from host.runtime.runtime import LoadedFunction, Runtime

__all__ = ["HostFunction", "Invocation", "Limits", "LoadedFunction", "LogLine", "Runtime"]
