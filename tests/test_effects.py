"""Staged effects on real LMDB: read-your-own-writes, conditions checked twice,
one transaction per commit, discard, idempotency, and no writer held while staging."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.errors import ConditionFailed
from host.services.interface import UnitOfWork
from host.services.services import Services
from tests.conftest import open_services


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def put(s: Services, table: str, key: bytes, value: object) -> None:
    e = s.begin("test")
    e.kv_put(table, key, msgpack.packb(value))
    assert e.commit()


def committed(s: Services, table: str, key: bytes) -> object:
    with s.begin("test") as e:
        found = e.kv_get(table, key)
    return None if found is None else msgpack.unpackb(found[0])


def scan(e: Any, table: str, start: bytes = b"", end: bytes | None = None) -> list[Any]:
    out: list[Any] = []
    cursor: bytes | None = start
    while cursor is not None:
        items, cursor = e.kv_scan(table, cursor, end, 2)
        out += [(k, msgpack.unpackb(v)) for k, v, _ in items]
    return out


def test_reads_see_the_invocations_own_writes(services: Services) -> None:
    put(services, "t", b"k", "old")
    e = services.begin("f")
    assert e.kv_put("t", b"k", msgpack.packb("new")) == 2
    assert e.kv_get("t", b"k") == (msgpack.packb("new"), 2)
    e.kv_delete("t", b"k")
    assert e.kv_get("t", b"k") is None
    assert committed(services, "t", b"k") == "old"  # nobody else sees staged writes
    e.discard()


def test_scans_merge_staged_writes_over_committed_data(services: Services) -> None:
    for k in (b"a", b"c", b"e", b"g"):
        put(services, "t", k, k.decode())
    e = services.begin("f")
    e.kv_put("t", b"b", msgpack.packb("B"))  # new, between committed keys
    e.kv_put("t", b"e", msgpack.packb("E"))  # overrides a committed key
    e.kv_delete("t", b"c")  # hides a committed key
    e.kv_put("t", b"h", msgpack.packb("H"))  # new, after every committed key
    e.kv_put("other", b"d", msgpack.packb("x"))  # another table: not in this scan
    expected = [(b"a", "a"), (b"b", "B"), (b"e", "E"), (b"g", "g"), (b"h", "H")]
    assert scan(e, "t") == expected  # in pages of 2, across staged and committed keys
    assert scan(e, "t", b"b", b"g") == expected[1:3]
    items, _ = e.kv_scan("t", b"", None, 10)
    assert [v for _, _, v in items] == [1, 1, 2, 1, 1]  # e's version once committed
    e.commit()
    with services.begin("f") as after:
        assert scan(after, "t") == expected


def test_blob_reads_see_staged_writes(services: Services) -> None:
    e = services.begin("f")
    e.blob_put("b", b"x", b"hello world", "text/plain", {"a": "1"})
    found = e.blob_get("b", b"x", 6, 11)
    assert found is not None and found[0] == b"world"
    head = e.blob_head("b", b"x")
    assert head is not None and head.metadata == {"a": "1"}
    assert [i.key for i in e.blob_list("b", b"", b"", 10)[0]] == [b"x"]
    with services.begin("g") as other:
        assert other.blob_head("b", b"x") is None
    e.blob_delete("b", b"x")
    assert e.blob_get("b", b"x") is None and e.blob_list("b", b"", b"", 10)[0] == []
    e.discard()


def test_if_absent(services: Services) -> None:
    e = services.begin("f")
    assert e.kv_put("t", b"k", msgpack.packb(1), if_absent=True) == 1
    with pytest.raises(ConditionFailed, match="exists"):
        e.kv_put("t", b"k", msgpack.packb(2), if_absent=True)  # its own staged write counts
    e.commit()
    with pytest.raises(ConditionFailed):
        services.begin("g").kv_put("t", b"k", msgpack.packb(3), if_absent=True)


def test_if_version_match_and_mismatch(services: Services) -> None:
    put(services, "t", b"k", 0)
    e = services.begin("f")
    with pytest.raises(ConditionFailed, match="version 1, not 7"):
        e.kv_put("t", b"k", msgpack.packb(1), if_version=7)
    assert e.kv_put("t", b"k", msgpack.packb(1), if_version=1) == 2
    assert e.commit()
    assert committed(services, "t", b"k") == 1
    e = services.begin("f")
    with pytest.raises(ConditionFailed):
        e.kv_delete("t", b"k", if_version=1)
    assert e.kv_delete("t", b"k", if_version=2) is True
    e.commit()
    assert committed(services, "t", b"k") is None


def test_condition_rechecked_at_commit(services: Services) -> None:
    put(services, "t", b"k", 0)
    mine = services.begin("me")
    assert mine.kv_put("t", b"k", msgpack.packb(1), if_version=1) == 2
    mine.kv_put("t", b"other", msgpack.packb("x"))
    mine.queue_send("q", msgpack.packb("side effect"))
    put(services, "t", b"k", 99)  # another invocation commits first
    with pytest.raises(ConditionFailed, match="changed"):
        mine.commit()
    assert committed(services, "t", b"k") == 99
    assert committed(services, "t", b"other") is None  # the whole commit failed
    with services.storage.read() as txn:
        assert services.queues.peek(txn, "q", 10) == []


def test_if_absent_conflict_detected_at_commit(services: Services) -> None:
    first, second = services.begin("a"), services.begin("b")
    first.kv_put("t", b"lock", msgpack.packb("a"), if_absent=True)
    second.kv_put("t", b"lock", msgpack.packb("b"), if_absent=True)
    assert second.commit()
    with pytest.raises(ConditionFailed):
        first.commit()
    assert committed(services, "t", b"lock") == "b"


def test_discard_leaves_nothing(services: Services) -> None:
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1))
    e.blob_put("b", b"k", b"data", "text/plain", {})
    e.queue_send("q", msgpack.packb(1))
    e.event_publish("topic", msgpack.packb(1))
    e.discard()
    assert e.commit()  # nothing left to apply
    assert committed(services, "t", b"k") is None
    with services.storage.read() as txn:
        assert services.blobs.head(txn, "b", b"k") is None
        assert services.queues.peek(txn, "q", 10) == []
        assert services.outbox.after(txn, 0, 10) == []


class _Extra:
    """Commit work: counts its runs, records a run named ``key``, may fail after."""

    def __init__(self, ran: list[int], key: str = "", fail: bool = False) -> None:
        self.ran, self.key, self.fail = ran, key, fail

    def apply(self, work: UnitOfWork) -> None:
        self.ran.append(1)
        if self.key:
            work.runs.put({"id": self.key})
        if self.fail:
            raise RuntimeError("the ack failed")


def test_idempotent_commit_applies_once_but_runs_extra(services: Services) -> None:
    ran: list[int] = []
    results = []
    for _ in range(2):
        e = services.begin("f")
        e.kv_put("counter", b"n", msgpack.packb(len(ran)))
        e.queue_send("out", msgpack.packb("side effect"))
        results.append(e.commit(extra=_Extra(ran), idempotency_id="evt-1"))
    assert results == [True, False] and len(ran) == 2
    with services.storage.read() as txn:
        assert len(services.queues.peek(txn, "out", 10)) == 1
        assert services.tables.get(txn, "counter", b"n") == (msgpack.packb(0), 1)
        assert services.idempotency.seen(txn, "evt-1")


def test_a_batch_is_applied_once_if_any_of_its_ids_was(services: Services) -> None:
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1))
    assert e.commit(idempotency_id=["m-1", "m-2"])
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(2))
    assert e.commit(idempotency_id=["m-2", "m-3"]) is False
    assert committed(services, "t", b"k") == 1


def test_extra_work_commits_or_fails_with_the_effects(services: Services) -> None:
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1))
    e.commit(extra=_Extra([], "acked"))
    assert services.runs.get("acked") == {"id": "acked"}

    e = services.begin("f")
    e.kv_put("t", b"k2", msgpack.packb(2))
    with pytest.raises(RuntimeError):
        e.commit(extra=_Extra([], "half", fail=True))
    assert committed(services, "t", b"k2") is None
    assert services.runs.get("half") is None


def test_no_write_transaction_is_held_while_staging(services: Services, backend: str) -> None:
    """While one invocation has staged writes and an open snapshot, another thread
    commits at once (it would block on LMDB's writer lock otherwise). On LMDB the
    invocation keeps its snapshot; on PostgreSQL each read sees the latest commits
    (no connection is pinned while a guest runs; conditions are checked at commit)."""
    e = services.begin("slow")
    e.kv_put("t", b"a", msgpack.packb(1))
    assert e.kv_get("t", b"a") is not None
    done = threading.Event()

    def other() -> None:
        put(services, "t", b"b", 2)
        done.set()

    t = threading.Thread(target=other)
    t.start()
    t.join(timeout=60)
    assert done.is_set()
    seen = e.kv_get("t", b"b")
    assert seen is None if backend == "lmdb" else seen is not None
    e.commit()
    assert committed(services, "t", b"a") == 1 and committed(services, "t", b"b") == 2


def test_read_only_invocation_commits_without_writing(services: Services) -> None:
    put(services, "t", b"k", 1)
    e = services.begin("f")
    e.kv_get("t", b"k")
    e.kv_scan("t", b"", None, 10)
    assert e.empty and e.commit()


def test_a_batch_seen_in_part_records_none_of_its_other_ids(services: Services) -> None:
    e = services.begin("f")
    assert e.commit(idempotency_id=["m-2"])
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1))
    assert e.commit(idempotency_id=["m-1", "m-2"]) is False  # m-2 was applied before
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(2))
    assert e.commit(idempotency_id=["m-1"])  # so m-1's effects are still to apply
    assert committed(services, "t", b"k") == 2


def test_racing_commits_of_one_event_apply_it_once(services: Services) -> None:
    """Threads commit the same event id, each a compare-and-set increment, at once:
    the event counts once, and every other increment (other ids) is kept."""
    put(services, "t", b"n", 0)
    barrier = threading.Barrier(6)
    applied: list[bool] = []

    def one(i: int) -> None:
        barrier.wait()
        for _ in range(50):
            e = services.begin("f")
            current = e.kv_get("t", b"n")
            assert current is not None
            try:
                value = msgpack.packb(msgpack.unpackb(current[0]) + 1)
                e.kv_put("t", b"n", value, if_version=current[1])
                applied.append(e.commit(idempotency_id="evt-same" if i < 3 else f"evt-{i}"))
                return
            except ConditionFailed:
                continue

    threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(applied) == [False, False, True, True, True, True]
    assert committed(services, "t", b"n") == 4
