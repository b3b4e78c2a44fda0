"""The Python runtime's memories (host/runtime/snapshot_memory.py): every instance
starts as the snapshot image, byte for byte, whatever the instance before it in the
same slot wrote or grew; a reset copies back only what was written, or maps the image
anew when that is more than a slot may keep; slots beyond the cap are refused."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from host.errors import Overloaded
from host.runtime import snapshot_memory
from host.runtime.engine import EngineSettings
from host.runtime.native import GuestTrap
from host.runtime.snapshot import detach_memory, snapshot
from host.runtime.snapshot_memory import SnapshotMemories
from host.runtime.traps import instantiate_error

PAGE = 65536
#: two pages initialised by a snapshot, growable to six; ``fill`` writes a byte over a
#: range, ``sum`` adds a range's bytes (what a fresh instance sees), ``grow`` grows
MODULE = """
(module
  (memory (export "memory") 1 6)
  (data (i32.const 10) "snapshot")
  (func (export "init")
    (memory.grow (i32.const 1)) drop
    (memory.fill (i32.const 65536) (i32.const 7) (i32.const 65536)))
  (func (export "fill") (param i32 i32 i32) (memory.fill (local.get 0) (local.get 1) (local.get 2)))
  (func (export "grow") (param i32) (result i32) (memory.grow (local.get 0)))
  (func (export "size") (result i32) (memory.size))
  (func (export "sum") (param i32 i32) (result i64) (local $s i64)
    (block $done (loop $next
      (br_if $done (i32.eqz (local.get 1)))
      (local.set $s (i64.add (local.get $s) (i64.load8_u (local.get 0))))
      (local.set 0 (i32.add (local.get 0) (i32.const 1)))
      (local.set 1 (i32.sub (local.get 1) (i32.const 1)))
      (br $next)))
    (local.get $s)))
"""


@pytest.fixture
def snapshotted(tmp_path: Path) -> tuple[bytes, Path]:
    """The module without its data, and its image file (two pages)."""
    engine = wasmtime.Engine()
    module = snapshot(
        wasmtime.wat2wasm(MODULE),
        wasmtime.Linker(engine),
        wasmtime.Store(engine),
        lambda store, exports: exports["init"](store),
    )
    code, image = detach_memory(module)
    path = tmp_path / "image.memory"
    path.write_bytes(image)
    return code, path


@pytest.fixture
def random_image(snapshotted: tuple[bytes, Path]) -> tuple[bytes, Path]:
    """The same module over an image of random bytes: a copy from a wrong offset, or a
    page left as a call wrote it, shows in a byte-for-byte comparison."""
    code, path = snapshotted
    path.write_bytes(os.urandom(2 * PAGE))
    return code, path


@dataclass
class Served:
    """The snapshotted module on an engine whose memories come from its image."""

    engine: wasmtime.Engine
    mem: SnapshotMemories
    module: wasmtime.Module
    image: Path


def _serving(image: Path, max_slots: int) -> tuple[wasmtime.Engine, SnapshotMemories]:
    """An engine like the Python runtime's, its memories made from ``image``."""
    memories = SnapshotMemories(max_slots=max_slots)
    config = EngineSettings(pooling=False).config()
    memories.install(config)
    engine = wasmtime.Engine(config)
    memories.attach(image)
    return engine, memories


@pytest.fixture
def memories(snapshotted: tuple[bytes, Path]) -> Iterator[tuple[wasmtime.Engine, SnapshotMemories]]:
    engine, memories = _serving(snapshotted[1], max_slots=2)
    yield engine, memories
    memories.close()


@pytest.fixture
def served(
    memories: tuple[wasmtime.Engine, SnapshotMemories], snapshotted: tuple[bytes, Path]
) -> Served:
    engine, mem = memories
    return Served(engine, mem, wasmtime.Module(engine, snapshotted[0]), snapshotted[1])


def _store(engine: wasmtime.Engine) -> wasmtime.Store:
    store = wasmtime.Store(engine)
    store.set_epoch_deadline(1 << 30)  # the engine interrupts at epoch deadlines
    return store


def _as_image(store: wasmtime.Store, exports: Any, image: Path) -> bool:
    memory = exports["memory"]
    return bytes(memory.read(store, 0, 2 * PAGE)) == image.read_bytes()


