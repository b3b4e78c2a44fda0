"""Hostile guests, class by class (issue 12): each ends in its documented typed error,
nothing of the failed invocation is committed, and the host then answers ``hello``.

The guests are raw WebAssembly text (tests/hostile.py) so that they can do what no
SDK would: send any bytes to any import, return any response, call imports from a
start function. "Nothing committed" is checked on LMDB itself: the id of its last
write transaction does not move.
"""

from __future__ import annotations

import math
import time
from typing import Any

import msgpack
import pytest

from host.errors import (
    AbiError,
    DeployError,
    FunctionFailed,
    FunctionTimeout,
    PayloadTooLarge,
    ResponseTooLarge,
)
from host.hostcalls.wire import INVALID, OK, TOO_LARGE
from host.manifest.functions import MAX_MODULE_BYTES, FunctionSpec
from host.manifest.grants import Grants
from host.platform.platform import InvocationResult, Platform
from host.runtime.invocation import Invocation
from host.runtime.limits import Limits
from host.runtime.runtime import Runtime
from tests.hostile import WRITES, guest, packb

GRANTS = Grants(
    tables={"t": "read-write"},
    buckets={"b": "read-write"},
    queues={"q": "read-write"},
    topics={"e.*": "read-write"},
)
EVENT: dict[str, Any] = {"kind": "invoke", "input": None}
HELLO = guest(response=packb({"status": 200, "body": "hello"}))


def deploy(p: Platform, name: str, wasm: bytes, **spec: Any) -> None:
    p.deploy(FunctionSpec(name=name, grants=GRANTS, **spec), wasm)


def commits(p: Platform) -> int:
    """The id of LMDB's last committed write transaction."""
    txnid: int = p.services.storage.env.info()["last_txnid"]
    return txnid


def invoke(p: Platform, name: str) -> InvocationResult:
    return p.invoke(name, dict(EVENT))


def fails_cleanly(p: Platform, name: str, error: type[Exception], match: str | None = None) -> None:
    """``name`` fails with ``error``; nothing is committed; hello still answers."""
    before = commits(p)
    with pytest.raises(error, match=match):
        invoke(p, name)
    assert commits(p) == before
    assert invoke(p, "hello").response["body"] == b"hello"


@pytest.fixture
def p(platform: Platform) -> Platform:
    deploy(platform, "hello", HELLO)
    return platform


def reply_of(result: InvocationResult) -> list[Any]:
    out: list[Any] = result.response["output"]
    return out


# --- 2. effects of an invocation whose response is invalid ------------------------------

BAD_RESPONSES = {
    "status-9999": {"status": 9999, "body": "x"},
    "status-string": {"status": "200"},
    "header-crlf": {"headers": {"x-a": "1\r\nset-cookie: evil=1"}, "body": "x"},
    "header-nul": {"headers": {"x-a": "1\x00"}, "body": "x"},
    "header-not-latin1": {"headers": {"x-a": "\u2603"}, "body": "x"},
    "header-name": {"headers": {"bad name": "v"}, "body": "x"},
    "header-not-str": {"headers": {"x-a": 1}, "body": "x"},
    "body-bin-key": {"body": {b"k": 1}},
    "body-ext": {"body": msgpack.ExtType(7, b"x")},
    "body-timestamp": {"body": [msgpack.Timestamp(1)]},
    "body-nan": {"body": [math.nan]},
    "output-infinity": {"output": {"x": math.inf}},
    "output-bin-key": {"output": {b"k": 1}},
}


@pytest.mark.parametrize("case", sorted(BAD_RESPONSES))
def test_invalid_response_commits_nothing(p: Platform, case: str) -> None:
    deploy(p, "bad", guest(stage=WRITES, response=packb(BAD_RESPONSES[case])))
    fails_cleanly(p, "bad", AbiError)


@pytest.mark.parametrize(
    "raw",
    [b"\xc1", b"\x81\x91\x01\x02", b"\x92\x01\x02", b"\x91" * 200 + b"\x80", b"\x80\x80"],
    ids=["not-msgpack", "list-key", "not-a-map", "too-deep", "trailing"],
)
def test_undecodable_response_commits_nothing(p: Platform, raw: bytes) -> None:
    deploy(p, "bad", guest(stage=WRITES, response=raw))
    fails_cleanly(p, "bad", AbiError)


def test_response_cap_holds_on_the_bytes_sent(p: Platform) -> None:
    n = 950_000  # 0.95 MiB of msgpack nils: 5.7 MB as a JSON body
    raw = b"\x81\xa4body\xdd" + n.to_bytes(4, "big") + b"\xc0" * n
    deploy(p, "big", guest(stage=WRITES, response=raw), max_response_bytes=1 << 20)
    fails_cleanly(p, "big", ResponseTooLarge, "as sent")


