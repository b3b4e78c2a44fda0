"""A function route's HTTP exchange in raw ASGI: the ``http`` event from the scope, the
body read under its cap, the answer sent with two ``send`` calls.

A function route runs on every request, so it builds no Starlette ``Request`` or
``Response``: the event is made from the scope's own lists, and the response's raw
header list is written once. The event is the one Starlette's objects would give
(the same header join, query parsing and path); a path or query that Starlette would
escape is taken through Starlette's ``URL`` so the two never differ.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import URL
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from host.errors import PayloadTooLarge

REQUEST_ID = "x-request-id"
#: a response the server writes as it is: status, raw header list, body
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
#: a request whose body the server has read whole, answered without an ``await``: the
#: answer, an ASGI app to run for it instead (an error response), or None (the request
#: goes the ASGI way, as if it had never been asked)
Direct = Callable[[Scope, bytes], Answer | ASGIApp | None]
_REQUEST_ID = REQUEST_ID.encode()

#: characters that Starlette's URL escapes or urlsplit drops: such a path takes its way
_ODD_PATH = re.compile(r"[?#\\\x00-\x20\x7f]")
_ODD_QUERY = re.compile(rb"[#\x00-\x20\x7f-\xff]")


def request_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; a repeated one joined with commas."""
    headers: dict[str, str] = {}
    for k, v in scope["headers"]:
        name = k.decode("latin-1")
        value = v.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def request_path(scope: Scope) -> str:
    """The path as Starlette's ``request.url.path`` gives it."""
    path: str = scope["path"]
    if _ODD_PATH.search(path) or _ODD_QUERY.search(scope.get("query_string", b"")):
        return URL(scope=scope).path
    return path


def http_event(
    scope: Scope, headers: dict[str, str], path: str, params: dict[str, str], body: bytes
) -> dict[str, Any]:
    """The ``http`` event of guest_sdk/ABI.md for this request."""
    raw: bytes = scope.get("query_string", b"")
    query: dict[str, str] = {}
    raw_query = ""
    if raw:
        raw_query = URL(scope=scope).query if _ODD_QUERY.search(raw) else raw.decode()
        for k, v in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
            query[k] = f"{query[k]},{v}" if k in query else v
    return {
        "kind": "http",
        "method": scope["method"],
        "path": path,
        "params": params,
        "query": query,
        "raw_query": raw_query,
        "headers": headers,
        "body": body,
    }


async def read_body(receive: Receive, headers: dict[str, str], cap: int) -> bytes:
    """The whole body, refused with ``PayloadTooLarge`` as soon as it passes ``cap``
    (at once, when Content-Length says so), before it is buffered whole."""
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise PayloadTooLarge(f"request body is {declared} bytes; this route accepts at most {cap}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunk: bytes = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"request body is over {cap} bytes, this route's limit")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def has_body(status: int) -> bool:
    """Whether a response of ``status`` carries a body (1xx, 204 and 304 do not)."""
    return not (status < 200 or status in (204, 304))


def response_headers(
    status: int, headers: dict[str, str], body: bytes, request_id: str
) -> list[tuple[bytes, bytes]]:
    """The raw header list of a function's checked response (host/runtime/response.py:
    lower-case names, latin-1 values, no host-owned header): its own headers, the
    request id and the content length."""
    raw = [
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items() if k != REQUEST_ID
    ]
    raw.append((_REQUEST_ID, request_id.encode("latin-1")))
    if has_body(status):
        raw.append((b"content-length", str(len(body)).encode()))
    return raw


async def send_response(
    send: Send, status: int, headers: dict[str, str], body: bytes, request_id: str
) -> None:
    """A function's checked response, sent (see ``response_headers``); a status that
    has no body (1xx, 204, 304) is sent without one."""
    raw = response_headers(status, headers, body, request_id)
    if not has_body(status):
        body = b""
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
