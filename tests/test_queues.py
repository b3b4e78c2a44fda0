"""Queues on real LMDB: sends (with delay), and the consumer's primitives: lease with a
visibility timeout, ack, retry with the error, dead-letter, stats, in transactions."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import pytest

from host.services.services import Services
from host.services.work import Ack
from tests.conftest import open_services

T = TypeVar("T")


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def send(s: Services, queue: str, body: object, delay_ms: int = 0) -> str:
    e = s.begin("test")
    message_id = e.queue_send(queue, msgpack.packb(body), delay_ms)
    assert e.commit()
    return message_id


def now_ms() -> int:
    return int(time.time() * 1000)


def test_send_stores_a_message_a_consumer_can_use(services: Services) -> None:
    before = now_ms()
    first = send(services, "jobs", {"n": 1})
    second = send(services, "jobs", {"n": 2})
    assert first < second  # ids sort by send time
    with services.storage.read() as txn:
        m = services.queues.get(txn, "jobs", first)
        peeked = services.queues.peek(txn, "jobs", 10)
    assert m is not None and msgpack.unpackb(m.body) == {"n": 1}
    assert m.enqueued_ms >= before and m.visible_ms == m.enqueued_ms
    assert (m.attempt, m.last_error) == (0, None)
    assert [p.id for p in peeked] == [first, second]
    assert m.to_dict()["body"] == {"n": 1}


def test_lease_retry_dead_letter_ack_and_stats(services: Services) -> None:
    for i in range(3):
        send(services, "jobs", i, delay_ms=0 if i < 2 else 60_000)
    q = services.queues
    now = now_ms() + 1

    def tx(fn: Callable[[Any], T]) -> T:
        return services.storage.write(fn)

    leased = tx(lambda txn: q.lease(txn, "jobs", 10, 30_000, now))
    assert [msgpack.unpackb(m.body) for m in leased] == [0, 1]  # 2 is delayed
    first = leased[0]
    assert first.attempt == 1 and first.visible_ms == now + 30_000
    assert tx(lambda txn: q.lease(txn, "jobs", 10, 30_000, now)) == []  # leased: invisible
    with services.storage.read() as txn:
        stats = q.stats(txn, "jobs", now)
        assert (stats.depth, stats.in_flight, stats.delayed, stats.dead) == (3, 2, 1, 0)
    # the visibility timeout runs out: the message comes back
    later = tx(lambda txn: q.lease(txn, "jobs", 1, 30_000, now + 30_001))
    assert later[0].id == first.id and later[0].attempt == 2
    tx(lambda txn: q.retry_at(txn, "jobs", first.id, now, "boom"))
    again = tx(lambda txn: q.lease(txn, "jobs", 1, 30_000, now))
    assert again[0].id == first.id and again[0].attempt == 3 and again[0].last_error == "boom"
    tx(lambda txn: q.move(txn, "jobs", first.id, "jobs-dlq", now, "gave up"))
    with services.storage.read() as txn:
        stats = q.stats(txn, "jobs", now, dead_letter="jobs-dlq")
        assert (stats.depth, stats.in_flight, stats.delayed, stats.dead) == (2, 1, 1, 1)
    assert tx(lambda txn: q.ack(txn, "jobs", leased[1].id)) is True
    assert tx(lambda txn: q.ack(txn, "jobs", leased[1].id)) is False
    with services.storage.read() as txn:
        [dead] = q.peek(txn, "jobs-dlq", 10)
        assert dead.last_error == "gave up" and dead.attempt == 3 and dead.queue == "jobs-dlq"
        stats = q.stats(txn, "jobs", now)
        assert (stats.depth, stats.in_flight, stats.delayed) == (1, 0, 1)
        assert sorted(q.names(txn)) == ["jobs", "jobs-dlq"]


def test_a_retry_that_does_not_count_as_an_attempt(services: Services) -> None:
    mid = send(services, "jobs", "x")
    q = services.queues
    now = now_ms() + 1
    services.storage.write(lambda txn: q.lease(txn, "jobs", 1, 1000, now))
    services.storage.write(lambda txn: q.retry_at(txn, "jobs", mid, now, "busy", count=False))
    [m] = services.storage.write(lambda txn: q.lease(txn, "jobs", 1, 1000, now))
    assert m.attempt == 1 and m.last_error == "busy"


def test_delayed_message_becomes_visible_in_time_order(services: Services) -> None:
    late = send(services, "q", "late", delay_ms=5_000)
    early = send(services, "q", "early", delay_ms=1_000)
    q = services.queues
    now = now_ms()
    assert services.storage.write(lambda txn: q.lease(txn, "q", 10, 1000, now)) == []
    got = services.storage.write(lambda txn: q.lease(txn, "q", 10, 60_000, now + 10_000))
    assert [m.id for m in got] == [early, late]


def test_ack_in_the_transaction_that_commits_the_effects(services: Services) -> None:
    mid = send(services, "in", "work")
    q = services.queues
    [m] = services.storage.write(lambda txn: q.lease(txn, "in", 1, 30_000, now_ms() + 1))
    e = services.begin("consumer")
    e.kv_put("t", b"done", msgpack.packb(True))
    e.queue_send("out", msgpack.packb("next"))
    assert e.commit(extra=Ack("in", [m.id]), idempotency_id=mid)
    with services.storage.read() as txn:
        assert q.peek(txn, "in", 10) == [] and len(q.peek(txn, "out", 10)) == 1
        assert services.tables.get(txn, "t", b"done") is not None


def test_a_discarded_invocation_sends_nothing(services: Services) -> None:
    e = services.begin("f")
    e.queue_send("q", msgpack.packb(1), delay_ms=10)
    e.discard()
    with services.storage.read() as txn:
        assert services.queues.peek(txn, "q", 10) == []
        assert services.queues.names(txn) == []
