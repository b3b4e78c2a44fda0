"""What wasmtime charges per instantiation for function-table elements, by where the
table lives: the floor under a fresh Python instance.

Why the shared Python runtime is a statically linked core module: the earlier one,
componentize-py's dynamically linked CPython, had its libraries import one shared
function table and fill it with element segments at ``global.get __table_base``
offsets (libpython alone 4,955 of the table's 5,674 entries), and wasmtime initialises
a table lazily only when the module defines it and every segment has a constant
offset; elements written into an *imported* table are resolved one by one at every
instantiation (~0.8 ms for that runtime). This measures that cost on a synthetic
module of ``ELEMENTS`` functions, with the table imported, defined, or absent::

    python -m bench.instantiate_floor
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

import wasmtime

ELEMENTS = 5000
_EXPORT = '(func (export "go") (result i32) i32.const 1)'


def _module(table: str) -> str:
    funcs = "".join(f"(func $f{i} (result i32) i32.const {i})" for i in range(ELEMENTS))
    names = " ".join(f"$f{i}" for i in range(ELEMENTS))
    if table == "none":
        return f"(module {funcs} {_EXPORT})"
    if table == "defined":
        decl, offset = f"(table {ELEMENTS} funcref)", "(i32.const 0)"
    else:  # as the runtime's libraries do: imported, at an imported global's offset
        decl = f'(import "env" "t" (table {ELEMENTS} funcref)) '
        decl += '(import "env" "base" (global $base i32))'
        offset = "(global.get $base)"
    return f"(module {decl} {funcs} (elem {offset} func {names}) {_EXPORT})"


def measure(instances: int = 300) -> dict[str, Any]:
    """Median microseconds to instantiate each variant in a fresh store."""
    engine = wasmtime.Engine()
    table_type = wasmtime.TableType(wasmtime.ValType.funcref(), wasmtime.Limits(ELEMENTS, None))
    global_type = wasmtime.GlobalType(wasmtime.ValType.i32(), False)
    out: dict[str, Any] = {"elements": ELEMENTS}
    for table in ("none", "defined", "imported"):
        module = wasmtime.Module(engine, _module(table))
        times = []
        for _ in range(instances):
            store = wasmtime.Store(engine)
            linker = wasmtime.Linker(engine)
            linker.define(store, "env", "t", wasmtime.Table(store, table_type, None))
            linker.define(store, "env", "base", wasmtime.Global(store, global_type, 0))
            t0 = time.perf_counter_ns()
            linker.instantiate(store, module)
            times.append((time.perf_counter_ns() - t0) / 1000)
        out[f"instantiate_{table}_table_us"] = statistics.median(times[instances // 10 :])
    out["per_1000_imported_elements_us"] = (
        (out["instantiate_imported_table_us"] - out["instantiate_none_table_us"]) * 1000 / ELEMENTS
    )
    return out


def main() -> None:
    print(json.dumps(measure(), indent=2))


if __name__ == "__main__":
    main()