def test_framing_headers_belong_to_the_host(p: Platform) -> None:
    headers = {"transfer-encoding": "chunked", "content-length": "3", "connection": "close"}
    deploy(p, "framing", guest(response=packb({"headers": headers, "body": "hello world"})))
    result = invoke(p, "framing")
    assert result.response["headers"] == {"content-type": "text/plain; charset=utf-8"}
    assert result.response["body"] == b"hello world"
    assert sum("dropped" in line.message for line in result.logs) == 3


def test_error_response_commits_nothing(p: Platform) -> None:
    deploy(p, "err", guest(stage=WRITES, response=packb({"error": "no"})))
    fails_cleanly(p, "err", FunctionFailed)


def test_valid_response_commits_every_write(p: Platform) -> None:
    deploy(p, "good", guest(stage=WRITES))
    before = commits(p)
    assert invoke(p, "good").response["body"] == b"ok"
    assert commits(p) == before + 1
    with p.services.begin("test") as effects:
        assert effects.kv_get("t", b"k") is not None


# --- 1 and 3. guest bytes into the host: bounded, typed, never an exception ---------------


def _map_request(op_fields: dict[str, Any], field: str, n: int) -> tuple[bytes, int]:
    """A request whose ``field`` is an array of ``n`` empty maps: the prefix bytes
    and the count of 0x80 bytes that must follow it."""
    head = bytes([0x80 | (len(op_fields) + 1)])
    for k, v in op_fields.items():
        head += packb(k) + packb(v)
    return head + packb(field) + b"\xdd" + n.to_bytes(4, "big"), n


EMPTY_MAPS_AT = 4 << 20


def empty_maps_guest(op: str, fields: dict[str, Any], field: str, n: int) -> bytes:
    head, count = _map_request(fields, field, n)
    start = EMPTY_MAPS_AT - len(head)
    pages = (EMPTY_MAPS_AT + count) // 65536 + 2
    return guest(
        extra_data=[(start, head)],
        fill=(EMPTY_MAPS_AT, 0x80, count),
        call_raw=(op, start, len(head) + count),
        memory_pages=pages,
    )


@pytest.mark.parametrize(
    ("op", "fields", "field", "n", "status"),
    [
        ("kv_put", {"table": "t", "key": "k"}, "value", 20_000_000, TOO_LARGE),
        ("kv_put", {"table": "t", "key": "k"}, "value", 1_000_000, INVALID),
        ("blob_put", {"bucket": "b", "key": "k"}, "data", 20_000_000, INVALID),
        ("queue_send", {"queue": "q"}, "body", 250_000, INVALID),
        ("kv_get", {"table": "t"}, "key", 20_000_000, TOO_LARGE),
    ],
)
def test_millions_of_tiny_objects_are_refused(
    p: Platform, op: str, fields: dict[str, Any], field: str, n: int, status: int
) -> None:
    deploy(p, "maps", empty_maps_guest(op, fields, field, n))
    reply = reply_of(invoke(p, "maps"))
    assert reply[0] == status, reply


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x81\x91\x01\x02",  # a list as a map key
        b"\x81\x81\x01\x02\x03",  # a map as a map key
        b"\x82\xa5table\xa1t\xa3key\x91\x80",  # a key that is a list
        b"\x81\x01\x02",  # an int field name
        b"\xc1",  # not msgpack
        b"\x83\xa5table\xa1t\xa3key\xa1k\xa5value" + b"\x91" * 100 + b"\xc0",  # too deep
        b"\x83\xa5table\xa1t\xa3key\xa1k\xa5value\xa2\xff\xfe",  # not UTF-8
        b"\x81\xa5table\xa1t\xc0",  # trailing bytes
    ],
)
def test_bad_requests_are_status_invalid(p: Platform, request_bytes: bytes) -> None:
    deploy(p, "req", guest(call=("kv_put", request_bytes)))
    assert reply_of(invoke(p, "req"))[0] == INVALID


def test_table_value_cap(p: Platform) -> None:
    value = b"x" * (1 << 20)
    deploy(p, "v", guest(call=("kv_put", packb({"table": "t", "key": "k", "value": value}))))
    reply = reply_of(invoke(p, "v"))
    assert reply[0] == TOO_LARGE and "table value" in reply[1]


def test_log_out_of_bounds_is_abi_error(p: Platform) -> None:
    body = "(call $log (i32.const 1) (i32.const 1024) (i32.const -1))"
    deploy(p, "log", guest(stage=WRITES, body=body))
    fails_cleanly(p, "log", AbiError)


