"""OpenTelemetry traces, read from an in-memory span exporter: an HTTP request (with
the caller's W3C ``traceparent``) whose function publishes an event consumed by
another function is one trace end to end; outbound calls carry the trace on; and
with tracing off no span is made at all."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from host.gateway.app import create_app
from host.manifest.app import load_manifest
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.orchestrator.runner import WorkflowRunner
from host.platform.apply import apply_manifest
from host.platform.platform import Platform, PlatformOptions
from host.triggers.manager import TriggerManager
from tests.conftest import ROOT, free_port, serve_in_thread
from tests.payment_server import PaymentServer

Build = Callable[[str], Path]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"

APP = """
[functions.front]
wasm = "{wasm}"
env = {{ PUBLISH = "order.placed" }}
grants = {{ tables = {{ state = "read-write" }}, topics = {{ "order.*" = "read-write" }} }}

[functions.back]
wasm = "{wasm}"
grants = {{ tables = {{ state = "read-write" }} }}

[[routes]]
path = "/order"
function = "front"

[[triggers.event]]
topic = "order.*"
function = "back"

[[routes]]
method = "POST"
path = "/runs"
workflow = "Flow"

[workflows.Flow]
start = "one"

[workflows.Flow.steps.one]
function = "back"

[[triggers.storage]]
bucket = "uploads"
function = "back"

[[triggers.queue]]
queue = "jobs"
function = "back"
"""


@pytest.fixture
def traced(tmp_path: Path, build: Build) -> Iterator[tuple[str, Platform, InMemorySpanExporter]]:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "nimbus.toml").write_text(APP.format(wasm=build("recorder_zig")))
    exporter = InMemorySpanExporter()
    platform = Platform(tmp_path / "data", PlatformOptions(span_exporter=exporter))
    apply_manifest(platform, load_manifest(tmp_path / "app"))
    runner = WorkflowRunner(platform)
    triggers = TriggerManager(platform, start_workflow=runner.start_run)
    app = create_app(platform, runner, triggers, admin_token="t", background=[triggers, runner])
    with serve_in_thread(app) as url:
        yield url, platform, exporter


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def test_a_request_and_the_event_it_publishes_are_one_trace(
    traced: tuple[str, Platform, InMemorySpanExporter],
) -> None:
    url, platform, exporter = traced
    r = httpx.get(f"{url}/order", headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200, r.text
    request_id = r.headers["x-request-id"]
    deadline = time.monotonic() + 30
    while not platform.telemetry.recent("back") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert platform.telemetry.recent("back"), "the subscriber never ran"
    time.sleep(0.2)  # its spans end just after its record
    spans = exporter.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}

    (request,) = by_name(spans, "GET /order")
    assert request.kind == SpanKind.SERVER and parent_of(request) == int(CALLER_SPAN, 16)
    assert request.attributes is not None
    assert request.attributes["nimbus.request_id"] == request_id
    assert request.attributes["http.response.status_code"] == 200
    (front,) = by_name(spans, "invoke front")
    assert parent_of(front) == request.context.span_id
    assert front.attributes is not None and front.attributes["nimbus.request_id"] == request_id
    assert front.attributes["nimbus.outcome"] == "ok"
    front_calls = [s for s in spans if parent_of(s) == front.context.span_id]
    assert {s.name for s in front_calls} >= {"hostcall event_publish", "hostcall kv_get"}
    (publish,) = by_name(spans, "hostcall event_publish")

    (delivery,) = by_name(spans, "event order.placed")
    assert delivery.kind == SpanKind.CONSUMER and parent_of(delivery) == publish.context.span_id
    (back,) = by_name(spans, "invoke back")
    assert parent_of(back) == delivery.context.span_id
    assert back.attributes is not None and back.attributes["nimbus.trigger"] == "event"
    assert any(parent_of(s) == back.context.span_id for s in spans)  # its host calls


@pytest.fixture
def platform_traced(tmp_path: Path) -> Iterator[tuple[Platform, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    p = Platform(tmp_path / "data", PlatformOptions(span_exporter=exporter))
    yield p, exporter
    p.close()


def test_outbound_calls_carry_the_trace(
    platform_traced: tuple[Platform, InMemorySpanExporter], build: Build
) -> None:
    platform, exporter = platform_traced
    server = PaymentServer().start()
    try:
        spec = {"wasm": "o.wasm", "allowed_outbound_hosts": [server.url]}
        platform.deploy(function_spec_from_dict("pay", spec), build("outbound_zig").read_bytes())
        calls = [{"url": f"{server.url}/echo", "headers": {"traceparent": "00-forged"}}]
        event = {"kind": "invoke", "input": {"calls": calls}, "traceparent": TRACEPARENT}
        out = platform.invoke("pay", event).response["output"]
        assert out["calls"][0]["ok"]["status"] == 200
    finally:
        server.stop()
    spans = exporter.get_finished_spans()
    (client,) = [s for s in spans if s.kind == SpanKind.CLIENT]
    assert client.name == "HTTP GET" and client.attributes is not None
    assert client.attributes["http.response.status_code"] == 200
    (seen,) = server.seen
    assert seen.headers["traceparent"] == f"00-{TRACE_ID}-{client.context.span_id:016x}-01"
    (root,) = [s for s in spans if s.parent is not None and s.parent.is_remote]
    assert root.name == "call pay" and parent_of(root) == int(CALLER_SPAN, 16)
    (invocation,) = by_name(spans, "invoke pay")
    assert parent_of(invocation) == root.context.span_id
    (fetch,) = by_name(spans, "hostcall http_fetch")
    assert parent_of(fetch) == invocation.context.span_id
    assert parent_of(client) == fetch.context.span_id


def test_tracing_is_off_by_default_and_makes_no_span(tmp_path: Path, build: Build) -> None:
    # a fresh process: invocations with tracing off never even import OpenTelemetry
    port = free_port()
    probe = f"""
