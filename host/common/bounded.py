"""Decoding bytes that a stranger wrote (msgpack from guests, JSON from callers) with
bounds on what the decoded value may cost the host.

A msgpack byte can become a 60-byte Python object (an empty map is one byte), and a
JSON or msgpack value nested thousands deep breaks every recursive walk that later
reads it. So every decode of untrusted bytes goes through here: containers are
counted while they are built, in units of 8 bytes of host memory (a slot in a list or
map is one, a list or map itself eight), and the decode stops once the value costs
more than ``BASE_UNITS + UNITS_PER_BYTE * len(bytes)``: at most 16 bytes of host
memory per encoded byte, plus 64 KiB. A container longer than that is refused from
its header, before it is allocated; nesting deeper than ``MAX_DEPTH`` is refused.
The caller turns ``Unbounded`` into its own typed error (status ``bad_request`` to a
guest, 400 to an HTTP caller, ``AbiError`` for a response).
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

#: nesting allowed in a value from outside (JSON bodies, guest msgpack)
MAX_DEPTH = 64
#: what any value may cost, whatever its size (units of 8 bytes: 64 KiB)
BASE_UNITS = 8192
#: what each encoded byte may add (2 units: 16 bytes of host memory)
UNITS_PER_BYTE = 2
#: what a list or map costs besides its slots (a Python list or dict is ~64 bytes)
CONTAINER_UNITS = 8


class Unbounded(ValueError):
    """Bytes that do not decode, or whose value is over a decoding bound."""


def object_budget(size: int) -> int:
    """The units a value of ``size`` encoded bytes may cost once decoded."""
    return BASE_UNITS + UNITS_PER_BYTE * size


class _Counter:
    """Counts the objects of the containers an unpacker builds; stops it past a budget."""

    __slots__ = ("left",)

    def __init__(self, budget: int) -> None:
        self.left = budget

    def list_hook(self, value: list[Any]) -> list[Any]:
        self.left -= len(value) + CONTAINER_UNITS
        if self.left < 0:
            raise Unbounded("it holds too many small objects for its size")
        return value

    def pairs_hook(self, pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
        self.left -= 2 * len(pairs) + CONTAINER_UNITS
        if self.left < 0:
            raise Unbounded("it holds too many small objects for its size")
        try:
            return dict(pairs)
        except TypeError:  # a list or map as a map key
            raise Unbounded("a map key is a list or a map") from None


def unpack(raw: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """One msgpack value from ``raw``, within the bounds above; ``Unbounded`` if not.

    Strings must be UTF-8; map keys may be any scalar (never a list or map).
    """
    budget = object_budget(len(raw))
    counter = _Counter(budget)
    try:
        value = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=False,
            use_list=True,
            list_hook=counter.list_hook,
            object_pairs_hook=counter.pairs_hook,
            max_str_len=len(raw),
            max_bin_len=len(raw),
            max_ext_len=len(raw),
            max_array_len=budget,
            max_map_len=budget,
        )
    except Unbounded:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as e:
        raise Unbounded(f"it is not msgpack ({type(e).__name__}: {e})") from None
    check_depth(value, max_depth)
    return value


def check_depth(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """``Unbounded`` if lists and maps nest deeper than ``max_depth`` (no recursion)."""
    if not isinstance(value, list | dict):
        return
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > max_depth:
            raise Unbounded(f"it nests deeper than {max_depth} levels")
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, list | dict):
                stack.append((child, depth + 1))
        if isinstance(item, dict):
            for key in item:
                if isinstance(key, tuple):  # msgpack gives list keys as tuples
                    raise Unbounded("a map key is a list")


def loads_json(text: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON value from a caller, nested at most ``max_depth`` deep; ``Unbounded`` if
    it is not JSON or too deep (the message says which)."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise Unbounded(f"it nests deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise Unbounded(f"it is not JSON: {e}") from None
    if isinstance(value, list | dict):
        check_depth(value, max_depth)
    return value
