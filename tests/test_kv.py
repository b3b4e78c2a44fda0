"""Tables on real LMDB: get, put, delete, key order, scans with pages, versions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from host.errors import InvalidArgument
from host.services.keys import MAX_KEY_BYTES, check_key, check_name, successor
from host.services.services import Services
from tests.conftest import open_services


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def put(s: Services, table: str, key: bytes, value: object) -> int:
    e = s.begin("test")
    version = e.kv_put(table, key, msgpack.packb(value))
    assert e.commit()
    return version


def get(s: Services, table: str, key: bytes) -> tuple[object, int] | None:
    with s.begin("test") as e:
        found = e.kv_get(table, key)
    return None if found is None else (msgpack.unpackb(found[0]), found[1])


def scan_all(s: Services, table: str, start: bytes, end: bytes | None, limit: int) -> list[bytes]:
    keys: list[bytes] = []
    cursor: bytes | None = start
    while cursor is not None:
        with s.begin("test") as e:
            items, cursor = e.kv_scan(table, cursor, end, limit)
        assert len(items) <= limit
        keys += [k for k, _, _ in items]
    return keys


def test_put_get_delete(services: Services) -> None:
    assert get(services, "t", b"k") is None
    assert put(services, "t", b"k", {"a": [1, 2]}) == 1
    assert get(services, "t", b"k") == ({"a": [1, 2]}, 1)
    e = services.begin("test")
    assert e.kv_delete("t", b"k") is True
    assert e.kv_delete("t", b"missing") is False
    e.commit()
    assert get(services, "t", b"k") is None


def test_values_pass_through_as_raw_msgpack(services: Services) -> None:
    raw = msgpack.packb({"nested": {"x": b"\x00\xff"}, "n": 2**40}, use_bin_type=True)
    e = services.begin("test")
    e.kv_put("t", b"k", raw)
    e.commit()
    with services.begin("test") as e:
        assert e.kv_get("t", b"k") == (raw, 1)


def test_tables_are_separate(services: Services) -> None:
    put(services, "a", b"k", 1)
    put(services, "a.b", b"k", 2)
    assert get(services, "a", b"k") == (1, 1)
    assert get(services, "a.b", b"k") == (2, 1)
    assert scan_all(services, "a", b"", None, 10) == [b"k"]


def test_version_grows_with_every_committed_write(services: Services) -> None:
    assert [put(services, "t", b"k", i) for i in range(4)] == [1, 2, 3, 4]
    assert get(services, "t", b"k") == (3, 4)


def test_version_keeps_growing_across_a_delete(services: Services) -> None:
    """A compare-and-set that read version 2 must not match a re-created key (ABA)."""
    put(services, "t", b"k", "a")
    put(services, "t", b"k", "b")
    e = services.begin("test")
    e.kv_delete("t", b"k")
    e.commit()
    assert put(services, "t", b"k", "c") == 3
    assert put(services, "t", b"other", "x") == 3  # above every version the table deleted
    assert get(services, "t", b"k") == ("c", 3)


def test_keys_order_bytewise_shortest_first(services: Services) -> None:
    keys = [b"b", b"a\x00", b"ab", b"a", b"\xff", b"A", b"a\xff", b"aa"]
    for k in keys:
        put(services, "t", k, 0)
    assert scan_all(services, "t", b"", None, 3) == sorted(keys)
    assert sorted(keys)[:4] == [b"A", b"a", b"a\x00", b"aa"]


def test_scan_range_and_pages(services: Services) -> None:
    for i in range(25):
        put(services, "t", f"k{i:02d}".encode(), i)
    with services.begin("test") as e:
        items, cursor = e.kv_scan("t", b"k05", b"k10", 100)
    assert [k for k, _, _ in items] == [f"k{i:02d}".encode() for i in range(5, 10)]
    assert [msgpack.unpackb(v) for _, v, _ in items] == list(range(5, 10))
    assert cursor is None
    with services.begin("test") as e:
        items, cursor = e.kv_scan("t", b"", None, 10)
    assert len(items) == 10 and cursor == b"k10"
    assert scan_all(services, "t", b"", None, 7) == [f"k{i:02d}".encode() for i in range(25)]


def test_scan_by_prefix(services: Services) -> None:
    for k in (b"user/1", b"user/2", b"user0", b"users", b"usa"):
        put(services, "t", k, 0)
    assert scan_all(services, "t", b"user/", successor(b"user/"), 1) == [b"user/1", b"user/2"]
    assert successor(b"a\xff\xff") == b"b" and successor(b"\xff") is None


def test_key_and_name_rules() -> None:
    assert check_key("clé") == "clé".encode()
    assert check_key(b"\x00") == b"\x00"
    for bad in (b"", "x" * (MAX_KEY_BYTES + 1), 7):
        with pytest.raises(InvalidArgument):
            check_key(bad)
    assert check_name("table", "orders-2.v1") == "orders-2.v1"
    for name in ("", "a\x00b", "-x", "a/b", "x" * 129, None):
        with pytest.raises(InvalidArgument):
            check_name("table", name)
