"""Capacity controls per function: ``max_concurrency`` (calls over it wait for a slot
up to ``max_concurrency_wait``, then 429 ``Throttled`` with ``Retry-After``; triggers
put the message back without spending an attempt), ``min_warm`` (kept loaded through
the idle sweep, while a neighbour scales to zero), and the pool in ``nimbus ls``."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from host.common.clock import ManualClock
from host.errors import Throttled
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.manifest.workflows import parse_workflows
from host.orchestrator.engine import Orchestrator
from host.platform.platform import Platform, PlatformOptions
from host.platform.request import InvocationRequest
from host.triggers.manager import TriggerManager
from tests.conftest import ROOT, Server

Build = Callable[[str], Path]
Start = Callable[..., Server]
GRANTS = {"tables": {"state": "read-write"}}

APP = """
[functions.slow]
wasm = "{wasm}"
max_concurrency = 2
max_concurrency_wait = "{wait}"

[[routes]]
path = "/slow"
function = "slow"
"""


def burst(server: Server, n: int, ms: int) -> tuple[list[httpx.Response], int]:
    """``n`` concurrent requests that each busy-wait ``ms``; their responses and the
    most in flight at once (as the admin API saw it, polled while they ran)."""
    auth = {"authorization": "Bearer t"}
    most = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal most
        with httpx.Client(headers=auth) as c:
            while not done.is_set():
                f = c.get(f"{server.url}/_admin/functions/slow").json()
                most = max(most, f["in_flight"])
                time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(n) as pool:
            responses = list(
                pool.map(lambda _: httpx.get(f"{server.url}/slow?ms={ms}", timeout=60), range(n))
            )
    finally:
        done.set()
        watcher.join()
    return responses, most


def serve(tmp_path: Path, build: Build, start: Start, wait: str) -> Server:
    app = tmp_path / "app"
    app.mkdir()
    toml = APP.format(wasm=build("busy_c"), wait=wait)
    (app / "nimbus.toml").write_text(toml)
    return start("up", str(app), "--data", str(tmp_path / "data"), token="t")


def test_max_concurrency_runs_two_at_once_and_throttles_the_rest(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    server = serve(tmp_path, build, start_server, wait="200ms")
    responses, most = burst(server, 10, ms=3000)
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) == 2 and codes.count(429) == 8, codes
    assert most == 2
    for r in responses:
        if r.status_code == 429:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["kind"] == "Throttled"
            assert "max_concurrency of 2" in r.json()["error"]["message"]


def test_calls_over_max_concurrency_wait_their_turn_within_the_bound(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    server = serve(tmp_path, build, start_server, wait="30s")
    responses, most = burst(server, 6, ms=200)
    assert [r.status_code for r in responses] == [200] * 6
    assert most == 2
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": "t", "NIMBUS_URL": server.url, "COLUMNS": "200"}
    ls = subprocess.run(
        [sys.executable, "-m", "host.cli", "ls"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ls.returncode == 0, ls.stderr
    (row,) = [line for line in ls.stdout.splitlines() if "slow" in line]
    assert "warm" in row and "max 2" in row and "idle 300s" in row


def deploy(platform: Platform, build: Build, name: str, **config: Any) -> None:
    spec = function_spec_from_dict(name, {"wasm": "r.wasm", "grants": GRANTS, **config})
    platform.deploy(spec, build("recorder_zig").read_bytes())


def deploy_one_slow_slot(platform: Platform, build: Build) -> None:
    """``one``: a single concurrency slot, 50 ms to wait for it, 800 ms a run."""
    deploy(
        platform, build, "one", max_concurrency=1, max_concurrency_wait="50ms",
        env={"SLEEP_MS": "800"},
    )  # fmt: skip


def test_a_trigger_backs_off_when_throttled_without_spending_an_attempt(
    platform: Platform, build: Build
) -> None:
    deploy_one_slow_slot(platform, build)
    raw = {"queue": [{"queue": "jobs", "function": "one", "max_attempts": 1}]}
    clock = ManualClock(1_800_000_000_000)
    m = TriggerManager(platform, clock)
    m.build(triggers_from_dict(raw))
    holder = threading.Thread(target=platform.invoke, args=("one", {"kind": "invoke"}))
    holder.start()
    try:
        while platform.in_flight("one") == 0:
            time.sleep(0.005)
        with pytest.raises(Throttled):
            platform.invoke("one", {"kind": "invoke"})
        # an inline try (under a budget) does not wait, and leaves no record: the
        # gateway runs it again in a thread, where it waits its turn
        with pytest.raises(Throttled):
            platform.execute(InvocationRequest("one", {"kind": "invoke"}, budget_s=0.003))
        e = platform.services.begin("test")
        e.queue_send("jobs", msgpack.packb({"n": 1}))
        e.commit()
        assert m.poll_once() == 1  # leased, throttled, put back
        (msg,) = platform.services.consumer.peek("jobs", 10)
        assert msg.attempt == 0 and (msg.last_error or "").startswith("Throttled: ")
    finally:
        holder.join()
    clock.advance(1000)
    for _ in range(10):
        if not m.poll_once():
            break
    assert platform.services.consumer.peek("jobs", 10) == []
    assert platform.services.consumer.peek("jobs.dlq", 10) == []  # max_attempts = 1 held
    outcomes = [r.outcome for r in platform.telemetry.recent("one")]
    assert outcomes.count("ok") == 2 and outcomes.count("Throttled") == 2
    (usage,) = platform.services.usage.query(function="one")
    assert usage.requests == 2  # a throttled call is not billed


def test_min_warm_keeps_a_function_loaded_while_its_neighbour_scales_to_zero(
    tmp_path: Path, build: Build
) -> None:
    p = Platform(tmp_path / "data", PlatformOptions(sweep_interval_s=0.05))
    try:
        deploy(p, build, "kept", min_warm=1, idle_ttl="100ms")
        deploy(p, build, "neighbour", idle_ttl="100ms")
        deadline = time.monotonic() + 10
        while "kept" not in p.pool.functions():  # loaded by the sweep, before any call
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not p.invoke("kept", {"kind": "invoke"}).cold  # its first call pays no load
        assert p.invoke("neighbour", {"kind": "invoke"}).cold
        time.sleep(0.5)  # several sweeps, each past both idle TTLs
        assert p.pool.functions() == {"kept"}
        assert not p.invoke("kept", {"kind": "invoke"}).cold
        assert p.invoke("neighbour", {"kind": "invoke"}).cold  # scaled to zero, loaded again
    finally:
        p.close()


def test_a_workflow_step_waits_when_throttled_without_spending_an_attempt(
    platform: Platform, build: Build
) -> None:
    deploy_one_slow_slot(platform, build)
    workflows = parse_workflows({"W": {"start": "s", "steps": {"s": {"function": "one"}}}}, {"one"})
    clock = ManualClock(1_800_000_000_000)
    engine = Orchestrator(platform, workflows, clock)
    holder = threading.Thread(target=platform.invoke, args=("one", {"kind": "invoke"}))
    holder.start()
    try:
        while platform.in_flight("one") == 0:
            time.sleep(0.005)
        run = engine.start("W", {"n": 1})
        assert engine.poll_once()  # the step found no slot: put off, not failed
        assert engine.get(run["id"])["status"] == "running"
    finally:
        holder.join()
    for _ in range(20):
        if engine.get(run["id"])["status"] != "running":
            break
        if not engine.poll_once():
            clock.advance(200)
    done = engine.get(run["id"])
    assert done["status"] == "succeeded", done
    assert [(h["step"], h["attempt"], h["status"]) for h in done["history"]] == [
        ("s", 1, "succeeded")
    ]
