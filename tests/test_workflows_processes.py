"""Workflows in real host processes: started over HTTP, by a queue and from the CLI,
and 200 runs in flight through repeated SIGKILLs."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from host.manifest.app import load_manifest
from host.orchestrator.engine import Orchestrator
from host.orchestrator.runner import load_workflows
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from tests.conftest import ROOT, Server, serve_unwaited

Build = Callable[[str], Path]
Start = Callable[..., Server]

STEPS = ("a", "b", "c", "d")

APP = """
{functions}

[workflows.Chain]
start = "a"
{steps}

[[routes]]
method = "POST"
path = "/orders/{{orderId}}"
workflow = "Chain"

[[triggers.queue]]
queue = "orders"
workflow = "Chain"
"""


def make_app(tmp: Path, build: Build, sleep_ms: int = 0) -> Path:
    wasm = build("wfstep_zig")
    functions = "\n".join(
        f'[functions.step-{s}]\nwasm = "{wasm}"\ntimeout = "2s"\n'
        f'env = {{ STEP = "{s}", SLEEP_MS = "{sleep_ms}" }}\n'
        'grants = { tables = { wf = "read-write" } }\n'
        for s in STEPS
    )
    steps = "\n".join(
        f'[workflows.Chain.steps.{s}]\nfunction = "step-{s}"\n'
        + (f'on_success = "{STEPS[i + 1]}"\n' if i + 1 < len(STEPS) else "")
        for i, s in enumerate(STEPS)
    )
    app = tmp / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(functions=functions, steps=steps))
    return app


def counts(data: Path) -> tuple[dict[str, int], list[str]]:
    platform = Platform(data)
    try:
        with platform.services.storage.read() as txn:
            items = platform.services.tables.items(txn, "wf", b"", None)
            found = {k.decode(): msgpack.unpackb(v) for k, v, _ in items}
        statuses = [r["status"] for r in Orchestrator(platform, {}).runs(limit=10_000)]
    finally:
        platform.close()
    return found, statuses


def steps_done(data: Path) -> int:
    found = counts(data)[0]
    return sum(found.get(f"count.{s}", 0) for s in STEPS)


serve = serve_unwaited


@pytest.mark.crash
def test_runs_survive_sigkill_without_repeating_a_step(tmp_path: Path, build: Build) -> None:
    n = 200
    data = tmp_path / "data"
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(make_app(tmp_path, build, sleep_ms=5)))
        engine = Orchestrator(platform, load_workflows(platform))
        for i in range(n):
            engine.start("Chain", {"orderId": f"o-{i}"})
    finally:
        platform.close()
    rng = random.Random(11)
    progress: list[int] = []
    for _ in range(5):
        proc = serve(data)
        # killed at a random moment after this process has done a step of its own (a
        # fixed delay lets a fast host finish all the runs before the last kills)
        before = progress[-1] if progress else 0
        deadline = time.monotonic() + 60
        while steps_done(data) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        progress.append(steps_done(data))
    print(f"\nsteps done (of {4 * n}) at each SIGKILL: {progress}")
    assert len([p for p in progress if 0 < p < 4 * n]) >= 3, "kills must land mid-run"
    proc = serve(data)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            found, statuses = counts(data)
            if statuses.count("succeeded") == n:
                break
            time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert statuses.count("succeeded") == n, statuses
    assert {s: found[f"count.{s}"] for s in STEPS} == {s: n for s in STEPS}  # each step once


def test_start_by_http_queue_and_cli(tmp_path: Path, build: Build, start_server: Start) -> None:
    server = start_server("up", str(make_app(tmp_path, build)), "--data", str(tmp_path / "data"))
    r = httpx.post(f"{server.url}/orders/o-1", json={"total": 5}, headers={"idempotency-key": "k1"})
    assert r.status_code == 202, r.text
    run_id = r.json()["run_id"]
    again = httpx.post(f"{server.url}/orders/o-1", json={}, headers={"idempotency-key": "k1"})
    assert again.json()["run_id"] == run_id
    admin = {"authorization": "Bearer test-token"}
    httpx.post(
        f"{server.url}/_admin/queues/orders/messages", json={"orderId": "q-1"}, headers=admin
    )

    def runs() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = httpx.get(f"{server.url}/_admin/runs", headers=admin).json()[
            "runs"
        ]
        return got

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (
        len(runs()) == 2 and all(x["status"] == "succeeded" for x in runs())
    ):
        time.sleep(0.2)
    assert sorted(x["status"] for x in runs()) == ["succeeded", "succeeded"]
    run = httpx.get(f"{server.url}/_admin/runs/{run_id}", headers=admin).json()
    assert run["input"] == {"orderId": "o-1", "total": 5}  # path params merged into the body
    assert [h["step"] for h in run["history"]] == list(STEPS)

    cli = [sys.executable, "-m", "host.cli"]
    remote = ["--url", server.url, "--token", "test-token"]
    shown = subprocess.run(
        [*cli, "wf", "show", run_id, *remote], capture_output=True, text=True, cwd=ROOT
    )
    assert shown.returncode == 0 and "succeeded" in shown.stdout and " d " in shown.stdout
    started = subprocess.run(
        [*cli, "wf", "start", "Chain", "--input", '{"orderId": "cli"}', "--wait", "30", *remote],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert started.returncode == 0, started.stderr
    assert '"succeeded"' in started.stdout
    listed = subprocess.run([*cli, "wf", "ls", *remote], capture_output=True, text=True, cwd=ROOT)
    assert listed.stdout.count("Chain") == 3
