"""The snapshot step (host/runtime/snapshot.py): what an initialiser leaves in memory
and globals is what every fresh instance of the snapshot starts with; what the step
cannot carry over is refused with the reason."""

from __future__ import annotations

from typing import Any

import pytest
import wasmtime

from host.runtime.snapshot import snapshot

COUNTER = """
(module
  (memory (export "memory") 1 4)
  (global $count (mut i32) (i32.const 0))
  (global $big (mut i64) (i64.const -1))
  (data (i32.const 100) "seed")
  (func (export "init")
    (memory.grow (i32.const 1)) drop
    (i32.store (i32.const 70000) (i32.const 0x01020304))
    (i32.store8 (i32.const 100) (i32.const 0x53))
    (global.set $count (i32.const -7))
    (global.set $big (i64.const 0x123456789abc)))
  (func (export "count") (result i32) (global.get $count))
  (func (export "big") (result i64) (global.get $big))
  (func (export "bump") (global.set $count (i32.add (global.get $count) (i32.const 1)))))
"""


def _init(store: wasmtime.Store, exports: Any) -> None:
    exports["init"](store)


def _snap(wat: str) -> bytes:
    engine = wasmtime.Engine()
    return snapshot(wasmtime.wat2wasm(wat), wasmtime.Linker(engine), wasmtime.Store(engine), _init)


def test_every_fresh_instance_starts_where_the_initialiser_left_off() -> None:
    image = _snap(COUNTER)
    engine = wasmtime.Engine()
    module = wasmtime.Module(engine, image)
    for _ in range(2):  # the second instance does not see the first one's bump
        store = wasmtime.Store(engine)
        exports = wasmtime.Instance(store, module, []).exports(store)
        memory: Any = exports["memory"]
        assert memory.size(store) == 2  # grown by the initialiser: the new minimum
        assert exports["count"](store) == -7  # type: ignore[operator]
        assert exports["big"](store) == 0x123456789ABC  # type: ignore[operator]
        assert memory.read(store, 100, 104) == b"Seed"
        assert memory.read(store, 70000, 70004) == bytes([4, 3, 2, 1])
        exports["bump"](store)  # type: ignore[operator]
        assert exports["count"](store) == -6  # type: ignore[operator]


@pytest.mark.parametrize(
    ("wat", "reason"),
    [
        (
            '(module (memory (export "memory") 1) (data "passive") (func (export "init")))',
            "not active",
        ),
        (
            '(module (memory (export "memory") 1) (data (i32.const 0) "x")'
            " (global (mut f32) (f32.const 1))"
            ' (func (export "init")))',
            "mutable global",
        ),
    ],
)
def test_what_cannot_be_carried_over_is_refused(wat: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        _snap(wat)


def test_not_a_core_module_is_refused() -> None:
    engine = wasmtime.Engine()
    with pytest.raises(ValueError, match="not a WebAssembly core module"):
        snapshot(b"\0asm\x0d\0\x01\0", wasmtime.Linker(engine), wasmtime.Store(engine), _init)