def _fresh(engine: wasmtime.Engine, module: wasmtime.Module) -> tuple[wasmtime.Store, Any]:
    """A new store and instance: its memory comes from a slot."""
    store = _store(engine)
    return store, wasmtime.Instance(store, module, []).exports(store)


def _image_sum(path: Path) -> int:
    return sum(path.read_bytes())


def test_detach_memory_writes_the_whole_initial_memory(snapshotted: tuple[bytes, Path]) -> None:
    code, image = snapshotted
    data = image.read_bytes()
    assert len(data) == 2 * PAGE
    assert data[10:18] == b"snapshot" and data[PAGE:] == bytes([7]) * PAGE
    engine = wasmtime.Engine()  # wasmtime's own memory: zeros, no data
    store = wasmtime.Store(engine)  # an engine without epoch interruption
    exports = wasmtime.Instance(store, wasmtime.Module(engine, code), []).exports(store)
    assert exports["sum"](store, 0, 2 * PAGE) == 0


def test_every_instance_starts_as_the_image(served: Served) -> None:
    engine, mem, module, image = served.engine, served.mem, served.module, served.image
    want = _image_sum(image)
    for round_ in range(6):
        store, exports = _fresh(engine, module)
        assert exports["size"](store) == 2
        assert exports["sum"](store, 0, 2 * PAGE) == want, f"round {round_}"
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        assert memory.read(store, 10, 18) == bytearray(b"snapshot")
        exports["fill"](store, 5 + round_ * 4096, 0xAB, 3 * 4096 + 17)  # across pages
        assert exports["grow"](store, 3) == 2  # grown pages start zero
        assert exports["sum"](store, 2 * PAGE, 3 * PAGE) == 0
        exports["fill"](store, 3 * PAGE, 0xCD, PAGE)
        del exports, memory
        del store  # the instance goes: its slot is reset
    assert mem.resets["copied"] >= 5  # reset page by page, the slot kept
    assert mem.slots() == (0, 1)


