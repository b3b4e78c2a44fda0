"""A function that runs inline is answered by the server's protocol without an asyncio
task (``host/server.py``, ``OneWriteHttp``; ``FunctionRoutes.direct``): the answer is
the one the ASGI way gives, byte for byte but the date and the request id, and every
request the direct way does not take (a large body, ``HEAD``, ``Expect: 100-continue``,
a function not yet proven fast) still goes the ASGI way. Real functions, a real
Uvicorn server on a loopback port, raw sockets where framing is the point."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from host.gateway.app import create_app
from host.gateway.invoker import FAST_STREAK
from host.manifest.app import load_manifest
from host.orchestrator.runner import WorkflowRunner
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from host.server import DIRECT_BODY_BYTES, DIRECT_PER_READ, OneWriteHttp
from host.triggers.manager import TriggerManager
from tests.conftest import read_responses, serve_in_thread

Build = Callable[[str], Path]
#: the status lines of the answers written the direct way, in order
DIRECT: list[bytes] = []

APP = """
[functions.hello]
wasm = "{hello}"

[functions.greet]
wasm = "{hello}"

[functions.echo]
wasm = "{echo}"
max_request = "1MiB"

[functions.status]
wasm = "{status}"

[functions.failing]
wasm = "{status}"

[functions.busy]
wasm = "{busy}"

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"

[[routes]]
method = "*"
path = "/any/{{name}}"
function = "hello"

[[routes]]
method = "POST"
path = "/echo"
function = "echo"

[[routes]]
method = "GET"
path = "/status"
function = "status"

[[routes]]
method = "GET"
path = "/greet/{{name}}"
function = "greet"

[[routes]]
method = "GET"
path = "/failing"
function = "failing"

[[routes]]
method = "GET"
path = "/busy"
function = "busy"
"""


class NotedHttp(OneWriteHttp):
    """The server's protocol, each direct answer noted."""

    def _write(self, cycle: Any, status: int, headers: Any, body: bytes) -> None:
        DIRECT.append(str(status).encode())
        super()._write(cycle, status, headers, body)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, build: Build) -> Iterator[str]:
    root = tmp_path_factory.mktemp("direct")
    (root / "app").mkdir()
    guests = {"hello": "hello", "echo": "echo", "status": "status_zig", "busy": "busy_c"}
    text = APP.format(**{k: build(v) for k, v in guests.items()})
    (root / "app" / "nimbus.toml").write_text(text)
    platform = Platform(root / "data")
    apply_manifest(platform, load_manifest(root / "app"))
    runner = WorkflowRunner(platform)
    triggers = TriggerManager(platform, start_workflow=runner.start_run)
    app = create_app(platform, runner, triggers, admin_token="t", background=[])
    with serve_in_thread(app, http=NotedHttp, timeout_keep_alive=1) as base:
        yield base


def proven(url: str, path: str, method: str = "GET", body: bytes = b"") -> httpx.Response:
    """``path`` asked until its function runs inline; its first answer (the ASGI way).

    A run in a thread that took 2 ms of CPU starts the function's streak anew; in this
    process (server and client, a large heap) that is mostly a collection by the
    cyclic GC, so it is held off while the streak is made."""
    first = httpx.request(method, url + path, content=body)
    DIRECT.clear()
    gc.disable()
    try:
        for _ in range(40 * FAST_STREAK):
            httpx.request(method, url + path, content=body)
            if DIRECT:
                DIRECT.clear()
                return first
    finally:
        gc.enable()
    raise AssertionError(f"{path} never ran inline")


