"""Declarative request and response transforms of a gateway policy (no eval, no code).

::

    request = { set_headers = { x-source = "api" }, remove_headers = ["cookie"],
                rename_headers = { x-old = "x-new" },
                path = "/v2/orders/{id}",            # rewrite; {param} from the route
                query_to_body = ["page"],            # or { page = "pageNumber" }
                params_to_body = { id = "orderId" },
                body = { orderId = "$.body.id", source = "api" } }   # a template
    response = { set_headers = { cache-control = "no-store" }, remove_headers = ["server"],
                 status = { "404" = 200 }, wrap = "data", pick = "/items/0" }

A template is any TOML value; a string ``"$.ROOT.a.b.0"`` is replaced by what that
path names in the request (ROOT: body, params, query, headers, method, path, auth),
null when absent; ``"$$…"`` is the literal ``"$…"``. ``pick`` is a JSON pointer
(RFC 6901) into the response's JSON body; ``wrap`` puts the body under one key.
``host/gateway/policies/transforms.py`` applies them.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from host.manifest.config_table import ConfigTable, quote_key

TEMPLATE_ROOTS = ("body", "params", "query", "headers", "method", "path", "auth")


class RequestTransform(Struct, frozen=True):
    """Changes to the request before the function sees it, in the order listed."""

    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: tuple[str, ...] = ()
    rename_headers: dict[str, str] = field(default_factory=dict)
    path: str = ""
    query_to_body: dict[str, str] = field(default_factory=dict)
    params_to_body: dict[str, str] = field(default_factory=dict)
    #: a template (see the module's docstring); None keeps the body
    body: Any = None

    @property
    def maps_body(self) -> bool:
        return bool(self.query_to_body or self.params_to_body or self.body is not None)


class ResponseTransform(Struct, frozen=True):
    """Changes to the function's response before the caller sees it."""

    set_headers: dict[str, str] = field(default_factory=dict)
    remove_headers: tuple[str, ...] = ()
    status: dict[int, int] = field(default_factory=dict)
    wrap: str = ""
    pick: str = ""


def read_request_transform(t: ConfigTable) -> RequestTransform:
    body = t.raw("body")
    if body is not None:
        _check_template(t, t.key("body"), body)
    path = t.string("path", "") or ""
    if path and not path.startswith("/"):
        t.error("path", f"a rewritten path starts with '/', got {path!r}")
    out = RequestTransform(
        set_headers=_lower_keys(t.str_map("set_headers")),
        remove_headers=_lower(strings(t, "remove_headers")),
        rename_headers={k.lower(): v.lower() for k, v in t.str_map("rename_headers").items()},
        path=path,
        query_to_body=_name_map(t, "query_to_body"),
        params_to_body=_name_map(t, "params_to_body"),
        body=body,
    )
    t.finish()
    return out


def read_response_transform(t: ConfigTable) -> ResponseTransform:
    status: dict[int, int] = {}
    for k, v in t.table("status").data.items():
        if not (str(k).isdigit() and 100 <= int(k) <= 599) or not (
            isinstance(v, int) and not isinstance(v, bool) and 100 <= v <= 599
        ):
            t.error("status", f"maps a status code to a status code, got {k!r} = {v!r}")
            continue
        status[int(k)] = v
    pick = t.string("pick", "") or ""
    if pick and not pick.startswith("/"):
        t.error("pick", f"a JSON pointer starts with '/', got {pick!r}")
    out = ResponseTransform(
        set_headers=_lower_keys(t.str_map("set_headers")),
        remove_headers=_lower(strings(t, "remove_headers")),
        status=status,
        wrap=t.string("wrap", "") or "",
        pick=pick,
    )
    t.finish()
    return out


def _check_template(t: ConfigTable, where: str, value: Any) -> None:
    if isinstance(value, str):
        if value.startswith("$") and not value.startswith("$$"):
            root = value[2:].split(".")[0] if value.startswith("$.") else ""
            if root not in TEMPLATE_ROOTS:
                t.problems.add(
                    where,
                    f"{value!r}: a path is '$.ROOT…' with ROOT one of "
                    f"{', '.join(TEMPLATE_ROOTS)} (write '$$' for a literal '$')",
                )
    elif isinstance(value, dict):
        for name, v in value.items():
            _check_template(t, f"{where}.{quote_key(name)}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_template(t, f"{where}[{i}]", v)


def _name_map(t: ConfigTable, k: str) -> dict[str, str]:
    v = t.data.get(k)
    if isinstance(v, list):
        return {n: n for n in strings(t, k)}
    return t.str_map(k)


def strings(t: ConfigTable, k: str) -> tuple[str, ...]:
    """A list of strings (``()`` when absent)."""
    v = t.raw(k)
    if v is None:
        return ()
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        t.error(k, f"expected a list of strings, got {v!r}")
        return ()
    return tuple(v)


def _lower(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(n.lower() for n in names)


def _lower_keys(m: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in m.items()}
