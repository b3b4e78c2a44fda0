"""The Python runtime's response encoder (guest_sdk/python/nimbus/_pack.py): byte for
byte what msgpack's own pure-Python Packer (the one the guest has) makes of the same
value, and ``Unsupported`` for every value it leaves to msgpack."""

from __future__ import annotations

import math
import sys
from typing import Any

import msgpack
import msgpack.fallback
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_sdk_auth_events import sdk

pack = sdk("_pack")


def reference(value: Any) -> bytes:
    out: bytes = msgpack.fallback.Packer(use_bin_type=True).pack(value)
    return out


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary()
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=20)
        | st.lists(inner, max_size=5).map(tuple)
        | st.dictionaries(st.text() | st.integers(-300, 300), inner, max_size=20)
    ),
    max_leaves=60,
)

#: every boundary of every length and integer encoding
EDGES: list[Any] = [
    *(n for e in (0x20, 0x80, 0x100, 0x8000, 0x10000, 2**31, 2**32, 2**63) for n in (e - 1, e)),
    *(-n for e in (0x20, 0x80, 0x8000, 2**31) for n in (e, e + 1)),
    -(2**63),
    2**64 - 1,
    *("x" * n for n in (0, 31, 32, 255, 256, 65535, 65536)),
    *(b"y" * n for n in (0, 255, 256, 65535, 65536)),
    *([0] * n for n in (0, 15, 16, 65535, 65536)),
    *({i: None for i in range(n)} for n in (0, 15, 16, 65536)),
    bytearray(b"ab"),
    ("t", 1),
    -0.0,
    math.inf,
    1.5,
    "é€😀",
    {"status": 200, "headers": {"content-type": "text/plain"}, "body": b"hello\n"},
]


@pytest.mark.parametrize("value", EDGES, ids=lambda v: f"{type(v).__name__}")
def test_edges_match_msgpack(value: Any) -> None:
    assert pack.packb(value) == reference(value)


@settings(max_examples=400, deadline=None)
@given(values)
def test_any_value_matches_msgpack(value: Any) -> None:
    encoded = pack.packb(value)
    assert encoded == reference(value)
    assert msgpack.unpackb(encoded, raw=False, strict_map_key=False) == msgpack.unpackb(
        reference(value), raw=False, strict_map_key=False
    )


class Text(str):
    pass


@pytest.mark.parametrize(
    "value",
    [
        {1, 2},
        2**64,
        -(2**63) - 1,
        Text("a subclass"),
        {"inner": memoryview(b"x")},
        "\ud800",  # a lone surrogate: not UTF-8
        [[[[["deep"]]]]],
    ],
    ids=["set", "big-int", "small-int", "subclass", "memoryview", "surrogate", "deep"],
)
def test_what_it_leaves_to_msgpack(value: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    if value == [[[[["deep"]]]]]:
        monkeypatch.setattr(pack, "NEST_LIMIT", 3)
    with pytest.raises(pack.Unsupported):
        pack.packb(value)


def test_nesting_limit_is_msgpacks() -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(10_000)  # both encoders recurse once per level
    try:
        _check_nesting_limit()
    finally:
        sys.setrecursionlimit(limit)


def _check_nesting_limit() -> None:
    value: Any = None
    for _ in range(pack.NEST_LIMIT):
        value = [value]
    assert pack.packb(value) == reference(value)  # as deep as msgpack goes
    with pytest.raises(pack.Unsupported):
        pack.packb([value])
    with pytest.raises(ValueError, match="recursion limit"):
        reference([value])
