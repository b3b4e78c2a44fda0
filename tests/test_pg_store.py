"""PostgreSQL only (where the backends differ by nature): hosts starting at once on a
fresh database migrate it once, a schema newer than the host is refused, a deadlock
between two commits is retried by the store, never seen by a caller, and a host whose
heartbeat stopped (hosts on other machines have no pid to check) gives its leases
back."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgpack
import psycopg
import pytest

from host.errors import StorageUnavailable
from host.services.pg.schema import MIGRATIONS
from host.services.pg.services import PgServices
from host.services.pg.store import Tx
from host.services.reclaim import reclaim_deliveries
from tests.conftest import PG_URL


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"m_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {name} CASCADE".encode())


def test_hosts_starting_together_migrate_once(schema: str, tmp_path: Path) -> None:
    barrier = threading.Barrier(4)
    opened: list[PgServices] = []
    errors: list[BaseException] = []

    def start(i: int) -> None:
        barrier.wait()
        try:
            opened.append(PgServices(PG_URL, tmp_path / f"h{i}", schema=schema))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    try:
        assert errors == [] and len(opened) == 4
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            rows = conn.execute(f"SELECT version FROM {schema}.nimbus_schema ORDER BY 1".encode())
            assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))
        e = opened[0].begin("f")  # and the schema works: a write on one, read on another
        e.kv_put("t", b"k", b"\x01")
        assert e.commit()
        with opened[3].storage.read() as txn:
            assert opened[3].tables.get(txn, "t", b"k") == (b"\x01", 1)
    finally:
        for s in opened:
            s.close()


def test_a_schema_newer_than_the_host_is_refused(schema: str, tmp_path: Path) -> None:
    PgServices(PG_URL, tmp_path / "a", schema=schema).close()
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(f"INSERT INTO {schema}.nimbus_schema VALUES (999)".encode())
    with pytest.raises(StorageUnavailable, match="newer than this host"):
        PgServices(PG_URL, tmp_path / "b", schema=schema)


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StorageUnavailable, match="cannot connect to PostgreSQL"):
        PgServices("postgresql://nobody@127.0.0.1:1/none", tmp_path / "c")


def test_a_deadlock_between_two_commits_is_retried_not_reported(
    schema: str, tmp_path: Path
) -> None:
    s = PgServices(PG_URL, tmp_path / "d", schema=schema)
    try:
        barrier = threading.Barrier(2, timeout=10)
        tries = {"ab": 0, "ba": 0}
        done: list[str] = []

        def writer(order: str) -> None:
            def fn(txn: Tx) -> None:
                tries[order] += 1
                first, second = order[0].encode(), order[1].encode()
                s.tables.put(txn, "t", first, b"\x01", s.tables.next_version(txn, "t", first))
                if tries[order] == 1:
                    barrier.wait()  # both hold their first key: each now wants the other's
                s.tables.put(txn, "t", second, b"\x01", s.tables.next_version(txn, "t", second))

            s.storage.write(fn)
            done.append(order)

        threads = [threading.Thread(target=writer, args=(o,)) for o in ("ab", "ba")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert sorted(done) == ["ab", "ba"]  # both committed, neither saw the deadlock
        assert tries["ab"] + tries["ba"] == 3  # the one PostgreSQL chose ran again
        assert s.storage.retries >= 1
        with s.storage.read() as txn:
            assert s.tables.version(txn, "t", b"a") == s.tables.version(txn, "t", b"b") == 2
    finally:
        s.close()


def test_a_host_whose_heartbeat_stopped_gives_its_leases_back(schema: str, tmp_path: Path) -> None:
    s = PgServices(PG_URL, tmp_path / "e", schema=schema)
    try:
        me = s.hosts.register()
        e = s.begin("f")
        e.queue_send("jobs", msgpack.packb(1))
        e.queue_send("jobs", msgpack.packb(2))
        assert e.commit()
        now = int(time.time() * 1000)
        s.storage.write(  # a host that beat once, long ago (it was SIGKILLed)
            lambda txn: txn.execute(
                "INSERT INTO hosts VALUES ('host-gone', %s, %s)", (b"\x80", now - 60_000)
            )
        )
        [gone] = s.consumer.lease("jobs", 1, 600_000, now, "host-gone")
        [mine] = s.consumer.lease("jobs", 1, 600_000, now, me)
        assert reclaim_deliveries(s, s.hosts, now) == 1  # the live host keeps its own
        [back] = s.consumer.lease("jobs", 10, 600_000, now, me)
        assert back.id == gone.id and back.attempt == 2
        assert s.consumer.get("jobs", mine.id).holder == me  # type: ignore[union-attr]
    finally:
        s.hosts.unregister(me)
        s.close()
