"""Live logs: ``nimbus logs -f`` receives lines written after it started (server-sent
events from the admin API, the console's own tail), filtered by function; the server
writes JSON lines on stderr with ``--log-format json``."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import ROOT, Server

Build = Callable[[str], Path]
Start = Callable[..., Server]

APP = """
[functions.hello]
wasm = "{hello}"

[functions.other]
wasm = "{hello}"

[[routes]]
path = "/hello"
function = "hello"

[[routes]]
path = "/other"
function = "other"
"""


def reader(proc: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_logs_follow_streams_new_lines_and_the_server_logs_json(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(hello=build("hello")))
    args = ("up", str(app), "--data", str(tmp_path / "data"), "--log-format", "json")
    server = start_server(*args, "--log-level", "info", token="t")
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": "t", "NIMBUS_URL": server.url, "COLUMNS": "200"}
    follow = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "logs", "-f", "--function", "hello"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = reader(follow)
        made: list[str] = []
        seen: list[str] = []
        deadline = time.monotonic() + 60
        # requests made after the follower started, until one of them shows up in it
        while not any(rid in line for rid in made for line in seen):
            assert time.monotonic() < deadline, f"nothing streamed: {seen}"
            assert httpx.get(f"{server.url}/other").status_code == 200
            r = httpx.get(f"{server.url}/hello")
            assert r.status_code == 200
            made.append(r.headers["x-request-id"])
            try:
                while True:
                    seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                pass
        rid = next(rid for rid in made if any(rid in line for line in seen))
        mine = [line for line in seen if rid in line]
        assert any("INFO  saying hello" in line for line in mine), mine
        assert any("END ok" in line and "http" in line for line in mine), mine
        assert not any("other" in line for line in seen)  # filtered by function
    finally:
        follow.terminate()
        follow.wait(timeout=10)

    out = server.stop()
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert records, out
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    invocation = [r for r in records if r["logger"] == "nimbus.invocations"]
    assert any(r.get("request_id") == rid and r["level"] == "info" for r in invocation)
    assert any(r["logger"].startswith("uvicorn") for r in records)
