"""The real server on a loopback port: routes, error statuses, request ids, concurrency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import Server

Build = Callable[[str], Path]
Start = Callable[..., Server]

APP = """
[functions.hello]
wasm = "{hello}"

[functions.echo]
wasm = "{echo}"
max_request = "1KiB"

[functions.loop]
wasm = "{loop}"
timeout = "300ms"

[functions.panic]
wasm = "{panic}"

[functions.garbage]
wasm = "{garbage}"

[functions.busy]
wasm = "{busy}"

[[routes]]
method = "GET"
path = "/hello"
function = "hello"

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"

[[routes]]
method = "POST"
path = "/echo"
function = "echo"

[[routes]]
method = "*"
path = "/loop"
function = "loop"

[[routes]]
method = "GET"
path = "/panic"
function = "panic"

[[routes]]
method = "GET"
path = "/garbage"
function = "garbage"

[[routes]]
method = "POST"
path = "/busy"
function = "busy"
"""


@pytest.fixture
def app_dir(tmp_path: Path, build: Build) -> Path:
    guests = {
        "hello": "hello",
        "echo": "echo",
        "loop": "loop_zig",
        "panic": "panic_zig",
        "garbage": "garbage_c",
        "busy": "busy_c",
    }
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(**{k: build(v) for k, v in guests.items()}))
    return app


@pytest.fixture
def server(start_server: Start, app_dir: Path, tmp_path: Path) -> Server:
    return start_server("up", str(app_dir), "--data", str(tmp_path / "data"))


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url + "/_admin", headers={"authorization": "Bearer test-token"}
    ) as c:
        yield c


def error_of(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


def test_route_params_query_and_request_id(server: Server) -> None:
    r = httpx.get(f"{server.url}/hello/ada")
    assert r.status_code == 200
    assert r.text == "hello, ada\n"
    assert r.headers["x-request-id"]
    r = httpx.get(f"{server.url}/hello", params={"name": "bob"})
    assert r.text == "hello, bob\n"
    r = httpx.get(f"{server.url}/hello/eve", headers={"x-request-id": "req-from-client"})
    assert r.headers["x-request-id"] == "req-from-client"
    records = httpx.get(
        f"{server.url}/_admin/invocations",
        params={"function": "hello"},
        headers={"authorization": "Bearer test-token"},
    ).json()["invocations"]
    tagged = [rec for rec in records if rec["request_id"] == "req-from-client"]
    assert tagged and tagged[0]["logs"], "the function's log lines carry the request id"


def test_echo_round_trips_body_and_headers(server: Server) -> None:
    r = httpx.post(f"{server.url}/echo", content=b"\x00binary\xff", headers={"content-type": "x/y"})
    assert r.status_code == 200
    assert r.content == b"\x00binary\xff"
    assert r.headers["content-type"].startswith("x/y")
    assert r.headers["x-echo-method"] == "POST"
    assert r.headers["x-echo-path"] == "/echo"


def test_unknown_route_is_404(server: Server) -> None:
    r = httpx.get(f"{server.url}/nowhere")
    assert r.status_code == 404
    assert error_of(r)["kind"] == "RouteNotFound"
    assert error_of(r)["request_id"] == r.headers["x-request-id"]


def test_wrong_method_is_405_with_allow(server: Server) -> None:
    r = httpx.delete(f"{server.url}/hello/ada")
    assert r.status_code == 405
    assert "GET" in r.headers["allow"]


def test_body_over_limit_is_413_by_content_length(server: Server) -> None:
    r = httpx.post(f"{server.url}/echo", content=b"x" * 2048)
    assert r.status_code == 413
    assert error_of(r)["kind"] == "PayloadTooLarge"


def test_body_over_limit_is_413_while_streaming(server: Server) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"y" * 256

    r = httpx.post(f"{server.url}/echo", content=chunks())
    assert r.status_code == 413


def test_timeout_is_504(server: Server) -> None:
    r = httpx.get(f"{server.url}/loop", timeout=30)
    assert r.status_code == 504
    assert error_of(r)["kind"] == "FunctionTimeout"
    assert httpx.get(f"{server.url}/hello/after").status_code == 200


@pytest.mark.parametrize(
    ("path", "kind"), [("/panic", "FunctionCrashed"), ("/garbage", "AbiError")]
)
def test_guest_failures_are_502_without_internals(server: Server, path: str, kind: str) -> None:
    r = httpx.get(f"{server.url}{path}")
    assert r.status_code == 502
    err = error_of(r)
    assert err["kind"] == kind
    assert err["request_id"] == r.headers["x-request-id"]
    assert "Traceback" not in r.text and "host/" not in r.text and ".py" not in r.text


def test_admin_needs_the_token(server: Server) -> None:
    assert httpx.get(f"{server.url}/_admin/functions").status_code == 401
    r = httpx.get(f"{server.url}/_admin/functions", headers={"authorization": "Bearer nope"})
    assert r.status_code == 403
    assert httpx.get(f"{server.url}/_admin/health").status_code == 200
    assert httpx.get(f"{server.url}/_admin/openapi.json").json()["openapi"].startswith("3.")


def test_admin_deploy_list_invoke_delete(server: Server, admin: httpx.Client, build: Build) -> None:
    wasm = build("counter_zig").read_bytes()
    r = admin.put(
        "/functions/counter",
        files={"module": ("counter.wasm", wasm)},
        data={"config": '{"timeout": "2s"}'},
    )
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    names = {f["name"]: f for f in admin.get("/functions").json()["functions"]}
    assert names["counter"]["version"] == 1
    assert names["hello"]["routes"][0]["path"].startswith("/hello")
    assert admin.get("/functions/counter").json()["config"]["timeout"] == "2s"
    r = admin.post("/functions/counter/invoke", content="{}")
    assert r.status_code == 200
    assert r.json()["response"]["output"] == 1
    assert admin.delete("/functions/counter").status_code == 204
    assert admin.get("/functions/counter").status_code == 404


def test_bad_upload_keeps_the_old_version_serving(server: Server, admin: httpx.Client) -> None:
    before = admin.get("/functions/hello").json()["version"]
    r = admin.put("/functions/hello", files={"module": ("hello.wasm", b"\0asm garbage")})
    assert r.status_code == 400
    assert error_of(r)["kind"] == "DeployError"
    assert admin.get("/functions/hello").json()["version"] == before
    assert httpx.get(f"{server.url}/hello/still").text == "hello, still\n"


def test_restart_keeps_deployments(start_server: Start, server: Server, tmp_path: Path) -> None:
    versions = _versions(server)
    server.stop()
    again = start_server("serve", "--data", str(tmp_path / "data"))
    assert _versions(again) == versions
    assert httpx.get(f"{again.url}/hello/back").text == "hello, back\n"


def _versions(server: Server) -> dict[str, int]:
    fns = httpx.get(
        f"{server.url}/_admin/functions", headers={"authorization": "Bearer test-token"}
    ).json()["functions"]
    return {f["name"]: f["version"] for f in fns}


def test_two_workers_share_deployments(
    start_server: Start, app_dir: Path, tmp_path: Path, build: Build
) -> None:
    server = start_server("up", str(app_dir), "--data", str(tmp_path / "data"), "--workers", "2")
    headers = {"authorization": "Bearer test-token"}
    r = httpx.put(
        f"{server.url}/_admin/functions/counter",
        headers=headers,
        files={"module": ("c.wasm", build("counter_zig").read_bytes())},
    )
    assert r.status_code == 201
    pids = set()
    for _ in range(200):  # fresh connections until both workers have answered (bounded)
        with httpx.Client() as c:
            pids.add(c.get(f"{server.url}/_admin/health").json()["pid"])
            r = c.post(f"{server.url}/_admin/functions/counter/invoke", headers=headers)
            assert r.status_code == 200 and r.json()["response"]["output"] == 1
        if len(pids) == 2:
            break
    assert len(pids) == 2


def test_concurrent_slow_requests_do_not_block_a_fast_one(server: Server) -> None:
    async def run() -> tuple[list[int], float, float, float]:
        limits = httpx.Limits(max_connections=250)
        async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=60) as c:
            t0 = time.monotonic()

            async def slow() -> int:
                r = await c.post("/busy?ms=50")
                return r.status_code

            tasks = [asyncio.create_task(slow()) for _ in range(200)]
            await asyncio.sleep(0.05)
            fast = await c.get("/hello/fast")
            fast_done = time.monotonic() - t0
            statuses = await asyncio.gather(*tasks)
            all_done = time.monotonic() - t0
            assert fast.status_code == 200
            return statuses, fast_done, all_done, t0

    statuses, fast_done, all_done, _ = asyncio.run(run())
    print(
        f"\n200 x 50 ms busy requests: all done in {all_done:.2f} s; fast one in {fast_done:.3f} s"
    )
    assert statuses == [200] * 200
    assert fast_done < all_done  # ordering, not a time limit: it was not queued behind them


def test_route_table_updates_are_checked(server: Server, admin: httpx.Client) -> None:
    colliding = {
        "routes": [
            {"method": "GET", "path": "/x/{a}", "function": "hello"},
            {"method": "GET", "path": "/x/{b}", "function": "hello"},
        ]
    }
    r = admin.put("/routes", json=colliding)
    assert r.status_code == 400 and "collides" in error_of(r)["message"]
    r = admin.put("/routes", json={"routes": [{"path": "/y", "function": "ghost"}]})
    assert r.status_code == 400 and "ghost" in error_of(r)["message"]
    r = admin.put(
        "/routes", json={"routes": [{"method": "GET", "path": "/hi/{name}", "function": "hello"}]}
    )
    assert r.status_code == 200
    assert httpx.get(f"{server.url}/hi/route").text == "hello, route\n"
    assert httpx.get(f"{server.url}/hello/ada").status_code == 404  # the table was replaced
