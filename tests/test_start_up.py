"""A server serves as soon as it listens; its start-up work (the triggers' and workflows'
threads, the metrics, the Python functions) runs beside, and ``/_admin/ready`` says
when it is done."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from host.gateway.app import create_app
from host.manifest.app import load_manifest
from host.orchestrator.runner import WorkflowRunner
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from host.triggers.manager import TriggerManager
from tests.conftest import HELLO_APP, ROOT, eventually, serve_in_thread

Build = Callable[[str], Path]


class HeldStart:
    """Background work that does not finish starting until the test lets it."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.stopped = False

    def start(self) -> None:
        self.entered.set()
        assert self.release.wait(30), "the test never released the start"

    def stop(self) -> None:
        self.stopped = True


class Recorder:
    def __init__(self) -> None:
        self.started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        pass


class FailingStart:
    def start(self) -> None:
        raise RuntimeError("this background part cannot start")

    def stop(self) -> None:
        pass


def _platform(tmp_path: Path, build: Build) -> Platform:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "nimbus.toml").write_text(HELLO_APP.format(hello=build("hello")))
    platform = Platform(tmp_path / "data")
    apply_manifest(platform, load_manifest(tmp_path / "app"))
    return platform


def test_functions_answer_while_the_start_up_work_runs(tmp_path: Path, build: Build) -> None:
    platform = _platform(tmp_path, build)
    runner = WorkflowRunner(platform)
    triggers = TriggerManager(platform, start_workflow=runner.start_run)
    held, after = HeldStart(), Recorder()
    app = create_app(platform, runner, triggers, admin_token="t", background=[held, after])
    with serve_in_thread(app) as url:
        assert held.entered.wait(10), "the start-up work never began"
        r = httpx.get(f"{url}/hello/ada", timeout=10)
        assert r.status_code == 200 and r.text.startswith("hello, ada")
        assert httpx.get(f"{url}/_admin/ready").status_code == 503
        health = httpx.get(f"{url}/_admin/health").json()
        assert health["status"] == "ok" and health["ready"] is False
        assert not after.started  # in order, after the held part
        held.release.set()
        assert eventually(lambda: httpx.get(f"{url}/_admin/ready").status_code == 200)
        assert httpx.get(f"{url}/_admin/ready").json() == {"ready": True}
        assert httpx.get(f"{url}/_admin/health").json()["ready"] is True
        assert after.started
        # the metrics were made by the start-up work, the first request's count kept
        assert (
            'nimbus_invocations_total{function="hello"'
            in httpx.get(f"{url}/_admin/metrics", headers={"authorization": "Bearer t"}).text
        )
    assert held.stopped


def test_a_failing_start_up_part_is_logged_and_the_rest_runs(tmp_path: Path, build: Build) -> None:
    platform = _platform(tmp_path, build)
    runner = WorkflowRunner(platform)
    triggers = TriggerManager(platform, start_workflow=runner.start_run)
    after = Recorder()
    app = create_app(
        platform, runner, triggers, admin_token="t", background=[FailingStart(), after]
    )
    with serve_in_thread(app) as url:
        assert eventually(lambda: httpx.get(f"{url}/_admin/ready").status_code == 200)
        assert after.started  # the part after the failed one started all the same
        assert httpx.get(f"{url}/hello/ada").status_code == 200


#: what a server's first response does not need, so what it does not import before it
#: serves (the start-up work imports some of them later, in the background)
NOT_BEFORE_SERVING = (
    "websockets",  # no route is a WebSocket (Uvicorn's `auto` imported it)
    "importlib.metadata",  # scans sys.path
    "prometheus_client",  # the metrics are made by the start-up work
    "croniter",
    "host.orchestrator.engine",
    "host.triggers.delivery",
    "host.triggers.schedules",
    "host.gateway.admin",  # built on its first request
    "wasmtime.component",  # never: Python functions run in a core module
    "httpx",
    "rich",
    "tarfile",  # only to build the Python runtime
    "difflib",  # only to suggest a key in a manifest's error
)

#: ``nimbus serve`` through its console entry, up to where Uvicorn would listen: its
#: ``run`` makes the worker's config and loads it (the app made, its protocols
#: imported), then reports the modules imported and the collector's state
_SERVE_PROBE = """
import gc, json, sys
import uvicorn
from host.cli import entry

def run(app, **options):
    uvicorn.Config(app, **options).load()
    state = {"modules": sorted(sys.modules), "gc_enabled": gc.isenabled(),
             "frozen": gc.get_freeze_count()}
    print(json.dumps(state))

uvicorn.run = run
sys.argv = ["nimbus", "serve", "--data", sys.argv[1], "--port", "0"]
sys.exit(entry.main())
"""


def serve_until_listening(tmp_path: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", _SERVE_PROBE, str(tmp_path / "data")],
        cwd=ROOT,
        env={**os.environ, "NIMBUS_ADMIN_TOKEN": "test-token"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    state: dict[str, Any] = json.loads(out.stdout)
    assert "host.platform.platform" in state["modules"]  # (the probe did load the app)
    return state


def test_a_server_imports_only_what_serving_needs(tmp_path: Path) -> None:
    imported = set(serve_until_listening(tmp_path)["modules"])
    assert [m for m in NOT_BEFORE_SERVING if m in imported] == []


def test_nimbus_serve_serves_with_the_collector_on(tmp_path: Path) -> None:
    """`nimbus serve` imports the server with the cyclic GC off (entry.py); by the
    time Uvicorn runs, the collector is on again and the imports' objects are frozen."""
    state = serve_until_listening(tmp_path)
    assert state["gc_enabled"] is True
    assert isinstance(state["frozen"], int) and state["frozen"] > 0
