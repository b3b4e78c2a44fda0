"""A core module's initialised state written back into the module (what wizer does),
and the shared Python runtime's initialisation that uses it.

The Python runtime's interpreter takes ~1 s to start and import what functions use;
no invocation should pay that. So the build instantiates the linked module once,
runs its initialisation, and writes the result back into the module: the linear
memory as active data segments (only its non-zero stretches) and every defined
global's value as its constant initialiser. wasmtime maps those segments as a
copy-on-write image, so a fresh instance of the snapshot starts initialised in
microseconds; the host serves the Python runtime's memory itself from that image
(``detach_memory``, ``snapshot_memory.py``). Only what this needs is supported: one
memory, globals of number types with one-instruction initialisers, active data
segments; anything else is refused with the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import wasmtime

from host.common.leb128 import encode as unsigned
from host.common.leb128 import read as read_unsigned
from host.common.leb128 import read_signed
from host.errors import BuildError

_IMPORT, _MEMORY, _GLOBAL, _EXPORT, _START, _DATA, _DATA_COUNT, _CUSTOM = 2, 5, 6, 7, 8, 11, 12, 0
_I32, _I64 = 0x7F, 0x7E
#: what a module has to be in to be snapshotted: instantiated (with its WASI world set
#: up by the caller), its reactor initialiser run; the caller then runs its own steps
Initialise = Callable[[wasmtime.Store, Any], None]


def snapshot(
    module: bytes, linker: wasmtime.Linker, store: wasmtime.Store, initialise: Initialise
) -> bytes:
    """``module`` with its memory and globals as ``initialise`` left them (run on an
    instance made by ``linker`` in ``store``, which holds the WASI world)."""
    sections = _sections(module)
    ids = {sid for sid, _ in sections}
    if _START in ids:
        raise ValueError("a module with a start function (it would run again on the snapshot)")
    if _DATA not in ids or _MEMORY not in ids:
        raise ValueError("a module without a memory and a data section to write it into")
    _active_data_only(sections)
    first, defined = _imported_globals(sections), _globals(sections)
    probe = _with_exports(sections, [(f"g{i}", 3, first + i) for i in range(len(defined))])
    instance = linker.instantiate(store, wasmtime.Module(store.engine, probe))
    exports = instance.exports(store)
    initialise(store, exports)
    memory: Any = exports["memory"]
    data = memory.read(store, 0, memory.data_len(store))
    values = [exports[f"g{i}"].value(store) for i in range(len(defined))]  # type: ignore[union-attr]
    glob = bytearray(unsigned(len(defined)))
    for (kind, mutable, init), value in zip(defined, values, strict=True):
        if kind == _I32:
            init = b"\x41" + _signed(value - (1 << 32) if value >= 1 << 31 else value) + b"\x0b"
        elif kind == _I64:
            init = b"\x42" + _signed(value - (1 << 64) if value >= 1 << 63 else value) + b"\x0b"
        elif mutable:
            raise ValueError(f"a mutable global of type 0x{kind:x} cannot be snapshotted")
        glob += bytes([kind, mutable]) + init
    segments = _segments(data)
    payload = bytearray(unsigned(len(segments)))
    for offset, chunk in segments:
        payload += b"\x00\x41" + _signed(offset) + b"\x0b" + unsigned(len(chunk)) + chunk
    out = []
    for sid, body in sections:
        if sid == _GLOBAL:
            body = bytes(glob)
        elif sid == _DATA:
            body = bytes(payload)
        elif sid == _DATA_COUNT:
            body = unsigned(len(segments))
        elif sid == _MEMORY:  # one memory: its minimum grows to the snapshot's size
            count, j = read_unsigned(body, 0)
            if count != 1:
                raise ValueError(f"a module with {count} memories cannot be snapshotted")
            flags = body[j]
            _, k = read_unsigned(body, j + 1)
            body = b"\x01" + bytes([flags]) + unsigned(len(data) >> 16) + body[k:]
        elif sid == _CUSTOM:  # names and producers: nothing an instance needs
            continue
        out.append((sid, body))
    return _build(out)


def python_runtime(linked: bytes, lib: Path, sdk: Path, stderr: Path) -> bytes:
    """Two instances of the linked module: one compiles the standard library's
    bytecode into ``sdk`` (mode 1), the other starts the runtime, reading it, and is
    snapshotted (mode 0)."""
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    for name, ty in _host_imports(engine, linked):
        linker.define_func(name[0], name[1], ty, _no_host)

    def store() -> wasmtime.Store:
        store = wasmtime.Store(engine)
        wasi = wasmtime.WasiConfig()
        wasi.preopen_dir(str(lib), "/lib", fs_mutable=False)
        wasi.preopen_dir(str(sdk), "/sdk")  # the standard library's bundle is written here
        wasi.stderr_file = str(stderr)
        wasi.stdout_file = str(stderr)
        store.set_wasi(wasi)
        return store

    def initialise(mode: int) -> Initialise:
        def run(store: wasmtime.Store, exports: Any) -> None:
            exports["_initialize"](store)
            rc = exports["nimbus_python_init"](store, mode)
            if rc != 0:
                output = stderr.read_text(errors="replace").strip()
                raise BuildError(
                    f"the shared Python runtime did not start (mode {mode}, step {rc}):\n{output}"
                )

        return run

    try:
        compiling = store()
        instance = linker.instantiate(compiling, wasmtime.Module(engine, linked))
        initialise(1)(compiling, instance.exports(compiling))
        return snapshot(linked, linker, store(), initialise(0))
    except (wasmtime.WasmtimeError, wasmtime.Trap, ValueError) as e:
        output = stderr.read_text(errors="replace").strip() if stderr.exists() else ""
        raise BuildError(f"snapshotting the shared Python runtime failed: {e}\n{output}") from None


def _host_imports(engine: wasmtime.Engine, linked: bytes) -> list[tuple[tuple[str, str], Any]]:
    """The runtime's ``nimbus`` imports: the snapshot's initialisation calls none."""
    module = wasmtime.Module(engine, linked)
    return [
        ((i.module, i.name), i.type)
        for i in module.imports
        if i.module == "nimbus" and i.name is not None
    ]


def _no_host(*args: Any) -> None:
    raise RuntimeError("a host import was called while the Python runtime was initialised")


def _sections(module: bytes) -> list[tuple[int, bytes]]:
    if module[:8] != b"\0asm\x01\0\0\0":
        raise ValueError("not a WebAssembly core module")
    out, i = [], 8
    while i < len(module):
        sid = module[i]
        size, i = read_unsigned(module, i + 1)
        out.append((sid, module[i : i + size]))
        i += size
    return out


def _build(sections: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(bytes([s]) + unsigned(len(b)) + b for s, b in sections)
    return b"\0asm\x01\0\0\0" + body


def _signed(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            return bytes(out + bytes([byte]))
        out.append(byte | 0x80)


def _globals(sections: list[tuple[int, bytes]]) -> list[tuple[int, int, bytes]]:
    """(type, mutability, init expression) of each defined global."""
    for sid, body in sections:
        if sid == _GLOBAL:
            count, j = read_unsigned(body, 0)
            out = []
            for _ in range(count):
                end = _const_end(body, j + 2)
                out.append((body[j], body[j + 1], body[j + 2 : end]))
                j = end
            return out
    return []


def _const_end(body: bytes, at: int) -> int:
    """Where the one-instruction constant expression at ``body[at]`` ends (after its
    ``end``): the immediate is skipped by its encoding, never searched for 0x0b."""
    op, at = body[at], at + 1
    if op in (0x41, 0x42, 0x23, 0xD2):  # i32/i64.const, global.get, ref.func: a LEB128
        while body[at] & 0x80:
            at += 1
        at += 1
    elif op in (0x43, 0x44, 0xD0):  # f32/f64.const, ref.null
        at += {0x43: 4, 0x44: 8, 0xD0: 1}[op]
    else:
        raise ValueError(f"a constant expression with opcode 0x{op:x} at {at}")
    if body[at] != 0x0B:
        raise ValueError(f"a constant expression of more than one instruction at {at}")
    return at + 1


def _active_data_only(sections: list[tuple[int, bytes]]) -> None:
    """The snapshot replaces every data segment with active ones: a passive segment
    (used by ``memory.init``) would lose its index, so such a module is refused."""
    for sid, body in sections:
        if sid == _DATA:
            for _ in _data_segments(body):
                pass


def _data_segments(body: bytes) -> Iterator[tuple[int, bytes]]:
    """Each segment of a data section's ``body``: where its offset expression starts,
    and its bytes; ``ValueError`` at one that is not active in memory 0."""
    count, j = read_unsigned(body, 0)
    for _ in range(count):
        if body[j] != 0:
            raise ValueError("a data segment that is not active in memory 0")
        size, end = read_unsigned(body, _const_end(body, j + 1))
        yield j + 1, body[end : end + size]
        j = end + size


def _imported_globals(sections: list[tuple[int, bytes]]) -> int:
    count = 0
    for sid, body in sections:
        if sid != _IMPORT:
            continue
        n, j = read_unsigned(body, 0)
        for _ in range(n):
            for _ in range(2):  # module and field names
                size, j = read_unsigned(body, j)
                j += size
            kind = body[j]
            j += 1
            if kind == 0:
                _, j = read_unsigned(body, j)
            elif kind in (1, 2):  # table (a reference type first) or memory: limits
                j += kind == 1
                flags = body[j]
                _, j = read_unsigned(body, j + 1)
                if flags & 1:
                    _, j = read_unsigned(body, j)
            else:
                count += kind == 3
                j += 2
    return count


def _with_exports(sections: list[tuple[int, bytes]], extra: list[tuple[str, int, int]]) -> bytes:
    out = []
    for sid, body in sections:
        if sid == _EXPORT:
            count, j = read_unsigned(body, 0)
            added = b"".join(
                unsigned(len(n)) + n.encode() + bytes([k]) + unsigned(i) for n, k, i in extra
            )
            body = unsigned(count + len(extra)) + body[j:] + added
        out.append((sid, body))
    return _build(out)


def _segments(data: bytes, gap: int = 64) -> list[tuple[int, bytes]]:
    """The non-zero stretches of ``data`` (zero runs shorter than ``gap`` kept inside)."""
    zeros, i = bytes(gap), 0
    out: list[tuple[int, bytes]] = []
    while True:
        while i < len(data) and data[i] == 0:
            i += 1
        if i >= len(data):
            return out
        end = data.find(zeros, i)
        end = len(data) if end < 0 else end
        out.append((i, data[i:end]))
        i = end


def detach_memory(module: bytes) -> tuple[bytes, bytes]:
    """``module`` without its data segments, and its whole initial memory as they fill
    it (for a host memory that starts as that image: ``runtime/snapshot_memory.py``)."""
    sections = _sections(module)
    pages = None
    out = []
    image = bytearray()
    for sid, body in sections:
        if sid == _MEMORY:
            count, j = read_unsigned(body, 0)
            if count != 1:
                raise ValueError(f"a module with {count} memories has no one image")
            pages, _ = read_unsigned(body, j + 1)
            image = bytearray(pages << 16)
        elif sid == _DATA:
            if pages is None:
                raise ValueError("a data section before the memory section")
            for at, data in _data_segments(body):
                if body[at] != 0x41:
                    raise ValueError("a data segment whose offset is not an i32.const")
                offset = read_signed(body, at + 1)[0] & 0xFFFFFFFF
                if offset + len(data) > len(image):
                    raise ValueError(f"a data segment at {offset} outside the initial memory")
                image[offset : offset + len(data)] = data
            body = unsigned(0)
        elif sid == _DATA_COUNT:
            body = unsigned(0)
        out.append((sid, body))
    if pages is None:
        raise ValueError("a module without a memory")
    return _build(out), bytes(image)
