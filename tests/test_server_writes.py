"""Uvicorn's protocol as Nimbus serves it (``host/server.py``): what one turn of the
event loop writes on a connection goes out in one write — a response's head and body
together — while a streamed response still goes out part by part and pipelined
requests are each answered, in order."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from host.server import OneWriteHttp
from tests.conftest import read_responses, serve_in_thread

WRITES: list[bytes] = []
STREAM_GO_ON = threading.Event()


class CountingTransport:
    """The real transport, its writes noted (what reaches the socket, one per call)."""

    def __init__(self, transport: Any) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        WRITES.append(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CountedHttp(OneWriteHttp):
    def connection_made(self, transport: Any) -> None:
        super().connection_made(CountingTransport(transport))


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/stream":  # a part, then the rest once the client saw it
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await asyncio.get_running_loop().run_in_executor(None, STREAM_GO_ON.wait, 10)
        await send({"type": "http.response.body", "body": b"second"})
        return
    body = scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with serve_in_thread(app, http=CountedHttp, lifespan="off") as url:
        yield int(url.rsplit(":", 1)[1])


def test_a_response_goes_out_in_one_write(port: int) -> None:
    WRITES.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        (response,) = read_responses(sock, 1)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and response.endswith(b"\r\n\r\n/one")
    assert [response] == WRITES


def test_pipelined_requests_are_answered_in_order(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(f"GET /r{i} HTTP/1.1\r\nhost: x\r\n\r\n".encode() for i in range(5)))
        responses = read_responses(sock, 5)
    assert [r.rsplit(b"\r\n\r\n", 1)[1] for r in responses] == [f"/r{i}".encode() for i in range(5)]


def test_a_streamed_part_is_sent_before_the_response_ends(port: int) -> None:
    STREAM_GO_ON.clear()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
        data = b""
        while b"first;" not in data:  # held back, this would wait for ever (the timeout)
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        assert b"second" not in data
        STREAM_GO_ON.set()
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
    assert b"second" in data
