"""The raw-ASGI event of a function route is the one Starlette's objects would give:
the same header join, query parsing, raw query and path, odd characters included."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from starlette.requests import Request

from host.errors import PayloadTooLarge
from host.gateway.asgi import http_event, read_body, request_headers, request_path


def _scope(path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "method": "GET",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": headers,
        "server": ("127.0.0.1", 8080),
        "scheme": "http",
        "root_path": "",
    }


def _starlette_event(scope: dict[str, Any]) -> dict[str, Any]:
    """What the gateway built from a Starlette ``Request`` before it went raw."""
    request = Request(scope)
    headers: dict[str, str] = {}
    for k, v in request.headers.items():
        headers[k] = f"{headers[k]},{v}" if k in headers else v
    query: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        query[k] = f"{query[k]},{v}" if k in query else v
    return {
        "kind": "http",
        "method": request.method,
        "path": request.url.path,
        "params": {},
        "query": query,
        "raw_query": request.url.query,
        "headers": headers,
        "body": b"",
    }


CASES = [
    ("/hello/ada", b"", [(b"host", b"x")]),
    ("/hello/ada", b"a=1&a=2&b=&c", [(b"accept", b"a"), (b"accept", b"b"), (b"host", b"h:1")]),
    ("/hello/a b", b"q=%20x+y&z=%E2%9C%93", [(b"x-latin", "caf\xe9".encode("latin-1"))]),
    ("/odd/a?b#c\\d", b"k=v", []),
    ("//double/slash", b"", [(b"host", b"h")]),
    ("/tab\there", b"x=1%23", []),
]


@pytest.mark.parametrize(("path", "query", "headers"), CASES)
def test_the_raw_event_is_the_starlette_event(
    path: str, query: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    scope = _scope(path, query, headers)
    raw = http_event(scope, request_headers(scope), request_path(scope), {}, b"")
    assert raw == _starlette_event(scope)


def _receive(chunks: list[bytes]) -> Any:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    return receive


def test_the_body_is_read_whole_and_refused_past_its_cap() -> None:
    async def run() -> None:
        assert await read_body(_receive([b"ab", b"cd", b""]), {}, 10) == b"abcd"
        with pytest.raises(PayloadTooLarge, match="over 3 bytes"):
            await read_body(_receive([b"ab", b"cd"]), {}, 3)
        with pytest.raises(PayloadTooLarge, match="is 99 bytes"):  # refused before reading
            await read_body(_receive([]), {"content-length": "99"}, 3)

    anyio.run(run)
