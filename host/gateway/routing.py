"""Matching a request's method and path to a function route, with ``{params}``.

The route table is rebuilt whenever the registry's generation changes, so a route
deployed through any worker is served by all of them.
"""

from __future__ import annotations

import re

from msgspec import Struct

from host.manifest.routes import Route

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(\.\.\.)?\}")


class Match(Struct, frozen=True):
    """A matched route and the path parameters it captured."""

    route: Route
    params: dict[str, str]


class RouteTable:
    """Compiled routes; answers a match, or which methods a path allows."""

    def __init__(self, routes: list[Route]) -> None:
        self._compiled = [(r, _compile(r.path)) for r in routes]

    def match(self, method: str, path: str) -> Match | list[str] | None:
        """The match; else the allowed methods when only the method differs; else None."""
        allowed: list[str] = []
        for route, pattern in self._compiled:
            m = pattern.fullmatch(path)
            if m is None:
                continue
            if "*" in route.methods or method in route.methods:
                return Match(route, m.groupdict())
            allowed.extend(route.methods)
        return sorted(set(allowed)) or None


def _compile(path: str) -> re.Pattern[str]:
    out, pos = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        rest = m.group(2) is not None
        out.append(f"(?P<{m.group(1)}>{'.*' if rest else '[^/]+'})")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out))
