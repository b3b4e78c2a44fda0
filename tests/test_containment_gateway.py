"""Containment through the real server: hostile responses, caps and caller JSON over
HTTP, and a hostile function behind a queue trigger (issue 12)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from host.manifest.functions import MAX_MODULE_BYTES
from tests.conftest import Server
from tests.hostile import WRITES, guest, packb

Start = Callable[..., Server]

GRANTS = """[functions.{name}.grants]
tables = {{ t = "read-write" }}
buckets = {{ b = "read-write" }}
queues = {{ q = "read-write" }}
topics = {{ "e.*" = "read-write" }}
"""

GUESTS: dict[str, bytes] = {
    "hello": guest(response=packb({"status": 200, "body": "hello"})),
    "crlf": guest(stage=WRITES, response=packb({"headers": {"x-a": "1\r\nx-b: 2"}, "body": "x"})),
    "status": guest(stage=WRITES, response=packb({"status": 9999})),
    "nan": guest(stage=WRITES, response=packb({"body": {"x": float("nan")}})),
    "smuggle": guest(
        response=packb(
            {
                "headers": {"transfer-encoding": "chunked", "content-length": "3"},
                "body": "hello world",
            }
        )
    ),
}


@pytest.fixture
def server(start_server: Start, tmp_path: Path) -> Server:
    app = tmp_path / "app"
    app.mkdir()
    parts = []
    for name, wasm in GUESTS.items():
        (app / f"{name}.wasm").write_bytes(wasm)
        parts.append(f'[functions.{name}]\nwasm = "{name}.wasm"\n' + GRANTS.format(name=name))
        parts.append(f'[[routes]]\nmethod = "*"\npath = "/{name}"\nfunction = "{name}"\n')
    parts.append('[workflows.W]\nstart = "a"\n[workflows.W.steps.a]\nfunction = "hello"\n')
    parts.append('[[routes]]\nmethod = "POST"\npath = "/wf/{id}"\nworkflow = "W"\n')
    parts.append(
        '[[triggers.queue]]\nqueue = "jobs"\nfunction = "crlf"\nmax_attempts = 1\n'
        'backoff = { initial = "10ms", max = "10ms" }\n'
    )
    (app / "nimbus.toml").write_text("\n".join(parts))
    return start_server("up", str(app), "--data", str(tmp_path / "data"))


@pytest.fixture
def admin(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url + "/_admin", headers={"authorization": "Bearer test-token"}
    ) as c:
        yield c


def nothing_kept(admin: httpx.Client) -> None:
    assert admin.get("/tables/t/keys").json()["items"] == []
    assert admin.get("/buckets/b/objects").json()["items"] == []
    assert admin.get("/queues/q/messages").json()["messages"] == []


def error_of(r: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = r.json()["error"]
    return body


@pytest.mark.parametrize("path", ["/crlf", "/status", "/nan"])
def test_invalid_response_is_a_typed_502_and_nothing_commits(
    server: Server, admin: httpx.Client, path: str
) -> None:
    r = httpx.get(server.url + path)
    assert r.status_code == 502
    assert error_of(r)["kind"] == "AbiError"
    assert "x-b" not in r.headers
    assert httpx.get(server.url + "/hello").text == "hello"
    nothing_kept(admin)


def test_framing_is_the_servers(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as s:
        s.sendall(b"GET /smuggle HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        raw = b""
        while chunk := s.recv(65536):
            raw += chunk
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert b"transfer-encoding: chunked" not in lines
    assert lines.count(b"content-length: 11") == 1
    assert body == b"hello world"


def test_a_bad_function_behind_a_queue_trigger(server: Server, admin: httpx.Client) -> None:
    assert admin.post("/queues/jobs/messages", json={"n": 1}).status_code in (200, 201, 202)
    deadline = time.monotonic() + 30
    while not admin.get("/queues/jobs.dlq/messages").json()["messages"]:
        assert time.monotonic() < deadline, "the message never reached the dead-letter queue"
        time.sleep(0.1)
    nothing_kept(admin)
    assert httpx.get(server.url + "/hello").text == "hello"


def test_caller_json_is_depth_bounded(server: Server, admin: httpx.Client) -> None:
    r = admin.post("/functions/hello/invoke", content=b"[" * 100_000)
    assert r.status_code == 400
    assert "64" in error_of(r)["message"]
    r = admin.put("/tables/t/keys/k", content=b"[" * 65 + b"]" * 65)
    assert r.status_code == 400 and "64" in error_of(r)["message"]
    nothing_kept(admin)


def test_a_workflow_routes_json_is_depth_bounded(server: Server, admin: httpx.Client) -> None:
    for body in (b"[" * 100_000, b'{"a":' * 65 + b"1" + b"}" * 65):
        r = httpx.post(server.url + "/wf/1", content=body)
        assert r.status_code == 400, r.text
        assert error_of(r)["kind"] == "InvalidRequest"
        assert "workflow route" in error_of(r)["message"] and "64" in error_of(r)["message"]
    assert admin.get("/runs").json()["runs"] == []  # nothing stored for a refused body
    deep = b'{"a":' * 60 + b"1" + b"}" * 60  # within the bound: stored, and shown again
    r = httpx.post(server.url + "/wf/1", content=deep)
    assert r.status_code == 202, r.text
    assert admin.get(r.headers["location"].removeprefix("/_admin")).status_code == 200


def test_module_upload_cap_is_413(server: Server, admin: httpx.Client) -> None:
    module = b"\0asm\x01\0\0\0" + b"\0" * MAX_MODULE_BYTES
    r = admin.put("/functions/huge", files={"module": ("huge.wasm", module)}, timeout=120)
    assert r.status_code == 413, r.text
    assert error_of(r)["kind"] == "PayloadTooLarge"
    assert httpx.get(server.url + "/hello").text == "hello"