def test_log_budget_keeps_one_marker(p: Platform) -> None:
    body = """(local.set $start (i32.const 5000))
      (loop $l (call $log (i32.const 1) (i32.const 1024) (i32.const 10))
        (local.set $start (i32.sub (local.get $start) (i32.const 1)))
        (br_if $l (local.get $start)))"""
    deploy(p, "logs", guest(body=body), max_log_lines=100)
    result = invoke(p, "logs")
    assert len(result.logs) == 101
    assert result.logs[-1].message == "log truncated: 4900 lines dropped"


def test_staging_budget(p: Platform) -> None:
    put = packb({"table": "t", "key": "k", "value": b"x" * 1000})
    deploy(p, "stage", guest(stage=[("kv_put", put)] * 3, call=("kv_put", put)), max_staged_ops=3)
    reply = reply_of(invoke(p, "stage"))
    assert reply[0] == TOO_LARGE and "max_staged_ops" in reply[1]
    deploy(p, "bytes", guest(call=("kv_put", put)), max_staged_bytes=500)
    reply = reply_of(invoke(p, "bytes"))
    assert reply[0] == TOO_LARGE and "max_staged" in reply[1]


def test_every_import_answers_a_small_request(p: Platform) -> None:
    from tests.hostile import SERVICE_OPS

    for op in SERVICE_OPS:
        deploy(p, "one", guest(call=(op, packb({}))))
        assert reply_of(invoke(p, "one"))[0] == INVALID, op
    deploy(p, "ok", guest(call=("kv_get", packb({"table": "t", "key": "k"}))))
    assert reply_of(invoke(p, "ok")) == [OK, None]


# --- 3. deploy-time checks at deploy only ---------------------------------------------------

NO_HANDLE = b"""(module (memory (export "memory") 1)
  (func (export "nimbus_abi_version") (result i32) (i32.const 1))
  (func (export "nimbus_alloc") (param i32) (result i32) (i32.const 0)))"""


def test_missing_export_is_named_at_deploy(p: Platform) -> None:
    import wasmtime

    with pytest.raises(DeployError, match="nimbus_handle"):
        deploy(p, "nohandle", wasmtime.wat2wasm(NO_HANDLE.decode()))
    with pytest.raises(DeployError, match="memory"):
        deploy(p, "empty", b"\0asm\x01\0\0\0")
    with pytest.raises(DeployError, match="empty"):
        deploy(p, "nothing", b"")


def test_module_size_cap(p: Platform) -> None:
    with pytest.raises(PayloadTooLarge, match="at most"):
        deploy(p, "huge", b"\0asm\x01\0\0\0" + b"\0" * MAX_MODULE_BYTES)


def test_host_import_from_a_start_function(p: Platform, runtime: Runtime) -> None:
    wasm = guest(start="(call $log (i32.const 1) (i32.const 1024) (i32.const 4))")
    with pytest.raises(DeployError, match="start function"):
        deploy(p, "start", wasm)
    fn = runtime.load("start", wasm, Limits(), verify=False)  # as a cold load does
    inv = Invocation(request_id="r", function="start")
    with pytest.raises(AbiError, match="start function"):
        runtime.invoke(fn, packb({"kind": "invoke"}), inv)


def test_cold_load_never_turns_a_timeout_into_a_deploy_error(p: Platform) -> None:
    # the start function loops only once the clock passes a moment after the deploy
    after = time.time_ns() + 1_500_000_000
    start = f"(if (i64.gt_u (call $now) (i64.const {after})) (then (loop $l (br $l))))"
    deploy(p, "later", guest(start=start), timeout_s=0.3)
    assert invoke(p, "later").response["body"] == b"ok"
    time.sleep(max(0.0, (after - time.time_ns()) / 1e9) + 0.1)
    p.pool.drop("later@")  # the next call is a cold load
    fails_cleanly(p, "later", FunctionTimeout)


def test_recent_records_keep_a_byte_budget() -> None:
    from host.telemetry.records import InvocationRecord, Telemetry

    telemetry = Telemetry(keep=10_000, max_bytes=1 << 20)
    line = ("info", "x" * 60_000)
    for i in range(100):
        telemetry.record(
            InvocationRecord(f"r{i}", "f", 1, "http", False, 0, 1.0, "ok", logs=[line] * 4)
        )
    assert telemetry.recent_bytes <= 1 << 20
    kept = telemetry.recent(limit=1000)
    assert 0 < len(kept) < 100 and kept[-1].request_id == "r99"
