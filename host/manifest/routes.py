"""HTTP routes as an app declares them: methods, a path pattern, the function to run.

Read from ``[[routes]]`` of nimbus.toml and from the admin API's route list, checked
the same way: a path starts with ``/``, stays out of ``/_admin`` and ``/_console`` (the
admin API's and the console's), and has parameters only as whole segments, ``{name}``
(one segment) or ``{rest...}`` (the rest of the path, last only), each name once. Two
routes collide when a method both accept meets the same path shape (``/a/{x}`` and
``/a/{y}``): the second could never be reached. ``host/gateway/routing.py`` does the
matching at request time. ``policies`` names ``[gateway.policies.NAME]`` tables
(``host/manifest/gateway.py``).
"""

from __future__ import annotations

import re
from typing import Any

from msgspec import Struct

from host.manifest.config_table import ConfigTable, Problems

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

_PARAM = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}$")
_PATH_CHARS = re.compile(r"^[A-Za-z0-9\-._~!$&'()*+,;=:@%/{}]*$")


class Route(Struct, frozen=True):
    """An HTTP route: methods ("*" for any), a path pattern, the function it runs."""

    methods: tuple[str, ...]
    path: str
    function: str
    #: a workflow to start instead (the route answers 202 with the run)
    workflow: str = ""
    #: the gateway policies it applies (None: the app's default policies)
    policies: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"methods": list(self.methods), "path": self.path}
        if self.workflow:
            d["workflow"] = self.workflow
        else:
            d["function"] = self.function
        if self.policies is not None:
            d["policies"] = list(self.policies)
        return d

    def shape(self) -> tuple[str, ...]:
        """The path's segments with parameter names erased: two routes of one shape match
        the same request paths."""
        return tuple(
            ("{}..." if m.group(2) else "{}") if (m := _PARAM.match(seg)) else seg
            for seg in self.path.split("/")[1:]
        )

    def overlaps(self, other: Route) -> bool:
        """Would one request be claimed by both routes (a shared method, same shape)?"""
        shared = "*" in self.methods or "*" in other.methods
        return (shared or bool(set(self.methods) & set(other.methods))) and (
            self.shape() == other.shape()
        )


def route_from_dict(data: dict[str, Any], where: str = "route") -> Route:
    """A ``Route`` from a JSON/TOML mapping (``to_dict()`` form or as in ``[[routes]]``)."""
    problems = Problems(where)
    route = read_route(ConfigTable(data, "", problems))
    problems.raise_if_any()
    return route


def read_route(t: ConfigTable) -> Route:
    methods = _methods(t)
    path = t.string("path", required=True) or ""
    workflow = t.string("workflow", "") or ""
    function = t.string("function", required=not workflow) or ""
    if function and workflow:
        t.error("workflow", "a route runs a function or starts a workflow, not both")
    policies = _policies(t)
    t.finish()
    if path:
        _check_path(t, path)
    return Route(methods, path, function, workflow, policies)


def _policies(t: ConfigTable) -> tuple[str, ...] | None:
    raw = t.raw("policies")
    if raw is None:
        return None
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        t.error(
            "policies", f"expected a list of policy names ([gateway.policies.NAME]), got {raw!r}"
        )
        return None
    return tuple(raw)


def _methods(t: ConfigTable) -> tuple[str, ...]:
    if t.has("method") and t.has("methods"):
        t.problems.add(t.where, "has both 'method' and 'methods'; give one")
    key = "methods" if t.has("methods") else "method"
    raw = t.raw(key)
    t.used.update({"method", "methods"})
    expected = f"a method ({', '.join(METHODS)}), a list of them, or '*'"
    if raw is None:
        return ("*",)
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(m, str) for m in names):
        t.error(key, f"expected {expected}, got {raw!r}")
        return ("*",)
    methods: list[str] = []
    for m in (n.upper() for n in names):
        if m != "*" and m not in METHODS:
            t.error(key, f"expected {expected}, got {m!r}")
        elif m not in methods:
            methods.append(m)
    return ("*",) if "*" in methods or not methods else tuple(methods)


def _check_path(t: ConfigTable, path: str) -> None:
    def bad(message: str) -> None:
        t.error("path", f"{message} (in {path!r})")

    if not path.startswith("/"):
        bad("a route path must start with '/'")
        return
    if path == "/_admin" or path.startswith("/_admin/"):
        bad("/_admin is reserved for the admin API")
    if path == "/_console" or path.startswith("/_console/"):
        bad("/_console is reserved for the web console")
    if not _PATH_CHARS.match(path):
        bad("a route path holds only URL path characters (no spaces, '?' or '#')")
    segments = path.split("/")[1:]
    seen: set[str] = set()
    for i, seg in enumerate(segments):
        if not seg and i != len(segments) - 1:
            bad("empty segment ('//')")
        if "{" not in seg and "}" not in seg:
            continue
        pm = _PARAM.match(seg)
        if not pm:
            bad(f"{seg!r}: a parameter is a whole segment, '{{name}}' or '{{name...}}'")
        elif pm.group(1) in seen:
            bad(f"parameter {pm.group(1)!r} appears twice")
        elif pm.group(2) and i != len(segments) - 1:
            bad(f"{seg!r} captures the rest of the path, so it must be the last segment")
        else:
            seen.add(pm.group(1))


def check_collisions(routes: list[tuple[str, Route]], problems: Problems) -> None:
    for i, (where, a) in enumerate(routes):
        for other, b in routes[:i]:
            if a.overlaps(b):
                problems.add(
                    where,
                    f"{'/'.join(a.methods)} {a.path} collides with {other} "
                    f"({'/'.join(b.methods)} {b.path}): same method and path shape; "
                    "one of them would never be reached; change one's path or method",
                )


def routes_from_list(items: Any, where: str = "route table") -> list[Route]:
    """Routes from a JSON list (the admin API's route table), each checked as in
    ``[[routes]]`` and all against each other for collisions."""
    problems = Problems(where)
    if not isinstance(items, list):
        problems.add("routes", f"expected a list of routes, got {type(items).__name__}")
        problems.raise_if_any()
    pairs = [
        (f"routes[{i}]", read_route(ConfigTable(d, f"routes[{i}]", problems)))
        for i, d in enumerate(items)
    ]
    check_collisions(pairs, problems)
    problems.raise_if_any()
    return [r for _, r in pairs]