import sys
from pathlib import Path
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.platform.platform import Platform
p = Platform(Path({str(tmp_path / "data")!r}))
spec = {{"wasm": "r.wasm", "grants": {{"tables": {{"state": "read-write"}}}}}}
p.deploy(function_spec_from_dict("r", spec), Path({str(build("recorder_zig"))!r}).read_bytes())
event = {{"kind": "invoke", "input": {{}}, "traceparent": {TRACEPARENT!r}}}
assert p.invoke("r", event).response["output"] == "invoke"
assert p.tracing.tracer is None
# the admin API, through a real server, writing a blob: no span, nothing imported
import threading, time, httpx, uvicorn
from host.gateway.app import create_app
from host.orchestrator.runner import WorkflowRunner
from host.triggers.manager import TriggerManager
runner = WorkflowRunner(p)
app = create_app(p, runner, TriggerManager(p), admin_token="t")
server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port={port}, log_level="warning"))
threading.Thread(target=server.run, daemon=True).start()
while not server.started:
    time.sleep(0.05)
url = "http://127.0.0.1:{port}/_admin/buckets/b/objects/k"
headers = {{"authorization": "Bearer t", "traceparent": {TRACEPARENT!r}}}
assert httpx.put(url, content=b"x", headers=headers).status_code == 201
server.should_exit = True
print(sorted(m for m in sys.modules if m.startswith("opentelemetry")))
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_each_step_of_a_run_started_by_a_traced_request_continues_its_trace(
    traced: tuple[str, Platform, InMemorySpanExporter],
) -> None:
    url, _, exporter = traced
    r = httpx.post(f"{url}/runs", json={"n": 1}, headers={"traceparent": TRACEPARENT})
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 30
    while not by_name(exporter.get_finished_spans(), "invoke back"):
        assert time.monotonic() < deadline, "the step never ran"
        time.sleep(0.05)
    spans = exporter.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    (request,) = by_name(spans, "POST /runs")
    (step,) = by_name(spans, "workflow Flow")
    assert step.kind == SpanKind.INTERNAL and parent_of(step) == request.context.span_id
    (invocation,) = by_name(spans, "invoke back")
    assert parent_of(invocation) == step.context.span_id