def exchange(url: str, raw: bytes, answers: int) -> list[bytes]:
    """``raw`` sent at once on one connection; the ``answers`` responses read back."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(raw)
        return read_responses(sock, answers)


def comparable(r: httpx.Response) -> tuple[int, dict[str, str], bytes]:
    headers = {k: v for k, v in r.headers.items() if k not in ("date", "x-request-id")}
    return r.status_code, headers, r.content


def test_an_inline_function_is_answered_directly_as_the_asgi_way_would(url: str) -> None:
    first = proven(url, "/greet/ada?x=1")
    DIRECT.clear()
    again = httpx.get(url + "/greet/ada?x=1", headers={"x-request-id": "req-mine"})
    assert DIRECT == [b"200"], "answered the direct way"
    assert comparable(again) == comparable(first)
    assert again.headers["x-request-id"] == "req-mine"
    assert again.text == "hello, ada\n"


def test_a_body_reaches_the_function_and_a_large_one_goes_the_asgi_way(url: str) -> None:
    proven(url, "/echo", "POST", b"warm")
    DIRECT.clear()
    small = httpx.post(url + "/echo", content=b"\x00small\xff", headers={"content-type": "x/y"})
    assert (small.content, small.headers["content-type"]) == (b"\x00small\xff", "x/y")
    assert DIRECT == [b"200"]
    large = b"L" * (DIRECT_BODY_BYTES + 1)
    big = httpx.post(url + "/echo", content=large)
    assert big.content == large
    assert DIRECT == [b"200"], "a large body is streamed to the app, not held"


def test_pipelined_requests_are_answered_in_order_and_the_connection_lives_on(
    url: str,
) -> None:
    port = int(url.rsplit(":", 1)[1])
    pipelined = b"".join(f"GET /hello/p{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(5))
    # all five direct, unless a run was stopped at its budget on a busy machine (the
    # function then goes to the threads for a few runs): asked again, then
    for _ in range(3):
        proven(url, "/hello/warm")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(pipelined)
            bodies = [r.rsplit(b"\r\n\r\n", 1)[1] for r in read_responses(sock, 5)]
            assert bodies == [f"hello, p{i}\n".encode() for i in range(5)]
            # each answer armed the keep-alive timer (1 s here): a busy connection
            # stays open past it
            for i in range(6):
                time.sleep(0.3)
                sock.sendall(f"GET /hello/k{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
                assert read_responses(sock, 1)[0].endswith(f"hello, k{i}\n".encode())
        if len(DIRECT) == 11:
            break
    assert len(DIRECT) == 11


def test_one_read_of_many_pipelined_requests_does_not_hold_the_loop_for_all(url: str) -> None:
    proven(url, "/hello/warm")
    count = 5 * DIRECT_PER_READ
    answers = exchange(
        url,
        b"".join(f"GET /hello/m{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(count)),
        count,
    )
    assert [a.rsplit(b"\r\n\r\n", 1)[1] for a in answers] == [
        f"hello, m{i}\n".encode() for i in range(count)
    ]
    assert 0 < len(DIRECT) < count, "past a few, the rest of the read went the ASGI way"


def test_connection_close_and_http_1_0_are_honoured(url: str) -> None:
    proven(url, "/hello/warm")
    port = int(url.rsplit(":", 1)[1])
    for request in (
        b"GET /hello/c HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        b"GET /hello/c HTTP/1.0\r\n\r\n",
    ):
        DIRECT.clear()
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(request)
            data = b""
            while chunk := sock.recv(65536):  # the server closes: recv ends
                data += chunk
        assert data.endswith(b"hello, c\n") and b"\r\nconnection: close\r\n" in data.lower()
        assert DIRECT == [b"200"]


def test_head_and_expect_continue_go_the_asgi_way(url: str) -> None:
    proven(url, "/any/warm")
    proven(url, "/echo", "POST", b"warm")
    head = httpx.head(url + "/any/h")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == "9"
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n"
        )
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):  # the body is sent only once asked for
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abc")
        (answer,) = read_responses(sock, 1)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nabc")
    assert DIRECT == []


def test_statuses_without_a_body_are_framed_as_the_asgi_way_frames_them(url: str) -> None:
    statuses = (201, 204, 304, 404)
    first = {s: httpx.get(url + f"/status?status={s}") for s in statuses}  # in threads
    proven(url, "/status")
    DIRECT.clear()
    for s in statuses:
        again = httpx.get(url + f"/status?status={s}")
        assert comparable(again) == comparable(first[s])
        assert again.headers["x-status"] == str(s)
    assert DIRECT == [b"201", b"404"], "204 and 304 go the ASGI way, without their body"
    assert first[201].content == b"a body\n"
    for s in (204, 304):
        assert first[s].content == b"" and "content-length" not in first[s].headers


def test_a_function_failing_inline_gets_the_error_answer_of_the_asgi_way(url: str) -> None:
    mine = {"x-request-id": "req-mine"}  # the error body names it
    first = httpx.get(url + "/failing?status=nan", headers=mine)
    assert first.status_code == 502 and first.json()["error"]["kind"] == "FunctionFailed"
    proven(url, "/failing")
    DIRECT.clear()
    again = httpx.get(url + "/failing?status=nan", headers=mine)
    assert comparable(again) == comparable(first)
    assert DIRECT == [], "an error answer is an ASGI app, run for the request"
    assert httpx.get(url + "/failing").status_code == 200 and DIRECT == [b"200"]


class BrokenDirect:
    """An app whose ``direct`` has a bug on one path (the protocol's own safety net)."""

    def direct(self, scope: dict[str, Any], body: bytes) -> Any:
        if scope["path"] == "/bug":
            raise RuntimeError("a bug in the direct way")
        return 200, [(b"content-length", b"2")], b"ok"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"  # every http request is answered directly


def test_a_bug_in_the_direct_way_is_a_500_and_the_server_goes_on() -> None:
    with serve_in_thread(BrokenDirect(), http=OneWriteHttp, lifespan="off") as base:
        bug = httpx.get(base + "/bug")
        assert (bug.status_code, bug.text) == (500, "Internal Server Error")
        ok = httpx.get(base + "/fine")
        assert (ok.status_code, ok.text) == (200, "ok")


def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(url: str) -> None:
    """The server's protocol arms its keep-alive timer lazily: a connection idle for
    the timeout (1 s here) is still closed by the server, whichever way its last
    request went."""
    port = int(url.rsplit(":", 1)[1])
    for path in ("/hello/ada", "/status?status=200"):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
            assert read_responses(sock, 1)[0].startswith(b"HTTP/1.1 200")
            assert sock.recv(1) == b"", "closed by the server once idle (within 10 s)"


def test_a_connection_kept_busy_outlives_the_keep_alive_timeout(url: str) -> None:
    """Requests every 0.25 s for 2.5 s, over a 1 s timeout, on one connection: a timer
    armed in an earlier idle spell never closes a connection that has been busy since,
    and the connection is closed once idle for the timeout after its last answer."""
    proven(url, "/hello/ada")
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(10):
            sock.sendall(b"GET /hello/ada HTTP/1.1\r\nhost: x\r\n\r\n")
            assert read_responses(sock, 1)[0].endswith(b"hello, ada\n")
            time.sleep(0.25)
        sock.sendall(b"GET /hello/ada HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_responses(sock, 1)[0].endswith(b"hello, ada\n")
        assert sock.recv(1) == b"", "and closed once idle again (within 10 s)"


def test_a_request_longer_than_the_keep_alive_timeout_keeps_its_connection(url: str) -> None:
    """The timer armed after the first answer fires while the second request (1.5 s of
    work, over the 1 s timeout) runs: the connection is busy, so it stays open."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /hello/ada HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_responses(sock, 1)[0].endswith(b"hello, ada\n")
        time.sleep(0.5)
        sock.sendall(b"GET /busy?ms=1500 HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_responses(sock, 1)[0].endswith(b"done\n")
        sock.sendall(b"GET /hello/ada HTTP/1.1\r\nhost: x\r\n\r\n")
        assert read_responses(sock, 1)[0].endswith(b"hello, ada\n")
