"""How a host import is declared: a name, a wasm signature and one small Python function.

``host/hostcalls/`` declares every import the guest ABI offers with ``HostFunction``;
the runtime links them once per engine and never knows what they do. Pointer-sized
``i32`` arguments reach the Python function as unsigned integers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import wasmtime
from msgspec import Struct

IMPORT_MODULE = "nimbus"

_TYPES = {"i32": wasmtime.ValType.i32, "i64": wasmtime.ValType.i64}


class HostFunction(Struct, frozen=True):
    """One guest import: ``module.name(params) -> results`` served by ``impl``.

    ``impl(invocation, *args)`` returns the single result (or None when there is
    none) and raises a ``NimbusError`` to end the invocation with that error.
    """

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    impl: Callable[..., Any]
    module: str = IMPORT_MODULE

    def func_type(self) -> wasmtime.FuncType:
        return wasmtime.FuncType(
            [_TYPES[p]() for p in self.params], [_TYPES[r]() for r in self.results]
        )

    def signature(self) -> str:
        return f"({', '.join(self.params)}) -> ({', '.join(self.results)})"
