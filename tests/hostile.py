"""Hostile guests written as WebAssembly text, compiled with wasmtime's ``wat2wasm``.

``guest(...)`` makes a module that follows ABI v1 to the letter (memory, version,
a bump allocator) and whose ``nimbus_handle`` does what a test asks: stage a table
write, call an import with chosen bytes, then return chosen response bytes. Used by
the containment tests and the fuzz suite.
"""

from __future__ import annotations

import ctypes
import gc
import os

import msgpack
import wasmtime

#: where the test's data sits in guest memory, and where the heap starts
DATA = 1024
HEAP = 1 << 20
#: the msgpack prefix ``{"output": `` written before an import's reply, so that the
#: response is ``{"output": [status, value]}``
OUTPUT_PREFIX = b"\x81\xa6output"

IMPORTS = {
    "log": "(param i32 i32 i32)",
    "now": "(result i64)",
    "random_bytes": "(param i32 i32)",
    "abort": "(param i32 i32 i32)",
}
SERVICE_OPS = (
    "kv_get",
    "kv_put",
    "kv_delete",
    "kv_scan",
    "kv_query",
    "blob_put",
    "blob_get",
    "blob_head",
    "blob_delete",
    "blob_list",
    "queue_send",
    "event_publish",
)


def settled_rss() -> int:
    """This process's resident bytes once garbage is collected and the allocator has
    returned its free pages: what the host keeps, without what malloc merely caches
    (which moves by tens of MiB with what other tests in the process did before)."""
    gc.collect()
    ctypes.CDLL(None).malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def wat_bytes(data: bytes) -> str:
    return '"' + "".join(f"\\{b:02x}" for b in data) + '"'


def packb(value: object) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


#: one write of every kind a guest can stage: a failed invocation must keep none
WRITES = [
    ("kv_put", packb({"table": "t", "key": "k", "value": 1})),
    ("blob_put", packb({"bucket": "b", "key": "k", "data": b"x"})),
    ("queue_send", packb({"queue": "q", "body": 1})),
    ("event_publish", packb({"topic": "e.x", "payload": 1})),
]


def guest(
    *,
    response: bytes = msgpack.packb({"status": 200, "body": "ok"}),
    stage: list[tuple[str, bytes]] | None = None,
    call: tuple[str, bytes] | None = None,
    call_raw: tuple[str, int, int] | None = None,
    fill: tuple[int, int, int] | None = None,
    body: str = "",
    start: str = "",
    memory_pages: int = 17,
    extra_data: list[tuple[int, bytes]] | None = None,
) -> bytes:
    """A module whose handler, in order: makes the service calls ``stage`` (pairs of
    import and request) and ignores their replies; fills
    ``fill = (ptr, byte, count)``; runs ``body`` (raw WAT instructions); calls
    ``call = (import, request bytes)`` or ``call_raw = (import, ptr, len)`` and returns
    ``{"output": reply}``; else returns ``response``."""
    segments: list[tuple[int, bytes]] = []
    at = DATA

    def place(data: bytes) -> int:
        nonlocal at
        ptr = at
        segments.append((ptr, data))
        at += len(data) + 8
        return ptr

    segments.extend(extra_data or [])
    resp_ptr = place(response)
    prefix_ptr = place(OUTPUT_PREFIX)
    assert at < HEAP
    lines: list[str] = []
    for op, request in stage or []:
        ptr = place(request)
        lines.append(f"(drop (call ${op} (i32.const {ptr}) (i32.const {len(request)})))")
    if fill is not None:
        lines.append(
            f"(memory.fill (i32.const {fill[0]}) (i32.const {fill[1]}) (i32.const {fill[2]}))"
        )
    lines.append(body)
    if call is not None or call_raw is not None:
        if call is not None:
            name, request = call
            ptr, length = place(request), len(request)
        else:
            assert call_raw is not None
            name, ptr, length = call_raw
        n = len(OUTPUT_PREFIX)
        lines.append(
            f"""(local.set $start (global.get $heap))
            (memory.copy (global.get $heap) (i32.const {prefix_ptr}) (i32.const {n}))
            (global.set $heap (i32.add (global.get $heap) (i32.const {n})))
            (local.set $r (call ${name} (i32.const {ptr}) (i32.const {length})))
            (return (i64.or (i64.shl (i64.extend_i32_u (local.get $start)) (i64.const 32))
              (i64.add (i64.and (local.get $r) (i64.const 0xffffffff))
                       (i64.const {len(OUTPUT_PREFIX)}))))"""
        )
    lines.append(
        f"(i64.or (i64.shl (i64.const {resp_ptr}) (i64.const 32)) (i64.const {len(response)}))"
    )
    imports = (
        "\n".join(f'(import "nimbus" "{n}" (func ${n} {sig}))' for n, sig in IMPORTS.items())
        + "\n"
        + "\n".join(
            f'(import "nimbus" "{n}" (func ${n} (param i32 i32) (result i64)))' for n in SERVICE_OPS
        )
    )
    data = "\n".join(f"(data (i32.const {p}) {wat_bytes(d)})" for p, d in segments)
    start_fn = f"(func $start {start}) (start $start)" if start else ""
    text = f"""(module
      {imports}
      (memory (export "memory") {memory_pages})
      (global $heap (mut i32) (i32.const {HEAP}))
      (func (export "nimbus_abi_version") (result i32) (i32.const 1))
      (func (export "nimbus_alloc") (param $n i32) (result i32) (local $p i32)
        (local.set $p (global.get $heap))
        (if (i32.gt_u (i32.add (local.get $p) (local.get $n))
                      (i32.mul (memory.size) (i32.const 65536)))
          (then
            (if (i32.eq (memory.grow (i32.add (i32.shr_u (local.get $n) (i32.const 16))
                                              (i32.const 1)))
                        (i32.const -1))
              (then (return (i32.const 0))))))
        (global.set $heap (i32.add (local.get $p) (local.get $n)))
        (local.get $p))
      (func (export "nimbus_handle") (param i32 i32) (result i64)
        (local $r i64) (local $start i32)
        {chr(10).join(lines)})
      {start_fn}
      {data})"""
    wasm: bytes = wasmtime.wat2wasm(text)
    return wasm
