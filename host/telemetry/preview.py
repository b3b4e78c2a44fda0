"""What an invocation record keeps of its event and response: a bounded, redacted preview.

The console's invocation page shows the event and the response, but a record must not
hold a 6 MiB body, nor a caller's credentials, for as long as it is kept. A preview
is the value as JSON text, walked within a byte budget (strings and bodies cut, the
rest of a long list or map counted, not copied; nesting past a depth shown as
``"…"``), with the values of credential headers (``authorization``, ``cookie``,
``set-cookie``, ``x-api-key``, …) replaced by ``"[redacted]"``. Its length counts
in the telemetry byte budget (``records.py``).
"""

from __future__ import annotations

import json
from typing import Any

#: the most a preview (event or response) keeps, in characters of JSON text
MAX_PREVIEW = 2048
#: the deepest nesting shown
MAX_DEPTH = 8
#: header names whose values never reach a record
REDACTED = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


def preview(value: Any, limit: int = MAX_PREVIEW, size_hint: int | None = None) -> str:
    """``value`` as JSON text of at most about ``limit`` characters, redacted.
    ``size_hint``, the size of its msgpack form when known, lets a small value take
    the fast path (one ``json.dumps``, no walk): the common case, on every call."""
    if size_hint is not None and size_hint <= limit // 2 and isinstance(value, dict):
        try:
            text = json.dumps(
                _redact(value),
                ensure_ascii=False,
                separators=(",", ":"),
                allow_nan=False,
                default=_text,
            )
        except (TypeError, ValueError, RecursionError):
            pass  # a value JSON cannot hold as is: the walk converts it
        else:
            if len(text) <= limit:
                return text
    budget = [limit]
    text = json.dumps(_clip(value, budget, 0), ensure_ascii=False, separators=(",", ":"))
    if len(text) > limit + 64:  # the walk's estimate is close; this bounds it exactly
        text = text[:limit] + "…"
    return text


def mask(value: Any, secrets: list[bytes], depth: int = 0) -> Any:
    """``value`` with every occurrence of ``secrets`` in its strings and bytes replaced
    by ``[secret]`` (for an invocation that read secrets: what its record keeps)."""
    if isinstance(value, bytes):
        for s in secrets:
            value = value.replace(s, b"[secret]")
        return value
    if isinstance(value, str):
        for s in secrets:
            value = value.replace(s.decode("utf-8", "replace"), "[secret]")
        return value
    if depth >= 2 * MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {mask(k, secrets, depth + 1): mask(v, secrets, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask(v, secrets, depth + 1) for v in value]
    return value


def _redact(value: dict[str, Any]) -> dict[str, Any]:
    headers = value.get("headers")
    if isinstance(headers, dict) and any(str(h).lower() in REDACTED for h in headers):
        hidden = {h: "[redacted]" if str(h).lower() in REDACTED else x for h, x in headers.items()}
        return {**value, "headers": hidden}
    return value


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    raise TypeError(type(value).__name__)


def _clip(value: Any, budget: list[int], depth: int) -> Any:
    if budget[0] <= 0:
        return "…"
    if isinstance(value, bytes):
        text = value[: budget[0]].decode("utf-8", "replace")
        if len(value) > budget[0]:
            text += f"… ({len(value)} bytes)"
        budget[0] -= len(text) + 2
        return text
    if isinstance(value, str):
        if len(value) > budget[0]:
            value = value[: budget[0]] + f"… ({len(value)} characters)"
        budget[0] -= len(value) + 2
        return value
    if value is None or isinstance(value, bool | int | float):
        budget[0] -= 6
        return value if not isinstance(value, float) or value == value else None
    if depth >= MAX_DEPTH:
        budget[0] -= 3
        return "…"
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if budget[0] <= 0:
                out["…"] = f"{len(value) - i} more"
                break
            key = k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k)
            budget[0] -= len(key) + 4
            if key == "headers" and isinstance(v, dict):
                v = _redact(value)["headers"]
            out[key] = _clip(v, budget, depth + 1)
        return out
    if isinstance(value, list | tuple):
        items: list[Any] = []
        for i, v in enumerate(value):
            if budget[0] <= 0:
                items.append(f"… {len(value) - i} more")
                break
            items.append(_clip(v, budget, depth + 1))
            budget[0] -= 1
        return items
    return _clip(repr(value), budget, depth)
