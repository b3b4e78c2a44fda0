"""The event bus's outbox on real LMDB: published events and storage changes recorded
in the commit that caused them, in order, with stable ids; nothing for a failed one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from host.errors import ConditionFailed
from host.services.services import Services
from tests.conftest import open_services


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def records(s: Services) -> list[dict[str, object]]:
    with s.storage.read() as txn:
        return [r for _, r in s.outbox.after(txn, 0, 1000)]


def test_publish_records_the_event(services: Services) -> None:
    e = services.begin("validate-order")
    event_id = e.event_publish("order.validated", msgpack.packb({"orderId": "o-1"}))
    assert records(services) == []  # staged, not yet committed
    e.commit()
    [r] = records(services)
    assert r["id"] == event_id and str(event_id).startswith("evt-")
    assert (r["kind"], r["topic"], r["source"]) == ("event", "order.validated", "validate-order")
    assert msgpack.unpackb(r["payload"]) == {"orderId": "o-1"}  # type: ignore[arg-type]
    assert isinstance(r["time_ms"], int)


def test_records_keep_commit_order_with_increasing_sequence(services: Services) -> None:
    for i in range(5):
        e = services.begin("f")
        e.event_publish("t.x", msgpack.packb(i))
        e.blob_put("b", f"k{i}".encode(), b"data", "text/plain", {})
        e.commit()
    with services.storage.read() as txn:
        found = services.outbox.after(txn, 0, 100)
        page = services.outbox.after(txn, found[3][0], 2)
    assert [r["kind"] for _, r in found] == ["storage", "event"] * 5
    assert [msgpack.unpackb(r["payload"]) for _, r in found if r["kind"] == "event"] == [
        0,
        1,
        2,
        3,
        4,
    ]
    seqs = [seq for seq, _ in found]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10
    assert [seq for seq, _ in page] == seqs[4:6]
    ids = [r["id"] for _, r in found]
    assert len(set(ids)) == 10


def test_blob_writes_record_storage_changes(services: Services) -> None:
    e = services.begin("f")
    info = e.blob_put("uploads", b"a/b.png", b"png!", "image/png", {})
    e.commit()
    e = services.begin("f")
    e.blob_delete("uploads", b"a/b.png")
    e.blob_delete("uploads", b"never-there")  # no object, no record
    e.commit()
    put, delete = records(services)
    assert {k: put[k] for k in ("kind", "bucket", "key", "op", "size", "content_type")} == {
        "kind": "storage",
        "bucket": "uploads",
        "key": b"a/b.png",
        "op": "put",
        "size": 4,
        "content_type": "image/png",
    }
    assert put["etag"] == info.etag and put["time_ms"] == info.modified_ms
    assert (delete["op"], delete["key"]) == ("delete", b"a/b.png")
    assert "size" not in delete and "etag" not in delete


def test_one_record_per_object_per_commit(services: Services) -> None:
    e = services.begin("f")
    e.blob_put("b", b"k", b"1", "text/plain", {})
    e.blob_put("b", b"k", b"22", "text/plain", {})
    e.blob_put("b", b"gone", b"x", "text/plain", {})
    e.blob_delete("b", b"gone")  # never committed: no put, no delete
    e.commit()
    [r] = records(services)
    assert (r["key"], r["size"]) == (b"k", 2)


def test_failed_commit_records_nothing(services: Services) -> None:
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1), if_absent=True)
    e.event_publish("x", msgpack.packb(1))
    e.blob_put("b", b"k", b"1", "text/plain", {})
    other = services.begin("g")
    other.kv_put("t", b"k", msgpack.packb(2))
    other.commit()
    with pytest.raises(ConditionFailed):
        e.commit()
    assert records(services) == []


def test_trim_keeps_numbering(services: Services) -> None:
    for i in range(3):
        e = services.begin("f")
        e.event_publish("t", msgpack.packb(i))
        e.commit()
    with services.storage.read() as txn:
        last = services.outbox.after(txn, 0, 10)[-1][0]
    assert services.storage.write(lambda txn: services.outbox.trim(txn, last)) == 3
    e = services.begin("f")
    e.event_publish("t", msgpack.packb(3))
    e.commit()
    with services.storage.read() as txn:
        [(seq, _)] = services.outbox.after(txn, 0, 10)
    assert seq == last + 1
