"""The runtime on real guests: fresh state per call, every limit, every ABI violation."""

from __future__ import annotations

import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import wasmtime

from host.errors import (
    AbiError,
    DeployError,
    FunctionCrashed,
    FunctionOutOfMemory,
    FunctionTimeout,
    PayloadTooLarge,
    ResponseTooLarge,
)
from host.hostcalls.catalog import all_host_functions
from host.runtime.cache import ModuleCache
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits
from host.runtime.runtime import Runtime

Build = Callable[[str], Path]


def envelope(function: str, event: dict[str, Any] | None = None) -> bytes:
    """``event`` with the ABI envelope's common fields, packed."""
    common = {"kind": "invoke", "id": "req-test", "request_id": "req-test"}
    return msgpack.packb(
        {**common, "function": function, "deadline_ms": 0, "env": {}, **(event or {})}
    )


def call(
    rt: Runtime, fn: Any, event: dict[str, Any] | None = None
) -> tuple[dict[str, Any], Invocation]:
    inv = Invocation(request_id="req-test", function=fn.name)
    return rt.invoke(fn, envelope(fn.name, event), inv), inv


def load(rt: Runtime, build: Build, name: str, **limits: Any) -> Any:
    return rt.load(name, build(name).read_bytes(), Limits(**limits))


def test_fresh_instance_every_call(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "counter_zig")
    outputs = [call(runtime, fn)[0]["output"] for _ in range(5)]
    assert outputs == [1] * 5


def test_core_hostcalls(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "hostcalls_zig")
    before = time.time_ns()
    response, inv = call(runtime, fn)
    out = response["output"]
    assert before <= out["now"] <= time.time_ns()
    assert len(out["random"]) == 32
    assert out["random"] != call(runtime, fn)[0]["output"]["random"]
    assert [line.level for line in inv.logs] == ["debug", "info", "warn", "error"]
    assert all(line.message for line in inv.logs)


def test_infinite_loop_times_out_and_host_serves_next(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "loop_zig", timeout_s=0.2)
    t0 = time.monotonic()
    with pytest.raises(FunctionTimeout, match="time limit"):
        call(runtime, fn)
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.2  # the limit, not an early stop; the upper bound lives in bench/
    counter = load(runtime, build, "counter_zig")
    assert call(runtime, counter)[0]["output"] == 1


def test_memory_cap(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "membomb_zig", memory_bytes=16 * 1024 * 1024)
    with pytest.raises(FunctionOutOfMemory, match="memory"):
        call(runtime, fn)
    counter = load(runtime, build, "counter_zig")
    assert call(runtime, counter)[0]["output"] == 1


def test_stack_overflow_is_a_crash(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "recursion_zig")
    with pytest.raises(FunctionCrashed, match="stack overflow"):
        call(runtime, fn)


def test_panic_is_a_crash_with_its_message(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "panic_zig")
    with pytest.raises(FunctionCrashed, match="boom"):
        call(runtime, fn)


@pytest.mark.parametrize(
    ("guest", "message"),
    [("divzero_c", "divide by zero"), ("unreachable_c", "unreachable")],
)
def test_traps_carry_their_message(
    runtime: Runtime, build: Build, guest: str, message: str
) -> None:
    fn = load(runtime, build, guest)
    with pytest.raises(FunctionCrashed, match=message):
        call(runtime, fn, {"input": {"divisor": 0}})


@pytest.mark.parametrize(
    ("guest", "message"),
    [
        ("badptr_c", "nimbus_handle returned response 4293918720[+]64, outside the"),
        ("wildalloc_c", r"nimbus_alloc returned 4293918720, outside the \d+-byte memory"),
        ("garbage_c", "not msgpack"),
        ("notmap_c", "must be a map"),
    ],
)
def test_abi_violations(runtime: Runtime, build: Build, guest: str, message: str) -> None:
    fn = load(runtime, build, guest)
    with pytest.raises(AbiError, match=message):
        call(runtime, fn)


def test_an_allocator_without_memory_for_the_event(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "noalloc_c")
    with pytest.raises(FunctionOutOfMemory, match=r"could not allocate \d+ bytes for its event"):
        call(runtime, fn)


def test_missing_export_is_named(runtime: Runtime, build: Build) -> None:
    with pytest.raises(AbiError, match="nimbus_handle"):
        load(runtime, build, "noexport_c")


def test_undeclared_imports_are_listed(runtime: Runtime, build: Build) -> None:
    with pytest.raises(DeployError) as info:
        load(runtime, build, "undeclared_c")
    assert "nimbus.teleport" in str(info.value)
    assert "env.foo" in str(info.value)


def test_not_wasm_is_a_deploy_error(runtime: Runtime) -> None:
    with pytest.raises(DeployError, match="not a valid WebAssembly"):
        runtime.load("junk", b"\0asm-not-really")


def test_request_cap_checked_before_copy(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "counter_zig", max_request_bytes=1024)
    with pytest.raises(PayloadTooLarge, match="at most 1024"):
        call(runtime, fn, {"input": "x" * 2048})


