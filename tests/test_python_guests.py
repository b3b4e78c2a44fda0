"""Python functions: built into bundles, run in the shared runtime module with the
same limits, errors, imports and services as Zig and C functions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.errors import BuildError, FunctionCrashed, FunctionOutOfMemory, FunctionTimeout
from host.hostcalls.catalog import all_host_functions
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.platform.python_runtime import runtime_wasm
from host.runtime.runtime import Runtime
from host.toolchain.builder import build_function

Build = Callable[[str], Path]


@pytest.fixture(scope="module")
def py(tmp_path_factory: pytest.TempPathFactory, python_cache: Path) -> Iterator[Platform]:
    """One platform for the module: the shared Python runtime compiles once, in seconds."""
    from tests.conftest import GUESTS, python_data_dir

    p = Platform(python_data_dir(tmp_path_factory.mktemp("py"), python_cache))
    hello = build_function(GUESTS / "hello_py").wasm.read_bytes()
    services = build_function(GUESTS / "services_py").wasm.read_bytes()
    p.deploy(
        function_spec_from_dict("hello", {"wasm": "h.wasm", "timeout": "1s", "memory": "96MiB"}),
        hello,
    )
    grants = {
        "tables": {"t": "read-write"},
        "buckets": {"b": "read-write"},
        "queues": {"q": "read-write"},
        "topics": {"order.*": "read-write"},
    }
    p.deploy(function_spec_from_dict("svc", {"wasm": "s.wasm", "grants": grants}), services)
    yield p
    p.close()


def invoke(p: Platform, name: str, input: Any = None, **event: Any) -> Any:
    return p.invoke(name, event or {"kind": "invoke", "input": input})


def test_hello_over_http_with_its_log(py: Platform) -> None:
    r = invoke(
        py,
        "hello",
        kind="http",
        method="GET",
        path="/hello/ada",
        params={"name": "ada"},
        query={},
        headers={},
        body=b"",
    )
    assert r.response["status"] == 200 and r.response["body"] == b"hello, ada\n"
    assert [(line.level, line.message) for line in r.logs] == [("info", "saying hello to ada")]
    record = py.telemetry.recent("hello", 1)[0]
    assert record.request_id == r.request_id and record.logs == [("info", "saying hello to ada")]


ENVELOPES = [
    (
        {
            "kind": "queue",
            "queue": "q",
            "messages": [{"id": "m1", "body": {"n": 1}, "attempt": 2, "enqueued_ms": 7}],
        },
        "QueueEvent",
        {
            "queue": "q",
            "messages": [{"id": "m1", "body": {"n": 1}, "attempt": 2, "enqueued_ms": 7}],
        },
    ),
    (
        {"kind": "schedule", "schedule": "nightly", "cron": "0 3 * * *", "scheduled_ms": 5},
        "ScheduleEvent",
        {"schedule": "nightly", "cron": "0 3 * * *", "scheduled_ms": 5},
    ),
    (
        {
            "kind": "storage",
            "bucket": "b",
            "key": "a.png",
            "op": "put",
            "size": 3,
            "content_type": "image/png",
            "etag": "e",
            "time_ms": 9,
        },
        "StorageEvent",
        {"bucket": "b", "key": "a.png", "op": "put", "size": 3, "etag": "e"},
    ),
    (
        {"kind": "event", "topic": "order.created", "payload": {"id": 1}, "source": "f"},
        "BusEvent",
        {"topic": "order.created", "payload": {"id": 1}, "source": "f"},
    ),
    (
        {
            "kind": "workflow",
            "workflow": "W",
            "run_id": "run-1",
            "step": "s",
            "attempt": 2,
            "input": [1],
        },
        "WorkflowEvent",
        {"workflow": "W", "run_id": "run-1", "step": "s", "attempt": 2, "input": [1]},
    ),
    ({"kind": "invoke", "input": {"x": 1}}, "InvokeEvent", {"input": {"x": 1}}),
]


@pytest.mark.parametrize(("event", "typed", "fields"), ENVELOPES)
def test_every_envelope_is_typed(
    py: Platform, event: dict[str, Any], typed: str, fields: dict[str, Any]
) -> None:
    out = py.invoke("hello", {**event, "id": "evt-1"}).response["output"]
    assert out["type"] == typed and out["id"] == "evt-1" and out["kind"] == event["kind"]
    assert {k: out[k] for k in fields} == fields


def test_fresh_state_and_no_escape(py: Platform) -> None:
    assert [invoke(py, "hello", {"do": "counter"}).response["output"] for _ in range(3)] == [
        1,
        1,
        1,
    ]
    out = invoke(py, "hello", {"do": "escape"}).response["output"]
    assert out["file"].startswith("denied") and out["network"].startswith("denied")


def test_random_and_clock(py: Platform) -> None:
    r = invoke(py, "hello", {"do": "random"})
    assert len(r.response["output"]["random"]) == 16
    assert abs(r.response["output"]["now"] - time.time_ns()) < 60 * 10**9


def test_time_limit_memory_limit_and_exceptions(py: Platform) -> None:
    with pytest.raises(FunctionTimeout):
        invoke(py, "hello", {"do": "loop"})
    with pytest.raises(FunctionOutOfMemory):
        invoke(py, "hello", {"do": "bomb"})
    with pytest.raises(FunctionCrashed, match="ValueError: asked to fail"):
        invoke(
            py,
            "hello",
            {"do": "raise"},
        )
    record = py.telemetry.recent("hello", 1)[0]
    assert record.outcome == "FunctionCrashed"
    assert any("Traceback" in msg and "asked to fail" in msg for _, msg in record.logs)
    assert (
        invoke(
            py,
            "hello",
            kind="http",
            method="GET",
            path="/",
            params={},
            query={},
            headers={},
            body=b"",
        ).response["status"]
        == 200
    )


def test_every_service_and_atomicity(py: Platform) -> None:
    out = invoke(py, "svc", {}).response["output"]
    assert out["put"] == 1 and out["get"] == [{"n": 1}, 1]
    assert out["conflict"] is True
    assert out["scan"] == [[b"k", {"n": 1}, 1]]
    assert out["blob"] == 4 and out["blob_get"] == b"data" and out["blob_list"] == [b"x.txt"]
    assert out["sent"] and out["published"]
    assert "grant" in out["denied"]
    with py.services.storage.read() as txn:
        before = len(py.services.queues.peek(txn, "q", 100))
    with pytest.raises(FunctionCrashed):
        invoke(py, "svc", {"fail": True})
    with py.services.storage.read() as txn:
        assert len(py.services.queues.peek(txn, "q", 100)) == before  # nothing kept
        assert msgpack.unpackb(py.services.tables.get(txn, "t", b"k")[0]) == {"n": 1}  # type: ignore[index]


def test_runtime_and_code_from_the_cache_in_a_new_runtime(py: Platform) -> None:
    wasm = build_function(Path(__file__).parent / "guests" / "hello_py").wasm.read_bytes()
    rt = Runtime(
        py.data_dir / "cache",
        all_host_functions(),
        python_runtime=runtime_wasm,
    )
    try:
        fn = rt.load("hello", wasm)
        assert fn.cache_hit and fn.kind == "python"
        assert rt.python().runtime_cache_hit and rt.python().cache.compiles == 0
    finally:
        rt.close()


def test_c_extensions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "handler.py").write_text("def handle(event):\n    return 1\n")
    (tmp_path / "_speedups.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    with pytest.raises(BuildError, match=r"C extensions.*_speedups"):
        build_function(tmp_path)


def test_python_build_is_incremental() -> None:
    again = build_function(Path(__file__).parent / "guests" / "hello_py")
    assert again.language == "python" and not again.rebuilt
