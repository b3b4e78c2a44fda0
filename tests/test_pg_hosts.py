"""Several `nimbus serve` processes on one PostgreSQL database (issue #19): a deploy
through one host is served by the others within a second, and three hosts share
queues, workflows and a schedule while one of them is SIGKILLed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import msgpack
import psycopg
import pytest

from host.manifest.app import load_manifest
from host.orchestrator.engine import Orchestrator
from host.platform.apply import apply_manifest
from host.platform.platform import Platform, PlatformOptions
from tests.conftest import PG_URL, ROOT, free_port, wait_healthy

Build = Callable[[str], Path]
TOKEN = "t"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
STEPS = ("a", "b")


@pytest.fixture
def store() -> Iterator[str]:
    """A store URL whose search path is a fresh schema (dropped after the test)."""
    schema = f"h_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())


class Host:
    """A ``nimbus serve`` process on ``store``, its output in a file (a pipe nobody
    reads would fill up and stall the server's logging)."""

    def __init__(
        self, data: Path, store: str, port: int | None = None, args: Sequence[str] = ()
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        data.mkdir(parents=True, exist_ok=True)
        self.log = data / "host.log"
        env = {**os.environ, "NIMBUS_ADMIN_TOKEN": TOKEN, "PYTHONFAULTHANDLER": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    *(sys.executable, "-m", "host.cli", "serve", "--data", str(data)),
                    *("--store", store, "--port", str(self.port), *args),
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 60) -> None:
        def exited() -> str | None:
            return None if self.proc.poll() is None else self.log.read_text()[-3000:]

        assert wait_healthy(self.url, exited, timeout), f"host on {self.port} did not start"

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        """SIGTERM, and a clean exit within 30 s (else its threads' stacks, and fail)."""
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints every thread
            self.proc.wait()
            raise AssertionError(self.log.read_text()[-12000:]) from None


def host(data: Path, store: str, port: int | None = None) -> Host:
    return Host(data, store, port)


def stop(server: Host) -> None:
    server.stop()


def test_a_deploy_through_one_host_is_served_by_the_others_within_a_second(
    tmp_path: Path, build: Build, store: str
) -> None:
    hosts = [host(tmp_path / f"h{i}", store) for i in range(3)]
    try:
        for h in hosts:
            h.wait_ready()
        wasm = build("recorder_zig").read_bytes()
        config = '{"grants": {"tables": {"state": "read-write"}}}'
        r = httpx.put(
            f"{hosts[0].url}/_admin/functions/rec",
            files={"module": ("rec.wasm", wasm)},
            data={"config": config},
            headers=ADMIN,
            timeout=60,
        )
        assert r.status_code == 201, r.text
        deployed = time.monotonic()
        served: dict[str, float] = {}

        def poll(h: Host) -> None:  # B and C at once: each compiles the module itself
            while time.monotonic() - deployed < 5:
                sent = time.monotonic() - deployed
                got = httpx.post(
                    f"{h.url}/_admin/functions/rec/invoke", json={}, headers=ADMIN, timeout=30
                )
                if got.status_code != 404:  # it ran (409: its counter raced the other's)
                    assert got.status_code in (200, 409), got.text
                    served[h.url] = sent
                    return
                assert "FunctionNotFound" in got.text, got.text
                time.sleep(0.02)

        pollers = [threading.Thread(target=poll, args=(h,)) for h in hosts[1:]]
        for t in pollers:
            t.start()
        for t in pollers:
            t.join(timeout=60)
        shown = ", ".join(f"{v * 1000:.0f} ms" for v in served.values())
        print(f"\ndeploy through A: the first request served by B and C was sent at {shown}")
        # the first request that the new deployment answered left within the second
        assert len(served) == 2 and max(served.values()) < 1.0, served
    finally:
        for h in hosts:
            stop(h)


APP = """
[functions.worker]
wasm = "{recorder}"
grants = {{ tables = {{ state = "read-write" }} }}
env = {{ SLEEP_MS = "2" }}

[functions.tick]
wasm = "{recorder}"
grants = {{ tables = {{ state = "read-write" }} }}

{steps}

[workflows.Chain]
start = "a"
{chain}

[[routes]]
method = "POST"
path = "/orders/{{orderId}}"
workflow = "Chain"

[[triggers.queue]]
queue = "jobs"
function = "worker"
batch_size = 1
visibility_timeout = "3s"
max_attempts = 100
backoff = {{ initial = "10ms", max = "200ms" }}

[[triggers.schedule]]
name = "every-second"
cron = "* * * * * *"
function = "tick"
"""


def make_app(tmp: Path, build: Build) -> Path:
    wf = build("wfstep_zig")
    steps = "\n".join(
        f'[functions.step-{s}]\nwasm = "{wf}"\ntimeout = "2s"\n'
        f'env = {{ STEP = "{s}", SLEEP_MS = "5" }}\n'
        'grants = { tables = { wf = "read-write" } }\n'
        for s in STEPS
    )
    chain = "\n".join(
        f'[workflows.Chain.steps.{s}]\nfunction = "step-{s}"\n'
        # the steps of concurrent runs, on three hosts, compare-and-set one counter
        'retry = { max_attempts = 50, initial = "10ms", max_interval = "200ms", '
        'on = ["ConditionFailed", "FunctionFailed"] }\n'
        + (f'on_success = "{STEPS[i + 1]}"\n' if i + 1 < len(STEPS) else "")
        for i, s in enumerate(STEPS)
    )
    app = tmp / "app"
    app.mkdir()
    text = APP.format(recorder=build("recorder_zig"), steps=steps, chain=chain)
    (app / "nimbus.toml").write_text(text)
    return app


def table(platform: Platform, name: str) -> dict[str, Any]:
    with platform.services.storage.read() as txn:
        items = platform.services.tables.items(txn, name, b"", None)
        return {k.decode(): msgpack.unpackb(v) for k, v, _ in items if not k.startswith(b"last.")}


@pytest.mark.crash
def test_three_hosts_share_the_work_and_lose_nothing_when_one_is_killed(
    tmp_path: Path, build: Build, store: str
) -> None:
    n, runs = 2000, 50
    admin = Platform(tmp_path / "admin", PlatformOptions(store=store))
    try:
        apply_manifest(admin, load_manifest(make_app(tmp_path, build)))
        e = admin.services.begin("loader")
        for i in range(n):
            e.queue_send("jobs", msgpack.packb({"i": i}))
        assert e.commit()
        ports = [free_port() for _ in range(3)]
        hosts = [host(tmp_path / f"h{i}", store, ports[i]) for i in range(3)]
        for h in hosts:
            h.wait_ready()
        started: list[str] = []

        def load() -> None:  # HTTP spread over the three hosts, while they work
            for i in range(runs):
                for k in range(3):
                    try:
                        r = httpx.post(
                            f"http://127.0.0.1:{ports[(i + k) % 3]}/orders/o-{i}",
                            json={},
                            headers={"idempotency-key": f"k{i}"},
                            timeout=10,
                        )
                    except httpx.HTTPError:
                        continue  # that host is down: the next one
                    if r.status_code == 202:
                        started.append(r.json()["run_id"])
                        break
                time.sleep(0.05)

        loader = threading.Thread(target=load)
        loader.start()
        progress = []
        time.sleep(2.0)
        hosts[0].kill()  # first kill: restarted
        progress.append(table(admin, "state").get("count.queue", 0))
        time.sleep(0.5)
        hosts[0] = host(tmp_path / "h0", store, ports[0])
        time.sleep(2.0)
        hosts[1].kill()  # second kill: stays dead
        progress.append(table(admin, "state").get("count.queue", 0))
        loader.join(timeout=120)
        print(f"\nqueue progress at each SIGKILL: {progress}")
        deadline = time.monotonic() + 240
        engine = Orchestrator(admin, {})
        while time.monotonic() < deadline:
            state = table(admin, "state")
            statuses = [r["status"] for r in engine.runs(limit=10_000)]
            if state.get("count.queue") == n and statuses.count("succeeded") == runs:
                break
            time.sleep(0.5)
        for h in hosts:
            stop(h)
        assert len(set(started)) == runs
        assert state.get("count.queue") == n  # exactly once: no loss, no double effect
        assert len([k for k in state if k.startswith("seen.queue.")]) == n
        assert statuses.count("succeeded") == runs, statuses
        wf = table(admin, "wf")
        assert {s: wf[f"count.{s}"] for s in STEPS} == {s: runs for s in STEPS}
        ticks = state
        fired = [k for k in ticks if k.startswith("seen.schedule.")]
        # one firing (one event id: the schedule and its time) per second claimed
        assert ticks.get("count.schedule") == len(fired) > 0
        times = sorted(int(k.rsplit("@", 1)[1]) for k in fired)
        assert len(set(times)) == len(times)
        assert 0 < progress[0] < n or 0 < progress[1] < n, "kills must land mid-processing"
    finally:
        admin.close()