def test_response_cap(runtime: Runtime, build: Build) -> None:
    fn = load(runtime, build, "oversized_c", max_response_bytes=64 * 1024)
    small, _ = call(runtime, fn, {"input": {"size": 1000}})
    assert len(small["body"]) == 1000
    with pytest.raises(ResponseTooLarge, match="cap"):
        call(runtime, fn, {"input": {"size": 100_000}})


def test_cache_hit_in_a_fresh_process(tmp_path: Path, build: Build) -> None:
    wasm = build("counter_zig")
    cache = tmp_path / "cache"
    probe = (
        "import sys; from pathlib import Path; from host.runtime.runtime import Runtime; "
        "from host.hostcalls.catalog import all_host_functions; "
        "rt = Runtime(Path(sys.argv[1]), all_host_functions()); "
        "fn = rt.load('c', Path(sys.argv[2]).read_bytes()); "
        "print(fn.cache_hit, rt.cache.compiles)"
    )

    def run() -> str:
        return subprocess.run(
            [sys.executable, "-c", probe, str(cache), str(wasm)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    assert run() == "False 1"
    assert run() == "True 0"


def test_corrupt_cache_entry_is_rebuilt(tmp_path: Path, build: Build) -> None:
    wasm = build("counter_zig").read_bytes()
    rt = Runtime(tmp_path / "cache", all_host_functions())
    fn = rt.load("c", wasm)
    path = rt.cache.path_for(fn.sha256)
    rt.close()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))

    rt2 = Runtime(tmp_path / "cache", all_host_functions())
    fn2 = rt2.load("c", wasm)
    assert not fn2.cache_hit
    assert rt2.cache.rejected == 1
    assert call(rt2, fn2)[0]["output"] == 1
    rt2.close()
    rt3 = Runtime(tmp_path / "cache", all_host_functions())
    assert rt3.load("c", wasm).cache_hit
    rt3.close()


def test_truncated_cache_entry_is_rebuilt(tmp_path: Path, build: Build) -> None:
    wasm = build("counter_zig").read_bytes()
    rt = Runtime(tmp_path / "cache", all_host_functions())
    path = rt.cache.path_for(rt.load("c", wasm).sha256)
    path.write_bytes(path.read_bytes()[:100])
    path.with_suffix(".sum").write_text(f"100 {'0' * 64}\n")  # a lying sidecar
    fn = Runtime(tmp_path / "cache", all_host_functions()).load("c", wasm)
    assert not fn.cache_hit


def test_a_sidecar_that_is_not_text_is_rebuilt(tmp_path: Path, build: Build) -> None:
    wasm = build("counter_zig").read_bytes()
    engine = wasmtime.Engine()
    first = ModuleCache(tmp_path, engine, "fp")
    path = first.path_for(first.load(wasm).sha256)
    path.with_suffix(".sum").write_bytes(b"\xff\xfe\x00")
    cache = ModuleCache(tmp_path, engine, "fp")
    assert not cache.load(wasm).cache_hit and cache.rejected == 1
    assert ModuleCache(tmp_path, engine, "fp").load(wasm).cache_hit  # rebuilt whole


def test_a_sidecar_of_an_older_host_is_checked_by_its_own_digest(
    tmp_path: Path, build: Build
) -> None:
    wasm = build("counter_zig").read_bytes()
    engine = wasmtime.Engine()
    first = ModuleCache(tmp_path, engine, "fp")
    path = first.path_for(first.load(wasm).sha256)
    size, digest = path.with_suffix(".sum").read_text().split()
    assert digest.startswith("xxh3:")
    crc = zlib.crc32(path.read_bytes())
    path.with_suffix(".sum").write_text(f"{size} crc32:{crc:08x}\n")  # as hosts wrote it
    cache = ModuleCache(tmp_path, engine, "fp")
    assert cache.load(wasm).cache_hit and cache.rejected == 0
    for wrong in (f"crc32:{crc ^ 1:08x}", f"sha1:{crc:08x}"):  # a wrong sum, an unknown kind
        path.with_suffix(".sum").write_text(f"{size} {wrong}\n")
        cache = ModuleCache(tmp_path, engine, "fp")
        assert not cache.load(wasm).cache_hit and cache.rejected == 1


def test_two_processes_compiling_at_once_agree(tmp_path: Path, build: Build) -> None:
    wasm = build("counter_zig")
    cache = tmp_path / "cache"
    probe = (
        "import sys; from pathlib import Path; from host.runtime.runtime import Runtime; "
        "from host.hostcalls.catalog import all_host_functions; "
        "rt = Runtime(Path(sys.argv[1]), all_host_functions()); "
        "rt.load('c', Path(sys.argv[2]).read_bytes())"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", probe, str(cache), str(wasm)]) for _ in range(2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    rt = Runtime(cache, all_host_functions())
    fn = rt.load("c", wasm.read_bytes())
    assert fn.cache_hit and rt.cache.rejected == 0
