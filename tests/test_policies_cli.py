"""The example app's order API behind an API key and a rate limit, and ``nimbus keys``
and ``nimbus routes`` against a real server (what the README shows, on a free port)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import FUNCTIONS, ROOT, Server

Start = Callable[..., Server]


def nimbus(server: Server, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "host.cli", *args, "--url", server.url, "--token", "test-token"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_example_orders_need_a_key_and_hello_does_not(tmp_path: Path, start_server: Start) -> None:
    server = start_server("up", str(FUNCTIONS), "--data", str(tmp_path / "data"))
    assert httpx.get(server.url + "/hello/ada").text == "hello, ada\n"
    order = {"orderId": "o-1", "total": 42}
    refused = httpx.post(server.url + "/orders", json=order)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'ApiKey header="x-api-key"'

    key = nimbus(server, "keys", "create", "readme").strip()
    assert key.startswith("nk_")
    started = httpx.post(server.url + "/orders", json=order, headers={"x-api-key": key})
    assert started.status_code == 202, started.text
    assert started.headers["ratelimit-policy"] == '"orders";q=20;w=2'

    listed = nimbus(server, "keys", "ls")
    assert "readme" in listed and key not in listed
    routes = nimbus(server, "routes")
    assert "/orders" in routes and "orders" in routes.split("/orders", 1)[1].splitlines()[0]

    key_id = key.split("_")[1]
    assert key_id in nimbus(server, "keys", "revoke", key_id)
    again = httpx.get(server.url + "/orders/o-1", headers={"x-api-key": key})
    assert again.status_code == 401
