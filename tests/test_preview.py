"""What a record keeps of an invocation's event and response: bounded, redacted, with
the guest's peak memory (``host/telemetry/preview.py``, ``host/platform/call.py``)."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable
from pathlib import Path

from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.telemetry.preview import MAX_PREVIEW, mask, preview
from host.telemetry.records import InvocationRecord, Telemetry


def test_a_preview_is_bounded_and_redacted() -> None:
    event = {
        "kind": "http",
        "headers": {"Authorization": "Bearer s3cret", "cookie": "sid=s3cret", "x-a": "1"},
        "body": b"x" * 1_000_000,
        "items": list(range(100_000)),
        "deep": [[[[[[[[[[[["bottom"]]]]]]]]]]]],
    }
    text = preview(event)
    assert len(text) <= MAX_PREVIEW + 64
    assert "s3cret" not in text and text.count("[redacted]") == 2
    shown = json.loads(text)
    assert shown["kind"] == "http" and shown["headers"]["x-a"] == "1"
    assert shown["body"].endswith("(1000000 bytes)")
    assert "bottom" not in text
    assert preview({"v": float("nan"), "b": b"\xff\xfe"}) == '{"v":null,"b":"\ufffd\ufffd"}'
    small = {"headers": {"Cookie": "s3cret"}, "body": b"hi", "n": [1, 2.5, None]}
    assert preview(small, size_hint=40) == preview(small)  # the fast path says the same
    assert "s3cret" not in preview(small, size_hint=40)


def test_a_record_keeps_the_event_the_response_and_the_peak_memory(
    platform: Platform, build: Callable[[str], Path]
) -> None:
    spec = function_spec_from_dict("hello", {"wasm": "h.wasm", "memory": "16MiB"})
    platform.deploy(spec, build("hello").read_bytes())
    event = {
        "kind": "http",
        "method": "GET",
        "path": "/hello/ada",
        "params": {"name": "ada"},
        "headers": {"authorization": "Bearer s3cret"},
        "body": b"",
    }
    platform.invoke("hello", event, request_id="req-1")
    (rec,) = platform.telemetry.recent("hello", 1)
    assert json.loads(rec.event)["headers"] == {"authorization": "[redacted]"}
    assert json.loads(rec.event)["path"] == "/hello/ada" and "s3cret" not in rec.event
    response = json.loads(rec.response)
    assert response["status"] == 200 and response["body"] == "hello, ada\n"
    assert 64 * 1024 <= rec.memory_bytes <= 16 * 1024 * 1024  # pages the guest had


def test_mask_replaces_secret_values_wherever_they_are() -> None:
    value = {"a": [b"x-s3cret-y", {"s3cret": "s3cret"}], "n": 1}
    assert mask(value, [b"s3cret"]) == {"a": [b"x-[secret]-y", {"[secret]": "[secret]"}], "n": 1}


def test_previews_count_in_the_byte_budget() -> None:
    telemetry = Telemetry(keep=1000, max_bytes=64 * 1024)
    big = preview({"body": b"x" * 100_000})
    for i in range(100):
        telemetry.record(
            InvocationRecord(f"r{i}", "f", 1, "http", False, 0, 1.0, "ok", event=big, response=big)
        )
    assert telemetry.recent_bytes <= 64 * 1024
    assert 10 < len(telemetry.recent(None, 1000)) < 20


def test_a_small_record_is_built_when_first_read_a_large_one_at_once(
    platform: Platform, build: Callable[[str], Path]
) -> None:
    spec = function_spec_from_dict("hello", {"wasm": "h.wasm"})
    platform.deploy(spec, build("hello").read_bytes())
    small = {"kind": "http", "method": "GET", "path": "/hello/ada", "params": {"name": "ada"}}
    platform.invoke("hello", small, request_id="req-small")
    entry = platform.telemetry._recent[-1]
    kept = entry[0]
    assert type(kept) is tuple and kept[:2] == ("req-small", "hello")
    for _ in range(3):  # a collection untracks one level of nested tuples
        gc.collect()
    assert not gc.is_tracked(entry)  # nothing a collection has to walk any more
    (rec,) = platform.telemetry.recent("hello", 1)
    assert rec.request_id == "req-small" and rec.outcome == "ok" and rec.status == 200
    assert json.loads(rec.event)["params"] == {"name": "ada"}
    assert "request_id" not in json.loads(rec.event)  # the event, not the envelope
    assert json.loads(rec.response)["body"] == "hello, ada\n"
    assert rec.logs == [("info", "saying hello")]
    large = {**small, "body": b"x" * 5000, "request_id": "req-large"}
    platform.invoke("hello", large, request_id="req-large")
    (kept, size) = platform.telemetry._recent[-1]
    assert isinstance(kept, InvocationRecord) and size < 5000  # its bounded preview, now
    assert json.loads(kept.event)["body"].endswith("(5000 bytes)")
