"""The services layer on real LMDB: commits, conflicts, idempotency, queues, growth,
several processes, and backups taken while writers run."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import lmdb
import msgpack
import pytest

from host.errors import ConditionFailed
from host.services import Services

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = Services(tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def put(s: Services, table: str, key: bytes, value: object) -> None:
    e = s.begin("test")
    e.kv_put(table, key, msgpack.packb(value))
    assert e.commit()


def test_discard_leaves_nothing(services: Services) -> None:
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1))
    e.queue_send("q", msgpack.packb(1))
    e.discard()
    assert e.commit()  # nothing left to apply
    assert services.begin().kv_get("t", b"k") is None


def test_condition_rechecked_at_commit(services: Services) -> None:
    put(services, "t", b"k", 0)
    mine = services.begin("me")
    assert mine.kv_put("t", b"k", msgpack.packb(1), if_version=1) == 2
    put(services, "t", b"k", 99)  # another invocation commits first
    with pytest.raises(ConditionFailed, match="changed"):
        mine.commit()
    assert msgpack.unpackb(services.begin().kv_get("t", b"k")[0]) == 99  # type: ignore[index]


def test_idempotent_commit_applies_once_but_runs_extra(services: Services) -> None:
    ran: list[int] = []
    for _ in range(2):
        e = services.begin("f")
        e.kv_put("counter", b"n", msgpack.packb(len(ran)))
        e.queue_send("out", msgpack.packb("side effect"))
        applied = e.commit(extra=lambda txn: ran.append(1), idempotency_id="evt-1")
    assert applied is False and len(ran) == 2
    with services.storage.read() as txn:
        assert len(services.queues.peek(txn, "out", 10)) == 1
        assert services.tables.get(txn, "counter", b"n") == (msgpack.packb(0), 1)


def test_queue_lease_retry_dead_letter_and_stats(services: Services) -> None:
    for i in range(3):
        e = services.begin("f")
        e.queue_send("jobs", msgpack.packb(i), delay_ms=0 if i < 2 else 60_000)
        e.commit()
    q = services.queues
    now = int(time.time() * 1000) + 1

    def tx(fn):  # type: ignore[no-untyped-def]
        return services.storage.write(fn)

    leased = tx(lambda txn: q.lease(txn, "jobs", 10, 30_000, now))
    assert [msgpack.unpackb(m.body) for m in leased] == [0, 1]  # 2 is delayed
    first = leased[0]
    assert first.attempt == 1
    assert tx(lambda txn: q.lease(txn, "jobs", 10, 30_000, now)) == []  # leased: invisible
    tx(lambda txn: q.retry_at(txn, "jobs", first.id, now, "boom"))
    again = tx(lambda txn: q.lease(txn, "jobs", 1, 30_000, now))
    assert again[0].id == first.id and again[0].attempt == 2 and again[0].last_error == "boom"
    tx(lambda txn: q.move(txn, "jobs", first.id, "jobs-dlq", now, "gave up"))
    with services.storage.read() as txn:
        stats = q.stats(txn, "jobs", now)
        assert (stats.depth, stats.in_flight, stats.delayed) == (2, 1, 1)
    tx(lambda txn: q.ack(txn, "jobs", leased[1].id))
    with services.storage.read() as txn:
        [dead] = q.peek(txn, "jobs-dlq", 10)
        assert dead.last_error == "gave up" and dead.attempt == 2
        stats = q.stats(txn, "jobs", now)
        assert (stats.depth, stats.in_flight, stats.delayed) == (1, 0, 1)
        assert sorted(q.names(txn)) == ["jobs", "jobs-dlq"]


def test_outbox_keeps_commit_order(services: Services) -> None:
    for i in range(5):
        e = services.begin("f")
        e.event_publish("t.x", msgpack.packb(i))
        e.blob_put("b", f"k{i}".encode(), b"data", "text/plain", {})
        e.commit()
    with services.storage.read() as txn:
        records = services.outbox.after(txn, 0, 100)
    kinds = [r["kind"] for _, r in records]
    assert kinds == ["storage", "event"] * 5 or kinds == ["event", "storage"] * 5
    seqs = [seq for seq, _ in records]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10


def test_map_grows_instead_of_failing(services: Services) -> None:
    start = services.storage.map_size
    e = services.begin("f")
    for i in range(300):
        e.kv_put("big", i.to_bytes(4, "big"), msgpack.packb(b"x" * 8000))
    e.commit()
    assert services.storage.map_size > start and services.storage.resizes >= 1
    with services.storage.read() as txn:
        assert len(list(services.tables.items(txn, "big", b"", None))) == 300


WRITER = """
import sys, msgpack
from pathlib import Path
from host.services import Services
s = Services(Path(sys.argv[1]), map_size=1 << 20)
for i in range(int(sys.argv[3])):
    e = s.begin("w")
    e.kv_put("shared", f"{sys.argv[2]}-{i}".encode(), msgpack.packb(b"v" * 2000))
    e.commit()
s.close()
"""


def test_two_processes_lose_no_write(tmp_path: Path) -> None:
    path = tmp_path / "db"
    Services(path, map_size=1 << 20).close()
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, "400"], cwd=ROOT)
        for name in ("a", "b")
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    s = Services(path)
    with s.storage.read() as txn:
        keys = [k for k, _, _ in s.tables.items(txn, "shared", b"", None)]
    s.close()
    assert len(keys) == 800
    assert {k.split(b"-")[0] for k in keys} == {b"a", b"b"}


def test_backup_while_a_writer_runs(services: Services, tmp_path: Path) -> None:
    stop = threading.Event()
    written: list[int] = []

    def writer() -> None:
        i = 0
        while not stop.is_set() and i < 5000:
            put(services, "live", i.to_bytes(4, "big"), i)
            written.append(i)
            i += 1

    t = threading.Thread(target=writer)
    t.start()
    try:
        while len(written) < 50:
            threading.Event().wait(0.01)
        services.backup(tmp_path / "copy")
    finally:
        stop.set()
        t.join()
    env = lmdb.open(str(tmp_path / "copy"), max_dbs=64, readonly=True, lock=False)
    db = env.open_db(b"kv", create=False)
    with env.begin(db=db) as txn:
        keys = [int.from_bytes(k[5:], "big") for k, _ in txn.cursor()]
    env.close()
    assert len(keys) >= 50
    assert keys == list(range(len(keys)))  # a consistent prefix of the writes, no holes


def test_backup_refuses_a_non_empty_destination(services: Services, tmp_path: Path) -> None:
    dest = tmp_path / "used"
    dest.mkdir()
    (dest / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        services.backup(dest)
