"""Metering and billing: every invocation is one usage entry, whatever started it;
GB-seconds reconcile exactly; usage survives SIGKILL within the documented loss;
``nimbus usage`` and ``GET /_admin/usage`` agree."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from host.common.clock import ManualClock
from host.errors import FunctionFailed, ManifestError
from host.manifest.app import parse_manifest
from host.manifest.billing import LAMBDA_X86_PER_GB_SECOND, Prices
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.platform.platform import Platform
from host.services.storage import Storage
from host.services.usage import BYTE_MS_PER_GB_S, FLUSH_INTERVAL_S, Usage, UsageEntry
from host.triggers.manager import TriggerManager
from tests.conftest import ROOT, Server, open_services

Build = Callable[[str], Path]
Start = Callable[..., Server]
T0 = 1_800_000_000_000
MiB = 1 << 20


def deploy(platform: Platform, build: Build, name: str, memory: str, **env: str) -> None:
    config = {
        "wasm": "r.wasm",
        "memory": memory,
        "env": env,
        "grants": {"tables": {"state": "read-write"}, "topics": {"#": "read-write"}},
    }
    platform.deploy(function_spec_from_dict(name, config), build("recorder_zig").read_bytes())


def drain(m: TriggerManager) -> None:
    for _ in range(50):
        if not m.poll_once():
            return


def test_every_trigger_kind_reconciles_to_one_entry_per_invocation(
    platform: Platform, build: Build
) -> None:
    deploy(platform, build, "worker", "64MiB")
    deploy(platform, build, "listener", "256MiB")
    deploy(platform, build, "failer", "128MiB", FAIL="always")
    clock = ManualClock(T0 - T0 % 300_000 + 1000)
    triggers = {
        "queue": [{"queue": "jobs", "function": "worker"}],
        "storage": [{"bucket": "up", "function": "worker"}],
        "event": [{"topic": "order.*", "function": "listener"}],
        "schedule": [{"name": "every5", "cron": "*/5 * * * *", "function": "listener"}],
    }
    m = TriggerManager(platform, clock)
    m.build(triggers_from_dict(triggers))
    e = platform.services.begin("loader")
    for i in range(7):
        e.queue_send("jobs", msgpack.packb({"i": i}))
    for i in range(5):
        e.blob_put("up", f"b{i}".encode(), b"x", "text/plain", {})
    for i in range(4):
        e.event_publish("order.created", msgpack.packb(i))
    e.commit()
    assert m.scheduler is not None
    m.scheduler.poll_once()
    clock.advance(300_000)
    m.scheduler.poll_once()
    clock.advance(1)
    drain(m)
    for i in range(6):
        platform.invoke("worker", {"kind": "http", "method": "GET", "path": f"/{i}"})
    with pytest.raises(FunctionFailed):  # a failure is metered too
        platform.invoke("failer", {"kind": "invoke", "input": {}})

    records = platform.telemetry.recent(limit=1000)
    by_trigger: dict[str, int] = {}
    for r in records:
        by_trigger[r.trigger] = by_trigger.get(r.trigger, 0) + 1
    assert by_trigger == {
        "queue": 7,
        "storage": 5,
        "event": 4,
        "schedule": 1,
        "http": 6,
        "invoke": 1,
    }
    rows = platform.services.usage.query(since_ms=0)
    assert sum(r.requests for r in rows) == len(records) == 24
    memory = {"worker": 64 * MiB, "listener": 256 * MiB, "failer": 128 * MiB}
    expect_byte_ms = sum(memory[r.function] * max(1, math.ceil(r.duration_ms)) for r in records)
    assert sum(r.byte_ms for r in rows) == expect_byte_ms
    assert sum(r.gb_s for r in rows) == pytest.approx(expect_byte_ms / BYTE_MS_PER_GB_S)
    assert [(r.function, r.errors) for r in rows if r.errors] == [("failer", 1)]
    assert sum(r.cold for r in rows) == sum(r.cold for r in records) >= 2
    worker = {t: n for r in rows if r.function == "worker" for t, n in r.triggers.items()}
    assert worker == {"queue": 7, "storage": 5, "http": 6}
    assert all(r.bytes_in > 0 for r in rows)


def test_entries_aggregate_per_hour_and_flush_merges(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db")
    try:
        a, b = Usage(storage), Usage(storage)  # two processes' worth, one data dir
        hour = T0 - T0 % 3_600_000

        def entry(at: int, wall: float, outcome: str = "ok") -> UsageEntry:
            return UsageEntry("f", 1, "http", outcome, False, at, wall, 128 * MiB, 10, 20)

        a.record(entry(hour + 1, 0.2))
        a.record(entry(hour + 2, 3.0001))
        b.record(entry(hour + 3, 2.0, "FunctionFailed"))
        b.record(entry(hour + 3_600_000, 1.5))
        assert a.flush() == 1 and b.flush() == 2 and a.flush() == 0
        hours = a.query(since_ms=hour)
        assert [(r.period_ms, r.requests, r.billed_ms, r.errors) for r in hours] == [
            (hour, 3, 1 + 4 + 2, 1),
            (hour + 3_600_000, 1, 2, 0),
        ]
        assert hours[0].byte_ms == 128 * MiB * 7 and hours[0].bytes_out == 60
        days = b.query(by="day", since_ms=hour)
        assert sum(r.requests for r in days) == 4
        assert a.query(since_ms=hour + 3_600_000)[0].requests == 1
        assert a.query(function="other") == []
        with pytest.raises(ValueError, match="hour"):
            a.query(by="week")
    finally:
        storage.close()


def test_entries_carry_cpu_host_calls_and_peak_memory(platform: Platform, build: Build) -> None:
    deploy(platform, build, "busy", "64MiB", SLEEP_MS="20")
    for i in range(3):
        platform.invoke("busy", {"kind": "http", "method": "GET", "path": f"/{i}"})
    records = platform.telemetry.recent("busy")
    (row,) = platform.services.usage.query(function="busy")
    assert row.requests == 3
    # a busy-wait of 20 ms on the guest's thread: CPU was spent, never more than wall
    assert 0 < row.cpu_ms <= row.wall_ms + 1
    # the busy-wait polls the clock import, and every run reads and writes its table
    assert row.host_calls > 3 * 3
    assert row.outbound_calls == 0
    assert 0 < row.peak_memory <= 64 * MiB and row.peak_memory % 65536 == 0
    assert max(r.memory_bytes for r in records) == row.peak_memory


def test_peak_memory_is_a_maximum_and_old_rows_read_as_zero(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db")
    try:
        usage = Usage(storage)
        hour = T0 - T0 % 3_600_000

        def entry(peak: int, calls: int) -> UsageEntry:
            return UsageEntry(
                "f", 1, "http", "ok", False, hour + 1, 1.0, 64 * MiB, 0, 0, 0.5, calls, 1, peak
            )

        usage.record(entry(3 * 65536, 4))
        usage.record(entry(2 * 65536, 5))
        usage.flush()
        usage.record(entry(5 * 65536, 1))
        usage.flush()
        usage.record(entry(65536, 1))
        (row,) = usage.query(since_ms=hour)
        assert row.peak_memory == 5 * 65536 and row.host_calls == 11
        assert row.outbound_calls == 4 and row.cpu_ms == pytest.approx(2.0)
        # a row written before these counters existed (seven of them)
        old = msgpack.packb([2, 0, 3.0, 4, 4 * 64 * MiB, 10, 20])
        storage.write(
            lambda txn: txn.put(
                b"%016d/" % hour + msgpack.packb(["g", 1, "http", "ok"]),
                old,
                db=storage.db(b"usage"),
            )
        )
        (g,) = usage.query(function="g", since_ms=hour)
        assert (g.requests, g.cpu_ms, g.host_calls, g.peak_memory) == (2, 0.0, 0, 0)
    finally:
        storage.close()


def test_billing_table_defaults_to_lambda_prices_and_is_validated(tmp_path: Path) -> None:
    m = parse_manifest({"functions": {}}, tmp_path / "nimbus.toml")
    assert m.billing == Prices() and m.billing.per_gb_second == LAMBDA_X86_PER_GB_SECOND
    assert m.billing.per_million_requests == 0.20
    m = parse_manifest({"billing": {"per_gb_second": 0.00001}}, tmp_path / "nimbus.toml")
    assert m.billing.per_gb_second == 0.00001
    assert Prices().cost(2_000_000, 1.0, 0) == pytest.approx(0.40 + LAMBDA_X86_PER_GB_SECOND)
    bad = {"billing": {"per_gb_second": -1, "currency": "dollars", "per_request": 1}}
    with pytest.raises(ManifestError) as err:
        parse_manifest(bad, tmp_path / "nimbus.toml")
    text = str(err.value)
    assert "billing.per_gb_second" in text and "billing.currency" in text
    assert "per_request" in text


APP = """
[functions.hello]
wasm = "{wasm}"
memory = "64MiB"
grants = {{ tables = {{ state = "read-write" }} }}

