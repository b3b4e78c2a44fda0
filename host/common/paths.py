"""The path syntax that feeds a step's input from the run's state, without ``eval``.

A path is a string starting with ``$``: ``$input`` (the workflow's input),
``$input.orderId``, ``$validateOrder.output.orderId`` (a step's output),
``$processPayment.error.kind`` (a step's error), ``$error`` (the error that sent the
run to a handler). Segments are map keys, or list indexes written as numbers.
Anything else in an input template is a literal value.
"""

from __future__ import annotations

import re
from typing import Any

SEGMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$|^\d+$")
_MISSING = object()


class PathError(ValueError):
    """A path that cannot be parsed."""


def parse(path: str) -> tuple[str, ...]:
    if not path.startswith("$") or len(path) < 2:
        raise PathError(f"{path!r}: a path starts with '$', e.g. '$input.orderId'")
    parts = tuple(path[1:].split("."))
    for p in parts:
        if not SEGMENT.match(p):
            raise PathError(f"{path!r}: segment {p!r} is not a name or an index")
    return parts


def is_path(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$")


def _walk(parts: tuple[str, ...], state: dict[str, Any]) -> Any:
    value: Any = state
    for p in parts:
        if isinstance(value, dict) and p in value:
            value = value[p]
        elif isinstance(value, list) and p.isdigit() and int(p) < len(value):
            value = value[int(p)]
        else:
            return _MISSING
    return value


def resolve(parts: tuple[str, ...], state: dict[str, Any]) -> Any:
    """The value at ``parts`` in ``state`` (``{"input": …, "error": …, step: {…}}``);
    None when any segment is missing."""
    value = _walk(parts, state)
    return None if value is _MISSING else value


def exists(parts: tuple[str, ...], state: dict[str, Any]) -> bool:
    return _walk(parts, state) is not _MISSING


def render(template: Any, state: dict[str, Any]) -> Any:
    """A step's input: paths replaced by their values, everything else as written."""
    if is_path(template):
        return resolve(parse(template), state)
    if isinstance(template, dict):
        return {k: render(v, state) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, state) for v in template]
    return template


def paths_in(template: Any) -> list[str]:
    """Every path a template uses (for validation at load)."""
    if is_path(template):
        return [template]
    if isinstance(template, dict):
        return [p for v in template.values() for p in paths_in(v)]
    if isinstance(template, list):
        return [p for v in template for p in paths_in(v)]
    return []