def test_otlp_over_http_when_the_environment_names_an_endpoint(
    tmp_path: Path, build: Build, monkeypatch: pytest.MonkeyPatch
) -> None:
    collector = PaymentServer().start()  # a real HTTP server on loopback, as the collector
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "nimbus-test")
        platform = Platform(tmp_path / "data")
        try:
            assert platform.tracing.tracer is not None
            spec = {"wasm": "r.wasm", "grants": {"tables": {"state": "read-write"}}}
            wasm = build("recorder_zig").read_bytes()
            platform.deploy(function_spec_from_dict("r", spec), wasm)
            platform.invoke("r", {"kind": "invoke", "input": {}, "traceparent": TRACEPARENT})
        finally:
            platform.close()  # flushes the batch
    finally:
        collector.stop()
    posts = [s for s in collector.seen if s.method == "POST" and s.path == "/v1/traces"]
    assert posts and posts[0].headers["content-type"] == "application/x-protobuf"
    request = ExportTraceServiceRequest()
    for post in posts:
        request.MergeFromString(post.body)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "nimbus-test"
    spans = [s for scope in resource.scope_spans for s in scope.spans]
    assert {"call r", "invoke r", "hostcall kv_get"} <= {s.name for s in spans}
    assert {s.trace_id.hex() for s in spans} == {TRACE_ID}


def writer_and_worker(
    platform: Platform, build: Build, grants: dict[str, Any], triggers: dict[str, list[Any]]
) -> TriggerManager:
    """``writer`` (runs the service operations it is given) and ``worker`` (records what
    starts it), with ``triggers`` (each of them ``worker``'s) driven by the manager."""
    grants = {"tables": {"state": "read-write"}, **grants}
    for name, guest in (("writer", "services_zig"), ("worker", "recorder_zig")):
        spec = function_spec_from_dict(name, {"wasm": f"{name}.wasm", "grants": grants})
        platform.deploy(spec, build(guest).read_bytes())
    m = TriggerManager(platform)
    kinds = {kind: [{**t, "function": "worker"} for t in ts] for kind, ts in triggers.items()}
    m.build(triggers_from_dict(kinds))
    return m


def test_a_message_a_traced_function_sends_carries_the_trace_to_its_consumer(
    platform_traced: tuple[Platform, InMemorySpanExporter], build: Build
) -> None:
    platform, exporter = platform_traced
    m = writer_and_worker(
        platform, build, {"queues": {"jobs": "read-write"}}, {"queue": [{"queue": "jobs"}]}
    )
    ops = [{"op": "queue_send", "queue": "jobs", "body": {"n": 1}}]
    event = {"kind": "invoke", "input": {"ops": ops, "then": "ok"}, "traceparent": TRACEPARENT}
    platform.invoke("writer", event)
    (msg,) = platform.services.consumer.peek("jobs", 10)
    assert msg.traceparent is not None and TRACE_ID in msg.traceparent
    assert m.poll_once() == 1
    spans = exporter.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}
    (send,) = by_name(spans, "hostcall queue_send")
    (delivery,) = by_name(spans, "queue jobs")
    assert delivery.kind == SpanKind.CONSUMER and parent_of(delivery) == send.context.span_id
    (work,) = by_name(spans, "invoke worker")
    assert parent_of(work) == delivery.context.span_id