def test_too_much_written_maps_the_image_anew(
    memories: tuple[wasmtime.Engine, SnapshotMemories],
    snapshotted: tuple[bytes, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine, mem = memories
    code, image = snapshotted
    monkeypatch.setattr(snapshot_memory, "KEEP_RESIDENT_BYTES", 4096 * 2)
    module = wasmtime.Module(engine, code)
    store, exports = _fresh(engine, module)
    exports["fill"](store, 0, 0xEE, 2 * PAGE)  # every page: more than a slot may keep
    mapped = mem.resets["mapped"]
    del exports, store
    assert mem.resets["mapped"] == mapped + 1
    store, exports = _fresh(engine, module)
    assert exports["sum"](store, 0, 2 * PAGE) == _image_sum(image)


def test_slots_beyond_the_cap_are_refused_as_overloaded(
    memories: tuple[wasmtime.Engine, SnapshotMemories], snapshotted: tuple[bytes, Path]
) -> None:
    engine, _ = memories
    module = wasmtime.Module(engine, snapshotted[0])
    stores = [_store(engine) for _ in range(3)]
    wasmtime.Instance(stores[0], module, [])
    wasmtime.Instance(stores[1], module, [])
    with pytest.raises(wasmtime.WasmtimeError, match="concurrent memory limit of 2") as refused:
        wasmtime.Instance(stores[2], module, [])
    error = instantiate_error(GuestTrap(refused.value), "f", 1 << 30)
    assert isinstance(error, Overloaded)  # what the caller gets: 429, retry later
    del stores[0]
    wasmtime.Instance(stores[1], module, [])  # a freed slot serves again


def test_a_memory_of_another_size_is_refused(
    memories: tuple[wasmtime.Engine, SnapshotMemories],
) -> None:
    engine, _ = memories
    other = wasmtime.Module(engine, '(module (memory (export "memory") 3))')
    with pytest.raises(wasmtime.WasmtimeError, match="memories start as its 131072-byte image"):
        wasmtime.Instance(_store(engine), other, [])


def test_image_must_be_whole_pages(tmp_path: Path) -> None:
    bad = tmp_path / "bad.memory"
    bad.write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="whole number of 64 KiB pages"):
        SnapshotMemories(1).attach(bad)


def test_without_pagemap_scan_the_image_is_mapped_anew(
    memories: tuple[wasmtime.Engine, SnapshotMemories], snapshotted: tuple[bytes, Path]
) -> None:
    engine, mem = memories
    code, image = snapshotted
    mem._pagemap = -1  # as on a kernel before 6.7
    module = wasmtime.Module(engine, code)
    for _ in range(3):
        store, exports = _fresh(engine, module)
        assert exports["sum"](store, 0, 2 * PAGE) == _image_sum(image)
        exports["fill"](store, 100, 0x11, 5000)
        del exports, store
    assert mem.resets == {"mapped": 4, "copied": 0}  # the slot's first map, 3 resets


def test_one_image_per_creator(
    memories: tuple[wasmtime.Engine, SnapshotMemories], snapshotted: tuple[bytes, Path]
) -> None:
    _, mem = memories
    mem.attach(snapshotted[1])  # the same image again: nothing to do
    other = snapshotted[1].with_name("other.memory")
    other.write_bytes(bytes(PAGE))
    with pytest.raises(ValueError, match="memories already served from"):
        mem.attach(other)


def test_a_slot_keeps_at_most_twice_its_first_calls_pages(served: Served) -> None:
    engine, mem, module, image = served.engine, served.mem, served.module, served.image

    def call(start: int, pages: int) -> None:
        store, exports = _fresh(engine, module)
        assert exports["sum"](store, 0, 2 * PAGE) == _image_sum(image)
        exports["fill"](store, start, 0x22, pages * 4096)
        del exports, store

    call(0, 2)  # the slot's first reset copies 2 pages back
    assert mem.resets == {"mapped": 1, "copied": 1}
    call(8 * 4096, 10)  # 12 pages written since the map: within 2 * 2 + 16
    assert mem.resets == {"mapped": 1, "copied": 2}
    call(20 * 4096, 10)  # 22: past it, so the image is mapped anew
    assert mem.resets == {"mapped": 2, "copied": 2}
    call(0, 1)  # and the slot starts counting again
    assert mem.resets == {"mapped": 2, "copied": 3}
    call(0, 1)


def test_written_pages_come_back_byte_for_byte_even_past_one_scan(
    random_image: tuple[bytes, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(snapshot_memory, "_REGIONS", 2)  # a scan stops every 2 runs
    code, image = random_image
    engine, mem = _serving(image, max_slots=1)
    module = wasmtime.Module(engine, code)
    for round_ in range(4):
        store, exports = _fresh(engine, module)
        assert _as_image(store, exports, image), f"round {round_}"
        for page in range(round_ % 2, 32, 2):  # 16 separate runs of written pages
            exports["fill"](store, page * 4096 + 100, round_ + 1, 10)
        assert exports["grow"](store, 2) == 2
        exports["fill"](store, 3 * PAGE, 0x99, 100)
        del exports, store
    assert mem.resets["copied"] == 4 and mem.slots() == (0, 1)
    store, exports = _fresh(engine, module)
    with pytest.raises(wasmtime.Trap, match="out of bounds"):  # the grown pages are gone
        exports["sum"](store, 3 * PAGE, 1)
    del exports, store
    mem.close()


def test_a_forked_process_scans_its_own_pages(
    memories: tuple[wasmtime.Engine, SnapshotMemories], random_image: tuple[bytes, Path]
) -> None:
    engine, mem = memories
    code, image = random_image
    module = wasmtime.Module(engine, code)
    mem._pid = -1  # as if this process were a fork of the one that opened the pagemap
    for _ in range(2):
        store, exports = _fresh(engine, module)
        assert _as_image(store, exports, image)
        exports["fill"](store, 4096, 0x5A, 3 * 4096)
        del exports, store
    assert mem._pid == os.getpid() and mem.resets["copied"] == 2


def test_close_unmaps_waiting_slots_and_later_drops(
    snapshotted: tuple[bytes, Path],
) -> None:
    code, image = snapshotted
    engine, mem = _serving(image, max_slots=4)
    module = wasmtime.Module(engine, code)
    kept = _store(engine)
    wasmtime.Instance(kept, module, [])
    dropped = _store(engine)
    wasmtime.Instance(dropped, module, [])
    del dropped
    assert mem.slots() == (1, 1)
    mem.close()
    assert mem.slots() == (1, 0)
    del kept
    assert mem.slots() == (0, 0)
