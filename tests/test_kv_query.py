"""Table indexes and ``kv_query`` at the services level, per backend.

An index kept exact through every write path (put, overwrite, delete, compare-and-set,
a failed invocation, a refused commit), queries by equality and range with paging and
reverse, an index added later back-filled, bad input refused with a typed error, and
two processes writing at once leaving every index equal to its table, both ways.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.errors import ConditionFailed, InvalidArgument
from host.services.indexes import encode
from host.services.interface import TableIndexes
from host.services.query import IndexQuery
from host.services.services import Services
from tests.conftest import ROOT, open_services


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def put(s: Services, table: str, key: str, value: Any, **cond: Any) -> int:
    e = s.begin("test")
    version = e.kv_put(table, key.encode(), msgpack.packb(value), **cond)
    assert e.commit()
    return version


def delete(s: Services, table: str, key: str, **cond: Any) -> bool:
    e = s.begin("test")
    existed = e.kv_delete(table, key.encode(), **cond)
    assert e.commit()
    return existed


def query(s: Services, table: str, index: str, limit: int = 1000, **bounds: Any) -> list[str]:
    """Every key the query returns, paging ``limit`` at a time through cursors."""
    reverse = bounds.pop("reverse", False)
    keys: list[str] = []
    after = None
    while True:
        with s.begin("test") as e:
            q = IndexQuery.of(table, e.kv_indexes(table), index, reverse=reverse, **bounds)
            if after is not None:
                after = q.after(q.cursor(after))  # through the cursor's bytes, as a guest
            items, more = e.kv_query(q, after, limit)
        keys += [k.decode() for _, k, _, _ in items]
        assert len(items) <= limit
        if not more:
            return keys
        after = items[-1][0]


def entries(s: Services, table: str, index: str) -> list[tuple[bytes, bytes]]:
    """Every ``(encoded value, key)`` of one index, in order."""
    with s.begin("test") as e:
        q = IndexQuery.of(table, e.kv_indexes(table), index)
        items, more = e.kv_query(q, None, 100_000)
    assert not more
    return [pos for pos, _, _, _ in items]


def rows(s: Services, table: str) -> dict[bytes, Any]:
    out: dict[bytes, Any] = {}
    cursor = b""
    while True:
        with s.begin("test") as e:
            items, nxt = e.kv_scan(table, cursor, None, 1000)
        out.update((k, msgpack.unpackb(v, strict_map_key=False)) for k, v, _ in items)
        if nxt is None:
            return out
        cursor = nxt


def assert_consistent(s: Services, table: str) -> int:
    """Every row has exactly its entries in every index, and every entry its row."""
    indexes = s.indexes.defined().get(table, {})
    table_rows = rows(s, table)
    for field, kind in indexes.items():
        want = sorted((encode(kind, v[field], field), k) for k, v in table_rows.items())
        assert entries(s, table, field) == want, f"index {field} differs from the table"
        for k, v in table_rows.items():  # and each row, found by its own value
            assert k.decode() in query(s, table, field, eq=v[field])
    return len(table_rows)


def test_the_catalog_is_the_typed_operation_of_the_protocol(services: Services) -> None:
    catalog: TableIndexes = services.indexes
    assert catalog.defined() == {}
    assert catalog.define({"orders": {"at": "int", "who": "string"}}) == {"orders": 0}
    assert catalog.defined() == {"orders": {"at": "int", "who": "string"}}


# --- maintained by every write ----------------------------------------------------------


def test_an_index_follows_put_overwrite_and_delete(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    put(services, "orders", "a", {"at": 30})
    put(services, "orders", "b", {"at": 10})
    put(services, "orders", "c", {"at": 20})
    assert query(services, "orders", "at") == ["b", "c", "a"]
    put(services, "orders", "b", {"at": 40, "note": "moved"})  # overwrite moves it
    assert query(services, "orders", "at") == ["c", "a", "b"]
    assert query(services, "orders", "at", eq=10) == []
    put(services, "orders", "c", {"at": 20, "other": 1})  # same value: one entry still
    assert query(services, "orders", "at", eq=20) == ["c"]
    assert delete(services, "orders", "a")
    assert query(services, "orders", "at") == ["c", "b"]
    assert_consistent(services, "orders")


def test_compare_and_set_and_conditional_delete_keep_the_index(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    v1 = put(services, "orders", "a", {"at": 1}, if_absent=True)
    put(services, "orders", "a", {"at": 2}, if_version=v1)
    with pytest.raises(ConditionFailed):  # stale version: refused when staged
        put(services, "orders", "a", {"at": 3}, if_version=v1)
    assert query(services, "orders", "at") == ["a"]
    assert query(services, "orders", "at", eq=2) == ["a"]

    # a CAS that passed when staged but lost at commit applies nothing, index included
    e = services.begin("test")
    e.kv_put("orders", b"a", msgpack.packb({"at": 9}), if_version=v1 + 1)
    put(services, "orders", "a", {"at": 5})  # another writer commits first
    with pytest.raises(ConditionFailed):
        e.commit()
    assert query(services, "orders", "at", eq=9) == []
    assert query(services, "orders", "at", eq=5) == ["a"]
    with pytest.raises(ConditionFailed):
        delete(services, "orders", "a", if_version=1)
    assert delete(services, "orders", "a", if_version=v1 + 2)
    assert query(services, "orders", "at") == []
    assert_consistent(services, "orders")


def test_a_failed_invocation_leaves_the_index_as_it_was(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    put(services, "orders", "a", {"at": 1})
    e = services.begin("test")
    e.kv_put("orders", b"a", msgpack.packb({"at": 7}))
    e.kv_put("orders", b"b", msgpack.packb({"at": 8}))
    e.kv_delete("orders", b"a")
    e.discard()  # what the platform does when the guest fails, traps or times out
    assert query(services, "orders", "at") == ["a"]
    assert query(services, "orders", "at", eq=1) == ["a"]
    assert_consistent(services, "orders")


def test_an_invocation_queries_its_own_staged_writes(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    for key, at in (("a", 1), ("b", 2), ("c", 3)):
        put(services, "orders", key, {"at": at})
    with services.begin("test") as e:
        e.kv_put("orders", b"b", msgpack.packb({"at": 10}))  # moves past c
        e.kv_put("orders", b"d", msgpack.packb({"at": 0}))  # new, first
        e.kv_delete("orders", b"a")
        q = IndexQuery.of("orders", e.kv_indexes("orders"), "at")
        items, more = e.kv_query(q, None, 2)
        assert [k for _, k, _, _ in items] == [b"d", b"c"] and more
        items, more = e.kv_query(q, items[-1][0], 2)
        assert [k for _, k, _, _ in items] == [b"b"] and not more
        assert msgpack.unpackb(items[0][2]) == {"at": 10}
        back = IndexQuery.of("orders", e.kv_indexes("orders"), "at", reverse=True)
        assert [k for _, k, _, _ in e.kv_query(back, None, 10)[0]] == [b"b", b"c", b"d"]
    assert query(services, "orders", "at") == ["a", "b", "c"]  # nothing committed


# --- queries -----------------------------------------------------------------------------


def test_ranges_equality_paging_and_reverse_on_int(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    values = [-(1 << 63), -5, -1, 0, 1, 5, 5, 5, 1 << 40, (1 << 63) - 1]
    for i, at in enumerate(values):
        put(services, "orders", f"k{i}", {"at": at})
    everything = [f"k{i}" for i in range(len(values))]  # values are sorted, keys too
    for limit in (1, 2, 3, 1000):
        assert query(services, "orders", "at", limit=limit) == everything
        assert query(services, "orders", "at", limit=limit, reverse=True) == everything[::-1]
        assert query(services, "orders", "at", limit=limit, eq=5) == ["k5", "k6", "k7"]
        assert query(services, "orders", "at", limit=limit, eq=5, reverse=True) == [
            "k7",
            "k6",
            "k5",
        ]
    assert query(services, "orders", "at", start=-1, end=5) == ["k2", "k3", "k4"]
    assert query(services, "orders", "at", start=-1, end=5, reverse=True) == ["k4", "k3", "k2"]
    assert query(services, "orders", "at", end=0) == ["k0", "k1", "k2"]
    assert query(services, "orders", "at", start=1 << 40) == ["k8", "k9"]
    assert query(services, "orders", "at", start=5, end=5) == []
    assert query(services, "orders", "at", start=6, end=2) == []
    assert query(services, "orders", "at", eq=4) == []


def test_string_and_bytes_order_bytewise(services: Services) -> None:
    services.indexes.define({"people": {"name": "string", "tag": "bytes"}})
    names = {"a": "b", "b": "ab", "c": "a", "d": "a\x00", "e": "é", "f": "z", "g": ""}
    for key, name in names.items():
        put(services, "people", key, {"name": name, "tag": name.encode()[::-1]})
    by_name = sorted(names, key=lambda k: (names[k].encode(), k))
    assert query(services, "people", "name", limit=2) == by_name
    assert query(services, "people", "name", start="a", end="b") == ["c", "d", "b"]
    assert query(services, "people", "name", eq="a") == ["c"]
    by_tag = sorted(names, key=lambda k: (names[k].encode()[::-1], k))
    assert query(services, "people", "tag", limit=3) == by_tag
    assert query(services, "people", "tag", eq=b"a\x00"[::-1]) == ["d"]


def test_a_cursor_serves_only_the_query_that_made_it(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int", "who": "string"}, "other": {"at": "int"}})
    for i in range(5):
        put(services, "orders", f"k{i}", {"at": i, "who": "x"})
        put(services, "other", f"k{i}", {"at": i})
    with services.begin("test") as e:
        specs = e.kv_indexes("orders")
        q = IndexQuery.of("orders", specs, "at", start=1, end=4)
        items, _ = e.kv_query(q, None, 1)
        cursor = q.cursor(items[0][0])
        assert q.after(cursor) == items[0][0]
        others = [
            IndexQuery.of("other", e.kv_indexes("other"), "at", start=1, end=4),
            IndexQuery.of("orders", specs, "at", start=0, end=4),
            IndexQuery.of("orders", specs, "at", start=1, end=4, reverse=True),
            IndexQuery.of("orders", specs, "who"),
        ]
        for other in others:
            with pytest.raises(InvalidArgument, match="not one this query"):
                other.after(cursor)
        forged = [
            b"",
            b"\xc1",
            cursor[:-1],
            msgpack.packb([1, cursor[2:10], b"x", b""]),
            msgpack.packb({"a": 1}),
            b"\x00" * 2000,
        ]
        for bad in forged:
            with pytest.raises(InvalidArgument):
                q.after(bad)
        # a position outside the query's own bounds, even with the right tag, is refused
        tag = msgpack.unpackb(cursor)[1]
        outside = msgpack.packb([1, tag, encode("int", 9, "x"), b"k9"])
        with pytest.raises(InvalidArgument):
            q.after(outside)


def test_bad_queries_are_invalid_arguments_that_say_what_to_do(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int", "who": "string", "raw": "bytes"}})
    with services.begin("test") as e:
        specs = e.kv_indexes("orders")
        with pytest.raises(InvalidArgument, match=r"no index 'missing'.*at \(int\)"):
            IndexQuery.of("orders", specs, "missing")
        with pytest.raises(InvalidArgument, match="no index"):
            IndexQuery.of("plain", e.kv_indexes("plain"), "at")
        with pytest.raises(InvalidArgument, match="'eq' cannot be given with"):
            IndexQuery.of("orders", specs, "at", eq=1, start=0)
        wrong: list[tuple[str, object]] = [
            ("at", "1"),
            ("at", 1.5),
            ("at", True),
            ("at", 1 << 63),
            ("at", -(1 << 63) - 1),
            ("who", b"x"),
            ("who", 1),
            ("who", "x" * 257),
            ("raw", "x"),
            ("raw", b"x" * 257),
        ]
        for index, bound in wrong:
            with pytest.raises(InvalidArgument):
                IndexQuery.of("orders", specs, index, start=bound)


def test_writes_that_lack_or_mistype_an_indexed_field_are_refused(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int", "who": "string"}})
    bad = {
        "not a map": [1, 2],
        "a scalar": 5,
        "no at": {"who": "x"},
        "at a string": {"at": "5", "who": "x"},
        "at a float": {"at": 5.0, "who": "x"},
        "at a bool": {"at": True, "who": "x"},
        "at nil": {"at": None, "who": "x"},
        "at too big": {"at": 1 << 64 - 1, "who": "x"},
        "who bytes": {"at": 1, "who": b"x"},
        "who too long": {"at": 1, "who": "é" * 129},
    }
    for pad in ({}, {"pad": "x" * 5000}):  # small values decode whole, large ones walk
        for case, value in bad.items():
            e = services.begin("test")
            packed = msgpack.packb({**value, **pad} if isinstance(value, dict) else value)
            with pytest.raises(InvalidArgument, match=f"table orders: the value of key b'{case}'"):
                e.kv_put("orders", case.encode(), packed)
            e.discard()
        twice = (
            b"\x84\xa2at\x01\xa3who\xa1x"
            + msgpack.packb("pad")
            + msgpack.packb(pad.get("pad", ""))
            + b"\xa2at\x02"
        )  # {at: 1, who: x, pad: …, at: 2}
        with pytest.raises(InvalidArgument, match="twice"):
            services.begin("test").kv_put("orders", b"dup", twice)
        big = {1: [2], b"at": "not the field", "at": 3, "who": "x", **pad}
        put(services, "orders", "keys", big)
        assert query(services, "orders", "at", eq=3) == ["keys"]
    with pytest.raises(InvalidArgument, match="got an array"):  # refused undecoded
        services.begin("test").kv_put("orders", b"a", msgpack.packb({"at": [0] * 100_000}))
    put(services, "plain", "k", [1, 2])  # a table without indexes takes any value
    put(services, "orders", "ok", {"who": "x", "at": -1, "extra": {"any": [1, 2]}})
    assert rows(services, "orders")[b"ok"] == {"who": "x", "at": -1, "extra": {"any": [1, 2]}}


# --- definitions -------------------------------------------------------------------------


def test_an_index_added_later_is_back_filled(services: Services) -> None:
    for i in range(250):
        put(services, "orders", f"k{i:03}", {"at": i % 7, "who": f"w{i % 3}"})
    assert services.indexes.define({"orders": {"at": "int"}}) == {"orders": 250}
    assert query(services, "orders", "at", eq=3) == [f"k{i:03}" for i in range(250) if i % 7 == 3]
    assert services.indexes.define({"orders": {"at": "int", "who": "string"}}) == {"orders": 250}
    assert_consistent(services, "orders")
    # removing drops the entries (writes no longer need the field); re-adding rebuilds
    assert services.indexes.define({"orders": {"who": "string"}}) == {"orders": 0}
    put(services, "orders", "k000", {"who": "w0"})
    with pytest.raises(InvalidArgument, match="k000"):
        services.indexes.define({"orders": {"at": "int", "who": "string"}})
    put(services, "orders", "k000", {"at": 0, "who": "w0"})
    assert services.indexes.define({"orders": {"at": "int", "who": "string"}}) == {"orders": 250}
    assert_consistent(services, "orders")
    # a type changes over rows of the new type: their entries are built anew
    services.indexes.define({"tags": {"t": "string"}})
    put(services, "tags", "x", {"t": "b"})
    services.indexes.define({})
    put(services, "tags", "x", {"t": b"b"})
    put(services, "tags", "y", {"t": b"a"})
    assert services.indexes.define({"tags": {"t": "bytes"}}) == {"tags": 2}
    assert query(services, "tags", "t") == ["y", "x"]
    assert services.indexes.defined() == {"tags": {"t": "bytes"}}


def test_a_back_fill_over_rows_that_do_not_fit_changes_nothing(services: Services) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    put(services, "orders", "good", {"at": 1})
    put(services, "loose", "a", {"at": 1})
    for key, value in (("b", {"at": "x"}), ("c", [1]), ("d", {})):
        put(services, "loose", key, value)
    with pytest.raises(InvalidArgument) as raised:
        services.indexes.define({"orders": {}, "loose": {"at": "int"}})
    message = str(raised.value)
    assert "b'b'" in message and "b'c'" in message and "b'd'" in message
    assert "fix or delete them" in message
    assert services.indexes.defined() == {"orders": {"at": "int"}}  # nothing changed
    assert query(services, "orders", "at") == ["good"]
    with pytest.raises(InvalidArgument, match="index name"):
        services.indexes.define({"orders": {"1bad": "int"}})
    with pytest.raises(InvalidArgument, match="expected one of"):
        services.indexes.define({"orders": {"at": "float"}})
    with pytest.raises(InvalidArgument, match="table name"):
        services.indexes.define({"no\x00pe": {"at": "int"}})


def test_dropping_an_index_of_one_table_leaves_the_neighbours(services: Services) -> None:
    # "a" and "a.b" share a byte prefix; "at" and "atx" too: a drop takes only its own
    services.indexes.define({"a": {"at": "int", "atx": "int"}, "a.b": {"at": "int"}})
    for t in ("a", "a.b"):
        for i in range(5):
            put(services, t, f"k{i}", {"at": i, "atx": -i})
    services.indexes.define({"a": {"atx": "int"}, "a.b": {"at": "int"}})
    assert query(services, "a", "atx") == [f"k{i}" for i in range(4, -1, -1)]
    assert query(services, "a.b", "at") == [f"k{i}" for i in range(5)]
    assert_consistent(services, "a")
    assert_consistent(services, "a.b")


# --- two processes --------------------------------------------------------------------------

WRITER = """
import random, sys
import msgpack
from host.errors import ConditionFailed
from tests.conftest import open_services

