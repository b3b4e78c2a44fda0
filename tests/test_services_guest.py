"""Managed services as a guest sees them: real modules, real LMDB, grants, atomic effects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.errors import FunctionCrashed, FunctionFailed, FunctionTimeout
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform

Build = Callable[[str], Path]

GRANTS = {
    "tables": {"t": "read-write", "ro": "read"},
    "buckets": {"b": "read-write"},
    "queues": {"q": "read-write"},
    "topics": {"order.*": "read-write"},
}


@pytest.fixture
def svc(platform: Platform, build: Build) -> Callable[..., list[dict[str, Any]]]:
    spec = function_spec_from_dict(
        "svc", {"wasm": "svc.wasm", "grants": GRANTS, "timeout": "1s"}, where="test"
    )
    platform.deploy(spec, build("services_zig").read_bytes())

    def run(*ops: dict[str, Any], then: str = "ok") -> list[dict[str, Any]]:
        result = platform.invoke(
            "svc", {"kind": "invoke", "input": {"ops": list(ops), "then": then}}
        )
        out: list[dict[str, Any]] = result.response["output"]
        return out

    return run


def ok(result: dict[str, Any]) -> Any:
    assert "ok" in result, result
    return result["ok"]


def test_put_get_delete_with_versions(svc: Callable[..., Any]) -> None:
    r = svc(
        {"op": "kv_put", "table": "t", "key": "a", "value": {"n": 1}},
        {"op": "kv_get", "table": "t", "key": "a"},  # its own staged write
    )
    assert ok(r[0]) == 1
    assert ok(r[1]) == {"value": {"n": 1}, "version": 1}
    r = svc(
        {"op": "kv_get", "table": "t", "key": "a"},
        {"op": "kv_put", "table": "t", "key": "a", "value": [1, 2]},
        {"op": "kv_delete", "table": "t", "key": "missing"},
    )
    assert ok(r[0]) == {"value": {"n": 1}, "version": 1}
    assert ok(r[1]) == 2
    assert ok(r[2]) is False
    r = svc(
        {"op": "kv_delete", "table": "t", "key": "a"}, {"op": "kv_get", "table": "t", "key": "a"}
    )
    assert ok(r[0]) is True and ok(r[1]) is None
    assert ok(svc({"op": "kv_get", "table": "t", "key": "a"})[0]) is None


def test_compare_and_set(svc: Callable[..., Any]) -> None:
    put = {"op": "kv_put", "table": "t", "key": "c", "value": 0}
    assert ok(svc({**put, "if_absent": True})[0]) == 1
    r = svc(
        {**put, "if_absent": True}, {**put, "if_version": 7}, {**put, "value": 5, "if_version": 1}
    )
    assert r[0] == {"err": "Conflict"} and r[1] == {"err": "Conflict"}
    assert ok(r[2]) == 2
    assert ok(svc({"op": "kv_get", "table": "t", "key": "c"})[0]) == {"value": 5, "version": 2}


def test_scan_orders_bytewise_and_pages_over_staged_and_committed(
    svc: Callable[..., Any],
) -> None:
    svc(*[{"op": "kv_put", "table": "t", "key": k, "value": k} for k in ("b", "a", "ab", "c", "x")])
    r = svc(
        {"op": "kv_put", "table": "t", "key": "aa", "value": "staged"},
        {"op": "kv_delete", "table": "t", "key": "b"},
        {"op": "kv_scan", "table": "t", "limit": 3},
        {"op": "kv_scan", "table": "t", "prefix": "a"},
    )
    page = ok(r[2])
    assert [item[0] for item in page["items"]] == [b"a", b"aa", b"ab"]
    assert page["items"][1][1] == "staged"
    rest = svc(
        {"op": "kv_scan", "table": "t", "limit": 3, "cursor": page["cursor"]},
    )
    assert [item[0] for item in ok(rest[0])["items"]] == [b"c", b"x"]  # b's delete committed
    assert [item[0] for item in ok(r[3])["items"]] == [b"a", b"aa", b"ab"]


def test_blobs_put_get_range_head_list_delete(svc: Callable[..., Any]) -> None:
    r = svc(
        {
            "op": "blob_put",
            "bucket": "b",
            "key": "img/1.png",
            "data": "0123456789",
            "content_type": "image/png",
        },
        {
            "op": "blob_put",
            "bucket": "b",
            "key": "img/2.png",
            "data": "xy",
            "content_type": "image/png",
        },
        {
            "op": "blob_put",
            "bucket": "b",
            "key": "doc/1.txt",
            "data": "doc",
            "content_type": "text/plain",
        },
    )
    assert ok(r[0])["size"] == 10
    r = svc(
        {"op": "blob_get", "bucket": "b", "key": "img/1.png", "start": 2, "end": 5},
        {"op": "blob_head", "bucket": "b", "key": "img/1.png"},
        {"op": "blob_list", "bucket": "b", "prefix": "img/", "limit": 1},
        {"op": "blob_get", "bucket": "b", "key": "nope"},
    )
    assert ok(r[0])["data"] == b"234" and ok(r[0])["size"] == 10
    head = ok(r[1])
    assert head["content_type"] == "image/png" and len(head["etag"]) == 64
    page = ok(r[2])
    assert [i["key"] for i in page["items"]] == [b"img/1.png"] and page["cursor"]
    nxt = svc({"op": "blob_list", "bucket": "b", "prefix": "img/", "cursor": page["cursor"]})
    assert [i["key"] for i in ok(nxt[0])["items"]] == [b"img/2.png"]
    assert ok(r[3]) is None
    r = svc(
        {"op": "blob_delete", "bucket": "b", "key": "img/1.png"},
        {"op": "blob_head", "bucket": "b", "key": "img/1.png"},
    )
    assert ok(r[0]) is True and ok(r[1]) is None


def test_blob_over_the_cap_is_too_large(svc: Callable[..., Any]) -> None:
    r = svc({"op": "blob_put", "bucket": "b", "key": "big", "data": "z" * ((1 << 20) + 1)})
    assert r[0] == {"err": "TooLarge"}


def test_queue_send_and_publish_commit_with_the_invocation(
    svc: Callable[..., Any], platform: Platform
) -> None:
    r = svc(
        {"op": "queue_send", "queue": "q", "body": {"job": 1}},
        {"op": "event_publish", "topic": "order.created", "payload": {"id": 9}},
    )
    assert ok(r[0]).startswith("msg-") and ok(r[1]).startswith("evt-")
    s = platform.services
    with s.storage.read() as txn:
        [message] = s.queues.peek(txn, "q", 10)
        [(_, event)] = s.outbox.after(txn, 0, 10)
    assert msgpack.unpackb(message.body) == {"job": 1}
    assert event["topic"] == "order.created" and event["source"] == "svc"
    assert msgpack.unpackb(event["payload"]) == {"id": 9}


@pytest.mark.parametrize(
    ("then", "error"),
    [("fail", FunctionFailed), ("panic", FunctionCrashed), ("loop", FunctionTimeout)],
)
def test_a_failed_invocation_leaves_no_trace(
    svc: Callable[..., Any], platform: Platform, then: str, error: type[Exception]
) -> None:
    with pytest.raises(error):
        svc(
            {"op": "kv_put", "table": "t", "key": "ghost", "value": 1},
            {"op": "blob_put", "bucket": "b", "key": "ghost", "data": "x"},
            {"op": "queue_send", "queue": "q", "body": 1},
            {"op": "event_publish", "topic": "order.created", "payload": 1},
            then=then,
        )
    r = svc(
        {"op": "kv_get", "table": "t", "key": "ghost"},
        {"op": "blob_head", "bucket": "b", "key": "ghost"},
    )
    assert ok(r[0]) is None and ok(r[1]) is None
    s = platform.services
    with s.storage.read() as txn:
        assert s.queues.peek(txn, "q", 10) == []
        assert s.outbox.after(txn, 0, 10) == []


def test_grants_are_enforced_in_the_guest(svc: Callable[..., Any], platform: Platform) -> None:
    r = svc(
        {"op": "kv_put", "table": "ro", "key": "k", "value": 1},
        {"op": "kv_get", "table": "ro", "key": "k"},
        {"op": "kv_get", "table": "secret", "key": "k"},
        {"op": "queue_send", "queue": "other", "body": 1},
        {"op": "event_publish", "topic": "user.created", "payload": 1},
        {"op": "blob_get", "bucket": "private", "key": "k"},
        {"op": "kv_put", "table": "t", "key": "fine", "value": 1},
    )
    denied = {"err": "PermissionDenied"}
    assert (
        r[0] == denied and r[2] == denied and r[3] == denied and r[4] == denied and r[5] == denied
    )
    assert ok(r[1]) is None and ok(r[6]) == 1  # the function goes on after a denial
    record = platform.telemetry.recent("svc", 1)[0]
    denials = [msg for level, msg in record.logs if "permission denied" in msg]
    assert len(denials) == 5 and "secret" in " ".join(denials)


def test_no_grants_reach_nothing(platform: Platform, build: Build) -> None:
    spec = function_spec_from_dict("bare", {"wasm": "x.wasm"}, where="test")
    platform.deploy(spec, build("services_zig").read_bytes())
    ops = [{"op": "kv_get", "table": "t", "key": "k"}, {"op": "blob_list", "bucket": "b"}]
    out = platform.invoke("bare", {"kind": "invoke", "input": {"ops": ops}}).response["output"]
    assert out == [{"err": "PermissionDenied"}] * 2


def test_bad_requests_are_invalid_not_crashes(svc: Callable[..., Any]) -> None:
    r = svc(
        {"op": "kv_get", "table": "bad name!", "key": "k"},
        {"op": "kv_get", "table": "t", "key": ""},
        {"op": "event_publish", "topic": "order.*", "payload": 1},
    )
    assert r == [{"err": "Invalid"}] * 3


def test_c_sdk_service_wrappers(platform: Platform, build: Build) -> None:
    grants = {**GRANTS, "topics": {"order.#": "read-write"}}
    spec = function_spec_from_dict("svc_c", {"wasm": "c.wasm", "grants": grants}, where="test")
    platform.deploy(spec, build("services_c").read_bytes())
    out = platform.invoke(
        "svc_c", {"kind": "invoke", "input": {"key": "k1", "data": "hello blob"}}
    ).response["output"]
    statuses = [s for s, _ in out]
    assert statuses == [0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    assert out[1][1] == {"value": {"n": 42}, "version": 1}
    assert out[3][1]["items"][0][:2] == [b"k1", {"n": 42}]
    assert out[6][1]["data"] == b"hello blob"
    assert out[8][1]["items"][0]["key"] == b"k1"
    assert out[9][1]["id"].startswith("msg-")
    assert "grant" in out[11][1]