def test_a_blob_a_traced_function_puts_carries_the_trace_to_the_function_it_starts(
    platform_traced: tuple[Platform, InMemorySpanExporter], build: Build
) -> None:
    platform, exporter = platform_traced
    grants = {"buckets": {"uploads": "read-write"}}
    m = writer_and_worker(platform, build, grants, {"storage": [{"bucket": "uploads"}]})
    put = {"op": "blob_put", "bucket": "uploads", "key": "a.txt", "data": "hi"}
    deleted = {"op": "blob_delete", "bucket": "uploads", "key": "a.txt"}
    for op, parent in ((put, TRACEPARENT), (deleted, None)):
        event = {"kind": "invoke", "input": {"ops": [op], "then": "ok"}}
        if parent is not None:
            event["traceparent"] = parent
        assert platform.invoke("writer", event).wrote  # (a failure raises)
        while m.poll_once():
            pass
    spans = exporter.get_finished_spans()
    (host_put,) = by_name(spans, "hostcall blob_put")
    (host_delete,) = by_name(spans, "hostcall blob_delete")
    assert f"{host_put.context.trace_id:032x}" == TRACE_ID
    assert host_delete.context.trace_id != host_put.context.trace_id  # a trace of its own
    deliveries = by_name(spans, "storage uploads")
    assert [d.kind for d in deliveries] == [SpanKind.CONSUMER] * 2
    # each delivery is the child of the host call that wrote the object, in its trace
    assert {parent_of(d) for d in deliveries} == {
        host_put.context.span_id,
        host_delete.context.span_id,
    }
    works = by_name(spans, "invoke worker")
    assert {parent_of(w) for w in works} == {d.context.span_id for d in deliveries}
    for w in works:
        assert w.attributes is not None and w.attributes["nimbus.trigger"] == "storage"


def test_admin_requests_are_traced_and_carry_the_trace_to_what_they_start(
    traced: tuple[str, Platform, InMemorySpanExporter],
) -> None:
    url, _, exporter = traced
    headers = {"authorization": "Bearer t", "traceparent": TRACEPARENT}
    r = httpx.put(f"{url}/_admin/buckets/uploads/objects/a.txt", content=b"hi", headers=headers)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/_admin/functions/back/invoke", json={}, headers=headers)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{url}/_admin/events/order.placed", json={"n": 1}, headers=headers)
    assert r.status_code == 201, r.text
    r = httpx.post(f"{url}/_admin/queues/jobs/messages", json={"n": 2}, headers=headers)
    assert r.status_code == 201, r.text
    deadline = time.monotonic() + 30
    starters = ("storage uploads", "event order.placed", "queue jobs")  # end after their runs
    while not all(by_name(exporter.get_finished_spans(), name) for name in starters):
        assert time.monotonic() < deadline, "a trigger never ran"
        time.sleep(0.05)
    spans = exporter.get_finished_spans()
    assert {f"{s.context.trace_id:032x}" for s in spans} == {TRACE_ID}

    (put,) = by_name(spans, "PUT /_admin/buckets/uploads/objects/a.txt")
    assert put.kind == SpanKind.SERVER and parent_of(put) == int(CALLER_SPAN, 16)
    assert put.attributes is not None and put.attributes["http.response.status_code"] == 201
    (delivery,) = by_name(spans, "storage uploads")
    assert delivery.kind == SpanKind.CONSUMER and parent_of(delivery) == put.context.span_id
    (invoke,) = by_name(spans, "POST /_admin/functions/back/invoke")
    assert invoke.kind == SpanKind.SERVER and parent_of(invoke) == int(CALLER_SPAN, 16)
    (publish,) = by_name(spans, "POST /_admin/events/order.placed")
    (event,) = by_name(spans, "event order.placed")
    assert parent_of(event) == publish.context.span_id
    (send,) = by_name(spans, "POST /_admin/queues/jobs/messages")
    (message,) = by_name(spans, "queue jobs")
    assert parent_of(message) == send.context.span_id
    runs = by_name(spans, "invoke back")
    starts = (delivery, invoke, event, message)
    assert sorted(parent_of(s) or 0 for s in runs) == sorted(s.context.span_id for s in starts)