backend, path, seed, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
stop = __import__("pathlib").Path(sys.argv[5])
rnd = random.Random(seed)
s = open_services(backend, __import__("pathlib").Path(path), map_size=1 << 20)
i = 0
while i < n or not stop.exists():  # at least n commits, and on until told to stop
    if i >= 20 * n:
        raise SystemExit("never told to stop")
    i += 1
    e = s.begin("writer")
    for _ in range(rnd.randint(1, 3)):
        key = f"k{rnd.randrange(40):02}".encode()
        value = msgpack.packb({"at": rnd.randint(-50, 50), "who": rnd.choice("abcde") * 3})
        roll = rnd.random()
        try:
            if roll < 0.55:
                e.kv_put("orders", key, value)
            elif roll < 0.75:
                e.kv_delete("orders", key)
            else:
                found = e.kv_get("orders", key)
                if found is None:
                    e.kv_put("orders", key, value, if_absent=True)
                else:
                    e.kv_put("orders", key, value, if_version=found[1])
        except ConditionFailed:
            pass
    try:
        if rnd.random() < 0.15:
            e.discard()  # a failed invocation
        else:
            e.commit()
    except ConditionFailed:
        pass  # a compare-and-set lost to the other process: nothing applied
s.close()
print("done", flush=True)
"""


@pytest.mark.slow
def test_two_processes_writing_at_once_leave_every_index_equal_to_its_table(
    services: Services, backend: str, tmp_path: Path
) -> None:
    services.indexes.define({"orders": {"at": "int"}})
    path = str(tmp_path / "db")
    stop = tmp_path / "stop"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, backend, path, str(seed), "200", str(stop)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for seed in (1, 2)
    ]
    # meanwhile (the writers go on until told to stop): add an index, back-filled while
    # both write, and query
    try:
        deadline = time.monotonic() + 60
        while len(rows(services, "orders")) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        services.indexes.define({"orders": {"at": "int", "who": "string"}})
        rnd = random.Random(3)
        for _ in range(20):
            at = rnd.randint(-50, 50)
            # one page is one read: no key twice, in index order (across pages, each
            # its own read on either backend, a row a writer moves may show on two;
            # the index stays equal to its table, checked below)
            with services.begin("test") as e:
                q = IndexQuery.of("orders", e.kv_indexes("orders"), "at", start=at)
                items, _ = e.kv_query(q, None, 7)
            keys = [k for _, k, _, _ in items]
            assert len(keys) == len(set(keys))
            entries_read = [entry for entry, _, _, _ in items]
            assert entries_read == sorted(entries_read)
    finally:
        stop.touch()
    for w in writers:
        out, err = w.communicate(timeout=180)
        assert w.returncode == 0, err.decode()
        assert out.strip() == b"done"
    assert assert_consistent(services, "orders") > 0


def test_a_page_stops_reading_at_its_byte_budget(services: Services) -> None:
    services.indexes.define({"big": {"at": "int"}})
    pad = "x" * 300_000
    for i in range(8):
        put(services, "big", f"k{i}", {"at": i, "pad": pad})
    with services.begin("test") as e:
        q = IndexQuery.of("big", e.kv_indexes("big"), "at")
        items, more = e.kv_query(q, None, 1000, max_bytes=1_000_000)
        assert [k for _, k, _, _ in items] == [b"k0", b"k1", b"k2"] and more
        items, more = e.kv_query(q, items[-1][0], 1000, max_bytes=100)  # one at least
        assert [k for _, k, _, _ in items] == [b"k3"] and more
        e.kv_put("big", b"k9", msgpack.packb({"at": 9, "pad": pad}))  # the staged path too
        items, more = e.kv_query(q, None, 1000, max_bytes=1_000_000)
        assert len(items) == 3 and more
        scanned, cursor = e.kv_scan("big", b"", None, 1000, max_bytes=1_000_000)
        assert [k for k, _, _ in scanned] == [b"k0", b"k1", b"k2"] and cursor == b"k3"