[[routes]]
path = "/hello"
function = "hello"

[[triggers.queue]]
queue = "jobs"
function = "hello"

[billing]
per_million_requests = 0.5
"""


def cli(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": "t", "NIMBUS_URL": url, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.crash
def test_usage_survives_sigkill_and_cli_agrees_with_the_api(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    app, data = tmp_path / "app", tmp_path / "data"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(wasm=build("recorder_zig")))
    server = start_server("up", str(app), "--data", str(data), token="t")
    n_http, n_queue = 25, 10
    for _ in range(n_http):
        assert httpx.get(f"{server.url}/hello").status_code == 200
    auth = {"authorization": "Bearer t"}
    for i in range(n_queue):
        r = httpx.post(f"{server.url}/_admin/queues/jobs/messages", json={"i": i}, headers=auth)
        assert r.status_code < 300, r.text
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        records = httpx.get(f"{server.url}/_admin/invocations?limit=1000", headers=auth).json()
        if len(records["invocations"]) >= n_http + n_queue:
            break
        time.sleep(0.2)
    r = httpx.post(
        f"{server.url}/_admin/queues/later/messages?delay_ms=600000", json={}, headers=auth
    )
    assert r.status_code == 201, r.text
    metrics = httpx.get(f"{server.url}/_admin/metrics", headers=auth)
    assert metrics.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(metrics.text)
        for s in family.samples
    }
    by = (("function", "hello"), ("outcome", "ok"))
    assert samples[("nimbus_invocations_total", (*by, ("trigger", "http")))] == n_http
    assert samples[("nimbus_invocations_total", (*by, ("trigger", "queue")))] == n_queue
    assert samples[("nimbus_cold_starts_total", (("function", "hello"),))] >= 1
    assert samples[("nimbus_queue_depth", (("queue", "later"),))] == 1
    assert samples[("nimbus_queue_delayed", (("queue", "later"),))] == 1
    assert samples[("nimbus_function_warm", (("function", "hello"),))] == 1
    time.sleep(FLUSH_INTERVAL_S * 2 + 0.2)  # past the documented loss window
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait()

    again = start_server("serve", "--data", str(data), token="t")
    api = httpx.get(f"{again.url}/_admin/usage", params={"by": "day"}, headers=auth).json()
    assert api["total"]["requests"] == n_http + n_queue  # nothing lost, nothing doubled
    (row,) = api["rows"]
    assert row["triggers"] == {"http": n_http, "queue": n_queue}
    assert api["prices"]["per_million_requests"] == 0.5
    assert api["total"]["gb_s"] == pytest.approx(row["billed_ms"] * 64 / 1024 / 1000)
    as_json = cli("usage", "--by", "day", "--json", url=again.url)
    assert as_json.returncode == 0, as_json.stderr
    cli_report = json.loads(as_json.stdout)
    assert cli_report["rows"] == api["rows"] and cli_report["total"] == api["total"]
    table = cli("usage", "--by", "day", "--function", "hello", url=again.url)
    assert table.returncode == 0, table.stderr
    assert "hello" in table.stdout and str(n_http + n_queue) in table.stdout
    bad = cli("usage", "--since", "lots", url=again.url)
    assert bad.returncode == 1 and "since must be a duration" in bad.stderr


def test_the_new_counters_aggregate_alike_on_every_backend(backend: str, tmp_path: Path) -> None:
    services = open_services(backend, tmp_path / "db")
    try:
        usage = services.usage
        hour = T0 - T0 % 3_600_000

        def entry(cpu: float, calls: int, outbound: int, peak: int) -> UsageEntry:
            return UsageEntry(
                "f",
                1,
                "http",
                "ok",
                False,
                hour + 1,
                1.0,
                64 * MiB,
                1,
                2,
                cpu,
                calls,
                outbound,
                peak,
            )

        usage.record(entry(0.5, 3, 1, 5 * 65536))
        usage.flush()  # the second one merges into a stored row
        usage.record(entry(0.25, 4, 0, 2 * 65536))
        (row,) = usage.query(since_ms=hour)
        assert (row.requests, row.host_calls, row.outbound_calls) == (2, 7, 1)
        assert row.peak_memory == 5 * 65536  # the larger, not the sum
        assert row.cpu_ms == pytest.approx(0.75)
    finally:
        services.close()
