"""With ``nimbus up --workers 2`` the console shows the host, not the half one worker
served: the overview, a function's figures and the usage page read rows every worker
writes to the data dir (``services/activity.py``, ``services/usage.py``)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import HELLO_APP, Server

Build = Callable[[str], Path]
Start = Callable[..., Server]


def log_in(client: httpx.Client) -> None:
    form = client.get("/_console/login").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', form)
    assert csrf is not None
    r = client.post("/_console/login", data={"token": "test-token", "csrf": csrf.group(1)})
    assert r.status_code in (200, 303), r.text


def test_the_overview_counts_every_workers_invocations(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(HELLO_APP.format(hello=build("hello")))
    server = start_server("up", str(app), "--data", str(tmp_path / "data"), "--workers", "2")
    pinned = server.pin_workers()
    try:
        (a, first), (b, second) = pinned.items()
        for _ in range(10):
            assert first.get("/hello/a").status_code == 200
        for _ in range(15):
            assert second.get("/hello/b").status_code == 200
        assert first.get("/_admin/health").json()["pid"] == a
        assert second.get("/_admin/health").json()["pid"] == b
        for client in pinned.values():
            log_in(client)  # sessions live in the data dir: one per client, either works
        deadline = time.monotonic() + 10  # the other worker flushes every 0.5 s
        while True:
            counts = [
                c.get("/_console/api/overview").json()["total"]["count"] for c in pinned.values()
            ]
            if counts == [25, 25] or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert counts == [25, 25]  # each worker's page counts both workers' calls
        for client in pinned.values():
            page = client.get("/_console/functions").text
            assert re.search(r">25<", page), "the functions list counts both workers"
        usage_row = re.compile(r"<td class=\"num\">25</td>")
        while True:  # usage is flushed on its own beat, not with the activity rows
            pages = [c.get("/_console/usage").text for c in pinned.values()]
            if all(usage_row.search(p) for p in pages) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        for usage in pages:
            assert usage_row.search(usage), "usage is both workers'"
    finally:
        for c in pinned.values():
            c.close()
