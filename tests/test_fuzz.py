"""Property-based fuzzing of the guest boundary (issue 12), with hypothesis.

Random bytes and random pointer/length pairs to every import, random response bytes
and maps, random small modules. The property, every time: the invocation answers or
ends in a typed ``NimbusError`` (never another exception), a failed invocation
commits nothing, the host answers the next request, and its RSS stays in budget.
Example counts are small so the suite stays fast; each example is a real module.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from host.errors import NimbusError
from host.manifest.functions import FunctionSpec
from host.manifest.grants import Grants
from host.platform.platform import Platform, PlatformOptions
from tests.hostile import SERVICE_OPS, WRITES, guest, packb, settled_rss

GRANTS = Grants(
    tables={"t": "read-write"},
    buckets={"b": "read-write"},
    queues={"q": "read-write"},
    topics={"e.*": "read-write"},
)
SPEC = FunctionSpec(name="fuzz", grants=GRANTS, timeout_s=0.5, max_response_bytes=64 * 1024)
HELLO = guest(response=packb({"status": 200, "body": "hello"}))
MiB = 1024 * 1024
FUZZ = settings(
    max_examples=int(os.environ.get("NIMBUS_FUZZ_EXAMPLES", "25")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)


@pytest.fixture(scope="module")
def fp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    p = Platform(tmp_path_factory.mktemp("fuzz"), PlatformOptions(initial_map_size=1 << 20))
    p.invoke_module(SPEC, HELLO, {"kind": "invoke"})
    yield p
    p.close()


@pytest.fixture(autouse=True)
def rss_in_budget(fp: Platform) -> Iterator[None]:
    """Each property's examples together leave the host's RSS within 50 MiB."""
    start = settled_rss()
    yield
    grown = settled_rss() - start
    assert grown < 50 * MiB, f"RSS grew by {grown / MiB:.1f} MiB over the examples"


def commits(p: Platform) -> int:
    txnid: int = p.services.storage.env.info()["last_txnid"]
    return txnid


def check(p: Platform, wasm: bytes) -> Any:
    """Run ``wasm`` once and check the property; the response, or None if it failed."""
    before = commits(p)
    try:
        result = p.invoke_module(SPEC, wasm, {"kind": "invoke", "input": None})
    except NimbusError:
        assert commits(p) == before, "a failed invocation committed something"
        response = None
    else:
        response = result.response
        assert isinstance(response["body"], bytes)
        assert 100 <= response["status"] <= 599
    assert p.invoke_module(SPEC, HELLO, {"kind": "invoke"}).response["body"] == b"hello"
    return response


ops = st.sampled_from(SERVICE_OPS)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)


@FUZZ
@given(op=ops, data=st.binary(max_size=512))
def test_random_bytes_to_every_import(fp: Platform, op: str, data: bytes) -> None:
    response = check(fp, guest(call=(op, data)))
    assert response is not None  # a bad request is a status, never the end of the call
    status, _ = response["output"]
    assert status in range(6)


@FUZZ
@given(op=ops, ptr=u32, length=u32)
def test_random_pointers_to_every_import(fp: Platform, op: str, ptr: int, length: int) -> None:
    check(fp, guest(stage=WRITES, call_raw=(op, ptr, length)))


@FUZZ
@given(ptr=u32, length=u32, level=st.integers(-(2**31), 2**31 - 1))
def test_random_pointers_to_core_imports(fp: Platform, ptr: int, length: int, level: int) -> None:
    i32 = (ptr ^ 0x80000000) - 0x80000000, (length ^ 0x80000000) - 0x80000000
    body = (
        f"(call $log (i32.const {level}) (i32.const {i32[0]}) (i32.const {i32[1]}))"
        f"(call $random_bytes (i32.const {i32[0]}) (i32.const {i32[1]}))"
    )
    check(fp, guest(stage=WRITES, body=body))


@FUZZ
@given(raw=st.binary(max_size=256))
def test_random_response_bytes(fp: Platform, raw: bytes) -> None:
    check(fp, guest(stage=WRITES, response=raw))


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=4))
)
keys = st.text(max_size=5) | st.binary(max_size=3) | st.integers(-(2**63), 2**64 - 1)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=12,
)
responses = st.dictionaries(
    st.sampled_from(["status", "headers", "body", "output", "error"]) | st.text(max_size=4),
    values
    | st.dictionaries(st.text(max_size=12), st.text(max_size=12) | values, max_size=3)
    | st.integers(0, 1000),
    max_size=5,
)


@FUZZ
@given(response=responses)
def test_random_response_maps(fp: Platform, response: dict[Any, Any]) -> None:
    check(fp, guest(stage=WRITES, response=packb(response)))


INSTRUCTIONS = st.sampled_from(
    [
        "(drop (memory.grow (i32.const 1)))",
        "(drop (memory.grow (i32.const 5000)))",
        "(unreachable)",
        "(drop (i32.div_u (i32.const 1) (i32.const 0)))",
        "(i32.store (i32.const -4) (i32.const 1))",
        "(drop (call $now))",
        "(call $abort (i32.const 0) (i32.const 1024) (i32.const 8))",
        "(call $abort (i32.const 1) (i32.const 1024) (i32.const 8))",
        "(call $abort (i32.const 7) (i32.const -1) (i32.const 8))",
        "(call $log (i32.const 9) (i32.const 1024) (i32.const 16))",
        "(loop $l (br $l))",
        "(drop (call $kv_get (i32.const 1024) (i32.const 64)))",
        "(drop (call $kv_put (i32.const 0) (i32.const 70000)))",
        "(global.set $heap (i32.const -16))",
        "(global.set $heap (i32.const 0))",
    ]
)


@FUZZ
@given(program=st.lists(INSTRUCTIONS, max_size=4))
def test_random_small_modules(fp: Platform, program: list[str]) -> None:
    check(fp, guest(stage=WRITES, body="\n".join(program)))
