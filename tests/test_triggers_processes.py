"""Triggers across real host processes: two on one data dir, and SIGKILL at random."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from tests.conftest import Server, serve_unwaited

Build = Callable[[str], Path]
Start = Callable[..., Server]

APP = """
[functions.worker]
wasm = "{wasm}"
grants = {{ tables = {{ state = "read-write" }} }}
env = {{ SLEEP_MS = "{sleep}" }}

[[triggers.queue]]
queue = "jobs"
function = "worker"
batch_size = {batch}
visibility_timeout = "5s"
max_attempts = 100
backoff = {{ initial = "10ms", max = "200ms" }}

[[triggers.storage]]
bucket = "up"
function = "worker"
max_attempts = 100
backoff = {{ initial = "10ms", max = "200ms" }}

[[triggers.event]]
topic = "load.*"
function = "worker"
max_attempts = 100
backoff = {{ initial = "10ms", max = "200ms" }}
{extra}
"""


def make_app(tmp: Path, build: Build, batch: int = 1, extra: str = "", sleep: int = 0) -> Path:
    app = tmp / "app"
    app.mkdir()
    text = APP.format(wasm=build("recorder_zig"), batch=batch, extra=extra, sleep=sleep)
    (app / "nimbus.toml").write_text(text)
    return app


def prepare(app: Path, data: Path, messages: int, blobs: int, events: int) -> None:
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(app))
        e = platform.services.begin("loader")
        for i in range(messages):
            e.queue_send("jobs", msgpack.packb({"i": i}))
        for i in range(blobs):
            e.blob_put("up", f"b{i}".encode(), b"x", "text/plain", {})
        for i in range(events):
            e.event_publish("load.tick", msgpack.packb(i))
        e.commit()
    finally:
        platform.close()


def read_state(data: Path) -> dict[str, Any]:
    platform = Platform(data)
    try:
        with platform.services.storage.read() as txn:
            items = platform.services.tables.items(txn, "state", b"", None)
            return {
                k.decode(): msgpack.unpackb(v) for k, v, _ in items if not k.startswith(b"last.")
            }
    finally:
        platform.close()


serve = serve_unwaited


def wait_for(data: Path, done: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        current = read_state(data)
        if done(current) or time.monotonic() > deadline:
            return current
        time.sleep(0.5)


@pytest.mark.crash
def test_sigkill_loses_nothing_and_applies_nothing_twice(tmp_path: Path, build: Build) -> None:
    n, m = 2000, 200
    data = tmp_path / "data"
    prepare(make_app(tmp_path, build, sleep=4), data, messages=n, blobs=m, events=m)
    rng = random.Random(7)
    kills = 0
    progress = []
    for _ in range(6):
        proc = serve(data)
        time.sleep(rng.uniform(1.0, 2.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        progress.append(read_state(data).get("count.queue", 0))
    print(f"\nqueue progress at each SIGKILL: {progress}")
    assert len([p for p in progress if 0 < p < n]) >= 3, "kills must land mid-processing"
    proc = serve(data)
    try:
        final = wait_for(
            data,
            lambda s: (
                s.get("count.queue") == n
                and s.get("count.storage") == m
                and s.get("count.event") == m
            ),
            timeout=300,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert kills >= 5
    assert final.get("count.queue") == n  # exactly: no loss, no double effect
    assert final.get("count.storage") == m
    assert final.get("count.event") == m
    for kind, total in (("queue", n), ("storage", m), ("event", m)):
        seen = [k for k in final if k.startswith(f"seen.{kind}.")]
        assert len(seen) == total, kind


@pytest.mark.slow
def test_two_processes_process_each_message_once(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    n = 300
    data = tmp_path / "data"
    prepare(make_app(tmp_path, build), data, messages=n, blobs=0, events=0)
    a = start_server("serve", "--data", str(data))
    b = start_server("serve", "--data", str(data))
    final = wait_for(data, lambda s: s.get("count.queue") == n, timeout=120)
    assert final.get("count.queue") == n
    per_process = [_queue_invocations(s) for s in (a, b)]
    assert sum(per_process) == n  # every message processed once, by one of the two


@pytest.mark.slow
def test_two_processes_fire_a_schedule_once_per_time(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    extra = '\n[[triggers.schedule]]\nname = "tick"\ncron = "* * * * * *"\nfunction = "worker"\n'
    data = tmp_path / "data"
    prepare(make_app(tmp_path, build, extra=extra), data, 0, 0, 0)
    a = start_server("serve", "--data", str(data))
    b = start_server("serve", "--data", str(data))
    final = wait_for(data, lambda s: (s.get("count.schedule") or 0) >= 5, timeout=60)
    runs = [_schedule_runs(s) for s in (a, b)]
    fired = [rid for r in runs for rid in r]
    assert len(fired) >= 5
    assert len(fired) == len(set(fired))  # no scheduled time ran twice
    assert final["count.schedule"] >= 5


def _records(server: Server) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.url}/_admin/invocations",
        params={"limit": 10000},
        headers={"authorization": "Bearer test-token"},
    )
    records: list[dict[str, Any]] = r.json()["invocations"]
    return records


def _queue_invocations(server: Server) -> int:
    return len([r for r in _records(server) if r["trigger"] == "queue" and r["outcome"] == "ok"])


def _schedule_runs(server: Server) -> list[str]:
    return [
        r["event_id"]
        for r in _records(server)
        if r["trigger"] == "schedule" and r["outcome"] == "ok"
    ]
