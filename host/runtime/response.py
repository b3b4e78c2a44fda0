"""The response envelope of guest_sdk/ABI.md, decoded under bounds and checked whole.

Everything a caller will receive is settled here, before the invocation's effects
are committed: a response that cannot be delivered as it is (a status out of range,
a header that would break the HTTP framing, a body JSON cannot carry, a body over the
cap once converted) is an ``AbiError`` and nothing the invocation wrote is kept.

``validate`` returns the response in its delivered form: ``status`` an int,
``headers`` a dict of lower-case names to latin-1-safe values (framing and
hop-by-hop headers removed: the server owns them), ``body`` the exact bytes to send,
and ``output`` (when present) a JSON-representable value.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

from host.common.bounded import Unbounded, unpack
from host.errors import AbiError, ResponseTooLarge

#: an HTTP header name (RFC 9110 token)
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: headers that describe the connection or the message framing: the server sets them
HOST_OWNED = frozenset(
    {
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "x-request-id",
    }
)
MAX_HEADERS = 100
MAX_HEADER_BYTES = 64 * 1024
#: how much of a guest's error kind and message is kept
MAX_ERROR_KIND = 128
MAX_ERROR_MESSAGE = 4096

Note = Callable[[str], None]


def decode(raw: bytes, name: str) -> dict[str, Any]:
    """The response map in ``raw``; ``AbiError`` if it is not one, or over the bounds."""
    try:
        value = unpack(raw)
    except Unbounded as e:
        raise AbiError(f"function {name} returned a response that is refused: {e}") from None
    if not isinstance(value, dict):
        raise AbiError(
            f"function {name} returned a msgpack {type(value).__name__}; the response must be a map"
        )
    return value


def validate(
    response: dict[str, Any], name: str, max_bytes: int, note: Note | None = None
) -> dict[str, Any]:
    """The response as it will be delivered (see the module docstring)."""
    if response.get("error") is not None:
        return {"error": _error(response["error"])}
    status = response.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise AbiError(f"function {name} returned status {status!r}; a status is 100 to 599")
    headers = _headers(response.get("headers"), name, note)
    out: dict[str, Any] = {"status": status, "headers": headers}
    if "output" in response:
        out["output"] = to_json(response["output"], f"function {name}'s output", keep_bytes=True)
    body = response.get("body", response.get("output", b""))
    if isinstance(body, bytes):
        content = body
    elif isinstance(body, str):
        content = body.encode()
        headers.setdefault("content-type", "text/plain; charset=utf-8")
    else:
        value = to_json(body, f"function {name}'s body", keep_bytes=False)
        content = json.dumps(value, allow_nan=False).encode()
        headers.setdefault("content-type", "application/json")
    if len(content) > max_bytes:
        raise ResponseTooLarge(
            f"function {name}'s response body is {len(content)} bytes as sent; its response "
            f"cap is {max_bytes}"
        )
    out["body"] = content
    return out


def _error(error: Any) -> Any:
    if isinstance(error, dict):
        return {
            "kind": str(error.get("kind", "Error"))[:MAX_ERROR_KIND],
            "message": str(error.get("message", ""))[:MAX_ERROR_MESSAGE],
        }
    return str(error)[:MAX_ERROR_MESSAGE]


def _headers(raw: Any, name: str, note: Note | None) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise AbiError(f"function {name} returned 'headers' that is not a map")
    if len(raw) > MAX_HEADERS:
        raise AbiError(f"function {name} returned {len(raw)} headers; at most {MAX_HEADERS}")
    headers: dict[str, str] = {}
    size = 0
    for key, value in raw.items():
        if not isinstance(key, str) or not TOKEN.match(key):
            raise AbiError(f"function {name} returned a header name {key!r} that is not a token")
        if not isinstance(value, str):
            raise AbiError(f"function {name} returned header {key!r} with a non-string value")
        if "\r" in value or "\n" in value or "\0" in value:
            raise AbiError(f"function {name} returned header {key!r} with CR, LF or NUL")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise AbiError(
                f"function {name} returned header {key!r} with a value that is not latin-1"
            ) from None
        lower = key.lower()
        if lower in HOST_OWNED:
            if note is not None:
                note(f"response header {lower!r} dropped: the server sets it")
            continue
        size += len(key) + len(value)
        headers[lower] = value
    if size > MAX_HEADER_BYTES:
        raise AbiError(
            f"function {name} returned {size} bytes of headers; at most {MAX_HEADER_BYTES}"
        )
    return headers


def to_json(value: Any, where: str, keep_bytes: bool) -> Any:
    """``value`` in a form ``json.dumps`` takes; ``AbiError`` for what JSON cannot carry
    (ext types, NaN and infinities, map keys that are not strings or integers). Bytes
    stay bytes with ``keep_bytes``, else become text (invalid UTF-8 replaced)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise AbiError(f"{where} holds {value}, which JSON cannot carry")
        return value
    if isinstance(value, bytes):
        return value if keep_bytes else value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [to_json(v, where, keep_bytes) for v in value]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if isinstance(k, bool) or not isinstance(k, str | int):
                raise AbiError(f"{where} has a map key of type {_kind(k)}; JSON keys are strings")
            out[str(k)] = to_json(v, where, keep_bytes)
        return out
    raise AbiError(f"{where} holds a msgpack {_kind(value)}, which JSON cannot carry")


def _kind(value: Any) -> str:
    names = {bytes: "bin", float: "float", tuple: "array", type(None): "nil"}
    return names.get(type(value), type(value).__name__)
