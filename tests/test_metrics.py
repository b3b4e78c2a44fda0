"""``GET /_admin/metrics`` read back with prometheus-client's own text parser: every
metric the issue names, from a real platform (real LMDB, real .wasm)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
from prometheus_client.parser import text_string_to_metric_families

from host.gateway.metrics_api import MetricsApi
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.orchestrator.transitions import new_run
from host.platform.platform import Platform
from host.triggers.manager import TriggerManager
from tests.conftest import Server

Build = Callable[[str], Path]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(platform: Platform) -> Samples:
    text = MetricsApi(platform).text().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_metrics_cover_invocations_queues_dead_letters_runs_lmdb_and_the_pool(
    platform: Platform, build: Build
) -> None:
    wasm = build("recorder_zig").read_bytes()
    grants = {"tables": {"state": "read-write"}}
    platform.deploy(function_spec_from_dict("ok", {"wasm": "r.wasm", "grants": grants}), wasm)
    failing = {"wasm": "r.wasm", "grants": grants, "env": {"FAIL": "always"}}
    platform.deploy(function_spec_from_dict("bad", failing), wasm)
    platform.deploy(function_spec_from_dict("idle", {"wasm": "r.wasm", "grants": grants}), wasm)
    raw = {"queue": [{"queue": "jobs", "function": "bad", "max_attempts": 1}]}
    platform.registry.set_app_config("triggers", raw)
    for i in range(3):
        platform.invoke("ok", {"kind": "http", "method": "GET", "path": f"/{i}"})
    e = platform.services.begin("test")
    e.queue_send("jobs", msgpack.packb({"n": 1}))
    e.queue_send("waiting", msgpack.packb({"n": 2}))
    e.commit()
    m = TriggerManager(platform)
    m.build(triggers_from_dict(raw))
    for _ in range(20):
        if not m.poll_once():
            break
    platform.services.runs.transact(
        lambda t: [
            t.put(new_run("run-1", "orders", {}, None, 0)),
            t.put({**new_run("run-2", "orders", {}, None, 0), "status": "succeeded"}),
        ]
    )
    time.sleep(0.05)  # the waiting message has an age
    s = scrape(platform)

    ok = (("function", "ok"), ("outcome", "ok"), ("trigger", "http"))
    assert s[("nimbus_invocations_total", ok)] == 3
    bad = (("function", "bad"), ("outcome", "FunctionFailed"), ("trigger", "queue"))
    assert s[("nimbus_invocations_total", bad)] == 1
    assert s[("nimbus_invocation_seconds_count", (("function", "ok"),))] == 3
    assert s[("nimbus_cold_starts_total", (("function", "ok"),))] == 1
    assert s[("nimbus_queue_depth", (("queue", "waiting"),))] == 1
    assert s[("nimbus_queue_oldest_message_age_seconds", (("queue", "waiting"),))] >= 0.05
    assert s[("nimbus_dead_letters", (("queue", "jobs.dlq"),))] == 1
    assert s[("nimbus_workflow_runs", (("status", "running"), ("workflow", "orders")))] == 1
    assert s[("nimbus_workflow_runs", (("status", "succeeded"), ("workflow", "orders")))] == 1
    for env in ("data", "usage", "counters", "activity"):
        size = s[("nimbus_lmdb_map_size_bytes", (("env", env),))]
        assert 0 < s[("nimbus_lmdb_used_bytes", (("env", env),))] <= size
    assert s[("nimbus_function_warm", (("function", "ok"),))] == 1
    assert s[("nimbus_function_warm", (("function", "idle"),))] == 0
    assert s[("nimbus_warm_pool_size", ())] == 2  # ok and bad
    assert s[("nimbus_in_flight", (("function", "ok"),))] == 0


def test_in_flight_counts_a_running_invocation(platform: Platform, build: Build) -> None:
    spec = {"wasm": "r.wasm", "grants": {"tables": {"state": "read-write"}}}
    spec["env"] = {"SLEEP_MS": "400"}
    platform.deploy(function_spec_from_dict("slow", spec), build("recorder_zig").read_bytes())
    t = threading.Thread(target=platform.invoke, args=("slow", {"kind": "invoke", "input": {}}))
    t.start()
    try:
        deadline = time.monotonic() + 10
        while platform.in_flight("slow") == 0 and time.monotonic() < deadline:
            time.sleep(0.005)
        assert scrape(platform)[("nimbus_in_flight", (("function", "slow"),))] == 1
    finally:
        t.join()
    assert scrape(platform)[("nimbus_in_flight", (("function", "slow"),))] == 0


def test_a_server_with_two_workers_reports_the_invocations_of_both(
    tmp_path: Path, build: Build, start_server: Callable[..., Server]
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(
        f'[functions.hello]\nwasm = "{build("hello")}"\n\n'
        '[[routes]]\npath = "/hello"\nfunction = "hello"\n'
    )
    data = tmp_path / "data"
    server = start_server("up", str(app), "--data", str(data), "--workers", "2", token="t")
    auth = {"authorization": "Bearer t"}
    pinned = server.pin_workers()
    try:
        calls = {pid: 10 + 5 * i for i, pid in enumerate(pinned)}  # 10 on one, 15 on the other
        for pid, client in pinned.items():
            for _ in range(calls[pid]):
                assert client.get("/hello").status_code == 200
        n = sum(calls.values())
        labels = (("function", "hello"), ("outcome", "ok"), ("trigger", "http"))
        key = ("nimbus_invocations_total", labels)
        for pid, client in pinned.items():  # whichever worker answers the scrape sums both
            r = client.get("/_admin/metrics", headers=auth)
            assert client.get("/_admin/health").json()["pid"] == pid  # still that worker
            samples = {
                (s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(r.text)
                for s in family.samples
            }
            assert samples[key] == n
            assert samples[("nimbus_invocation_seconds_count", (("function", "hello"),))] == n
    finally:
        for client in pinned.values():
            client.close()
