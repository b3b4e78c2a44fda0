"""Applying a policy's declarative transforms to the ``http`` event and the response.

Each operation is a small pure function of the event (or the response) so that it can
be tested alone; ``transform_event`` and ``transform_response`` run them in the order
``host/manifest/transforms.py`` documents. Nothing here evaluates code: a template is
data, and a ``$.`` path only reads the request.
"""

from __future__ import annotations

import json
import re
from typing import Any

from host.errors import InvalidRequest
from host.manifest.transforms import RequestTransform, ResponseTransform

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?:\.\.\.)?\}")
_MISSING = object()


# --- headers ------------------------------------------------------------------------


def set_headers(headers: dict[str, str], values: dict[str, str]) -> dict[str, str]:
    return {**headers, **values}


def remove_headers(headers: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    drop = set(names)
    return {k: v for k, v in headers.items() if k not in drop}


def rename_headers(headers: dict[str, str], renames: dict[str, str]) -> dict[str, str]:
    return {renames.get(k, k): v for k, v in headers.items()}


# --- path and body ------------------------------------------------------------------


def rewrite_path(template: str, params: dict[str, str]) -> str:
    """``/v2/orders/{id}`` with the route's params filled in."""

    def fill(m: re.Match[str]) -> str:
        if m.group(1) not in params:
            raise InvalidRequest(f"the path rewrite {template!r} needs parameter {m.group(1)!r}")
        return params[m.group(1)]

    return _PARAM.sub(fill, template)


def lookup(context: dict[str, Any], path: str) -> Any:
    """What ``$.a.b.0`` names in ``context`` (None when absent)."""
    value: Any = context
    for segment in path.split("."):
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            value = _MISSING
        if value is _MISSING:
            return None
    return value


def render(template: Any, context: dict[str, Any]) -> Any:
    """A template with every ``"$.path"`` string replaced by what it names."""
    if isinstance(template, str):
        if template.startswith("$$"):
            return template[1:]
        if template.startswith("$."):
            return lookup(context, template[2:])
        return template
    if isinstance(template, dict):
        return {k: render(v, context) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, context) for v in template]
    return template


def json_body(body: bytes) -> Any:
    """The request body as JSON (``{}`` when empty), or a clear 400."""
    if not body:
        return {}
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidRequest(
            f"this route maps a JSON request body, and this one is not: {e}"
        ) from None


def into_body(body: Any, values: dict[str, str], names: dict[str, str]) -> Any:
    """``body`` (a JSON object) with ``values[name]`` set at ``names[name]``."""
    if not names:
        return body
    if not isinstance(body, dict):
        raise InvalidRequest("this route adds fields to the JSON body, which must be an object")
    out = dict(body)
    for name, target in names.items():
        if name in values:
            out[target] = values[name]
    return out


def transform_event(t: RequestTransform, event: dict[str, Any]) -> dict[str, Any]:
    """The ``http`` event as the function should see it."""
    headers: dict[str, str] = event["headers"]
    headers = remove_headers(headers, t.remove_headers)
    headers = rename_headers(headers, t.rename_headers)
    headers = set_headers(headers, t.set_headers)
    out = {**event, "headers": headers}
    if t.path:
        out["path"] = rewrite_path(t.path, event["params"])
    if t.maps_body:
        body = json_body(event["body"])
        if t.body is not None:
            context = {
                "body": body,
                "params": event["params"],
                "query": event["query"],
                "headers": event["headers"],
                "method": event["method"],
                "path": event["path"],
                "auth": event.get("auth"),
            }
            body = render(t.body, context)
        body = into_body(body, event["query"], t.query_to_body)
        body = into_body(body, event["params"], t.params_to_body)
        out["body"] = json.dumps(body).encode()
        headers = remove_headers(headers, ("content-length",))
        out["headers"] = {**headers, "content-type": "application/json"}
    return out


# --- the response -------------------------------------------------------------------


def pick(value: Any, pointer: str) -> Any:
    """RFC 6901: what ``/a/0/b`` points at in ``value`` (None when nothing)."""
    for raw in pointer.split("/")[1:]:
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(value, dict):
            value = value.get(token)
        elif isinstance(value, list) and token.isdigit() and int(token) < len(value):
            value = value[int(token)]
        else:
            return None
    return value


def map_status(status: int, mapping: dict[int, int]) -> int:
    return mapping.get(status, status)


def transform_response(t: ResponseTransform, response: dict[str, Any]) -> dict[str, Any]:
    """The function's response (ABI form) as the caller should see it."""
    out = dict(response)
    raw = response.get("headers")
    headers = {str(k).lower(): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    headers = set_headers(remove_headers(headers, t.remove_headers), t.set_headers)
    out["headers"] = headers
    status = response.get("status", 200)
    if isinstance(status, int):
        out["status"] = map_status(status, t.status)
    if t.pick or t.wrap:
        body = _response_json(response)
        if t.pick:
            body = pick(body, t.pick)
        if t.wrap:
            body = {t.wrap: body}
        out["body"] = body
        out["headers"] = {**remove_headers(headers, ("content-type",))}
    return out


def _response_json(response: dict[str, Any]) -> Any:
    body = response.get("body", response.get("output"))
    if isinstance(body, bytes | str):
        if not body:
            return None
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    return body
