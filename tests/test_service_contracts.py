"""The typed operations of the services, as every backend must implement them.

Queue consumption (lease, ack, retry, dead-letter, replay), the outbox cursor, the
schedules' compare-and-set, workflow runs and their timers, deployment records, and
the unit of work that commits with an invocation's effects. Each test runs once per
backend (``backend`` fixture): what callers outside ``services/`` rely on, checked
through the protocols of ``host/services/interface.py`` only.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.errors import ConditionFailed
from host.services.interface import (
    DeploymentStore,
    OutboxDispatch,
    QueueConsumer,
    RunStore,
    RunWork,
    ScheduleStore,
    UnitOfWork,
)
from host.services.runs import Timer
from host.services.schedule_leases import Firing
from host.services.services import Services
from host.services.work import Ack
from tests.conftest import open_services


@pytest.fixture
def services(backend: str, tmp_path: Path) -> Iterator[Services]:
    s = open_services(backend, tmp_path / "db", map_size=1 << 20)
    yield s
    s.close()


def now_ms() -> int:
    return int(time.time() * 1000)


def send(s: Services, queue: str, body: Any, delay_ms: int = 0) -> str:
    e = s.begin("test")
    mid = e.queue_send(queue, msgpack.packb(body), delay_ms)
    assert e.commit()
    return mid


# --- queue consumption -----------------------------------------------------------------


def test_a_leased_message_is_hidden_until_its_visibility_ends(services: Services) -> None:
    consumer: QueueConsumer = services.consumer
    mid = send(services, "jobs", "a")
    now = now_ms()
    [m] = consumer.lease("jobs", 10, 1_000, now)
    assert (m.id, m.attempt) == (mid, 1)
    assert consumer.lease("jobs", 10, 1_000, now + 500) == []
    [again] = consumer.lease("jobs", 10, 1_000, now + 1_001)
    assert again.attempt == 2


def test_ack_retry_and_dead_letter(services: Services) -> None:
    consumer: QueueConsumer = services.consumer
    a, b, c = (send(services, "jobs", x) for x in "abc")
    now = now_ms()
    leased = consumer.lease("jobs", 3, 30_000, now)
    assert [m.id for m in leased] == [a, b, c]
    consumer.ack("jobs", [a])
    consumer.retry("jobs", {b: now + 5_000}, "boom")
    consumer.dead_letter("jobs", [c], "jobs.dlq", now, "gave up")
    assert [m.id for m in consumer.peek("jobs", 10)] == [b]
    retried = consumer.get("jobs", b)
    assert retried is not None and retried.last_error == "boom" and retried.attempt == 1
    assert consumer.lease("jobs", 10, 1_000, now + 4_999) == []
    assert [m.id for m in consumer.lease("jobs", 10, 1_000, now + 5_000)] == [b]
    [dead] = consumer.peek("jobs.dlq", 10)
    assert dead.last_error == "gave up" and dead.body == msgpack.packb("c")
    assert consumer.stats("jobs", now + 5_000, "jobs.dlq").dead == 1


def test_an_uncounted_retry_gives_the_attempt_back(services: Services) -> None:
    consumer: QueueConsumer = services.consumer
    mid = send(services, "jobs", "a")
    now = now_ms()
    consumer.lease("jobs", 1, 30_000, now)
    consumer.retry("jobs", {mid: now}, "overloaded", count=False)
    [m] = consumer.lease("jobs", 1, 30_000, now)
    assert m.attempt == 1


def test_replay_sends_dead_letters_back_as_new_messages(services: Services) -> None:
    consumer: QueueConsumer = services.consumer
    mid = send(services, "jobs", "a")
    now = now_ms()
    consumer.lease("jobs", 1, 30_000, now)
    consumer.dead_letter("jobs", [mid], "jobs.dlq", now, "bad")
    assert consumer.replay("jobs.dlq", "jobs", now) == 1
    assert consumer.peek("jobs.dlq", 10) == []
    [m] = consumer.lease("jobs", 1, 30_000, now + 1)
    assert m.attempt == 1 and m.body == msgpack.packb("a") and m.id != mid
    stats = consumer.all_stats(now + 1)
    assert set(stats) == {"jobs"} and stats["jobs"].depth == 1


# --- the unit of work of a commit ------------------------------------------------------


def test_an_ack_commits_with_the_effects_or_not_at_all(services: Services) -> None:
    consumer: QueueConsumer = services.consumer
    mid = send(services, "in", "work")
    consumer.lease("in", 1, 30_000, now_ms())
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1), if_absent=True)
    rival = services.begin("g")
    rival.kv_put("t", b"k", msgpack.packb(2))
    assert rival.commit()
    with pytest.raises(ConditionFailed):
        e.commit(extra=Ack("in", [mid]), idempotency_id=mid)
    assert [m.id for m in consumer.peek("in", 10)] == [mid]  # not acked: nothing applied
    e = services.begin("f")
    e.queue_send("out", msgpack.packb("next"))
    assert e.commit(extra=Ack("in", [mid]), idempotency_id=mid)
    assert consumer.peek("in", 10) == [] and len(consumer.peek("out", 10)) == 1


class _Declines:
    """Commit work that looks at a run and refuses."""

    def __init__(self) -> None:
        self.saw: dict[str, Any] | None = None

    def apply(self, work: UnitOfWork) -> None:
        self.saw = work.runs.get("run-1")
        work.queues.send("side", msgpack.packb("effect"), now_ms())
        raise LookupError("the run moved on")


def test_commit_work_that_raises_leaves_nothing(services: Services) -> None:
    services.runs.transact(lambda runs: runs.put({"id": "run-1", "status": "running"}))
    e = services.begin("f")
    e.kv_put("t", b"k", msgpack.packb(1))
    hook = _Declines()
    with pytest.raises(LookupError):
        e.commit(extra=hook, idempotency_id="evt-1")
    assert hook.saw == {"id": "run-1", "status": "running"}
    assert services.consumer.peek("side", 10) == []
    with services.begin("f") as view:
        assert view.kv_get("t", b"k") is None
    e = services.begin("f")
    assert e.commit(idempotency_id="evt-1")  # the id was not remembered either


# --- the outbox cursor -----------------------------------------------------------------


def publish(s: Services, topic: str, n: int) -> None:
    e = s.begin("f")
    for i in range(n):
        e.event_publish(topic, msgpack.packb(i))
    assert e.commit()


def test_every_record_is_dispatched_once_in_order(services: Services) -> None:
    dispatch: OutboxDispatch = services.dispatch
    publish(services, "a.b", 5)
    assert dispatch.position() == 0

    def route(record: dict[str, Any]) -> list[str]:
        return ["all", "even"] if msgpack.unpackb(record["payload"]) % 2 == 0 else ["all"]

    assert dispatch.dispatch(route, 3, now_ms()) == 3
    assert dispatch.dispatch(route, 3, now_ms()) == 2
    assert dispatch.dispatch(route, 3, now_ms()) == 0
    assert dispatch.position() > 0
    got = [msgpack.unpackb(m.body) for m in services.consumer.peek("all", 10)]
    assert [msgpack.unpackb(r["payload"]) for r in got] == [0, 1, 2, 3, 4]
    assert len(services.consumer.peek("even", 10)) == 3
    publish(services, "a.b", 1)
    assert dispatch.dispatch(lambda r: [], 10, now_ms()) == 1  # read, routed nowhere
    assert len(services.consumer.peek("all", 10)) == 5


# --- schedules -------------------------------------------------------------------------


def test_a_schedule_time_is_claimed_once(services: Services) -> None:
    leases: ScheduleStore = services.schedules
    assert leases.last_fired(["nightly"]) == {"nightly": None}
    assert leases.claim("nightly", None, 1_000, None, 1_000)
    assert not leases.claim("nightly", None, 1_000, None, 1_000)  # a rival's stale view
    firing = Firing("schedule.nightly", msgpack.packb({"at": 2_000}))
    assert leases.claim("nightly", 1_000, 2_000, firing, 2_000)
    assert not leases.claim("nightly", 1_000, 2_000, firing, 2_000)
    assert leases.last_fired(["nightly", "other"]) == {"nightly": 2_000, "other": None}
    [m] = services.consumer.peek("schedule.nightly", 10)
    assert msgpack.unpackb(m.body) == {"at": 2_000}


def test_racing_claims_of_one_schedule_time_fire_it_once(services: Services) -> None:
    """Hosts (threads here) that all find one time due claim it at once: one wins."""
    leases: ScheduleStore = services.schedules
    assert leases.claim("tick", None, 1_000, None, 1_000)
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def claim(i: int) -> None:
        barrier.wait()
        firing = Firing("schedule.tick", msgpack.packb({"by": i}))
        won.append(leases.claim("tick", 1_000, 2_000, firing, 2_000))

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(won) == [False] * 7 + [True]
    assert len(services.consumer.peek("schedule.tick", 10)) == 1


def test_consumers_racing_for_a_queue_lease_each_message_once(services: Services) -> None:
    """Consumers leasing one queue at once never get the same message."""
    e = services.begin("f")
    for i in range(60):
        e.queue_send("jobs", msgpack.packb(i))
    assert e.commit()
    barrier = threading.Barrier(6)
    got: list[str] = []
    now = now_ms()

    def consume(i: int) -> None:
        barrier.wait()
        while batch := services.consumer.lease("jobs", 4, 60_000, now, f"h{i}"):
            got.extend(m.id for m in batch)

    threads = [threading.Thread(target=consume, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(got) == len(set(got)) == 60


# --- workflow runs ---------------------------------------------------------------------


def test_runs_timers_and_keys(services: Services) -> None:
    store: RunStore = services.runs

    def start(runs: RunWork) -> None:
        runs.put({"id": "r1", "workflow": "wf", "n": 1})
        runs.put({"id": "r2", "workflow": "wf", "n": 2})
        runs.add_timer(Timer(300, "r1", "b", 2))
        runs.add_timer(Timer(100, "r2", "a", 1, leased=True))
        runs.set_key("wf", "order-1", "r1")

    store.transact(start)
    assert store.get("r1") == {"id": "r1", "workflow": "wf", "n": 1}
    assert store.get("nope") is None
    assert sorted(r["id"] for r in store.all()) == ["r1", "r2"]
    assert store.count_timers() == 2

    def look(runs: RunWork) -> tuple[list[Timer], list[Timer], str | None, str | None]:
        return runs.due(200, 10), runs.due(300, 10), runs.key_run("wf", "order-1"), None

    early, both, key, _ = store.transact(look)
    assert early == [Timer(100, "r2", "a", 1, leased=True)]
    assert [t.run_id for t in both] == ["r2", "r1"]
    assert key == "r1"

    def finish(runs: RunWork) -> None:
        runs.remove_timer(100, "r2")
        runs.delete("r2")
        runs.delete_key("wf", "order-1")

    store.transact(finish)
    assert [r["id"] for r in store.all()] == ["r1"] and store.count_timers() == 1
    assert store.transact(lambda runs: runs.key_run("wf", "order-1")) is None


def test_a_failed_run_transaction_changes_nothing(services: Services) -> None:
    store: RunStore = services.runs

    def half(runs: RunWork) -> None:
        runs.put({"id": "r1"})
        runs.add_timer(Timer(1, "r1", "a", 1))
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        store.transact(half)
    assert store.all() == [] and store.count_timers() == 0


# --- deployments -----------------------------------------------------------------------


def test_deployment_versions_and_the_generation(services: Services) -> None:
    store: DeploymentStore = services.deployments
    g0 = store.generation()
    first = store.put_function("hello", "aa", {"memory": "64MB"}, 1_000)
    assert (first["version"], first["sha256"]) == (1, "aa")
    g1 = store.generation()
    assert g1 > g0
    same = store.put_function("hello", "aa", {"memory": "64MB"}, 2_000)
    assert same == first and store.generation() == g1  # unchanged: no new version
    changed = store.put_function("hello", "aa", {"memory": "128MB"}, 3_000)
    assert changed["version"] == 2 and changed["deployed_ms"] == 3_000
    generation, record = store.function("hello")
    assert record == changed and generation == store.generation() > g1
    assert store.function("nope")[1] is None
    store.put_function("other", "bb", {}, 4_000)
    assert sorted(r["name"] for r in store.functions()) == ["hello", "other"]
    assert store.delete_function("other") and not store.delete_function("other")
    assert [r["name"] for r in store.functions()] == ["hello"]


def test_routes_and_app_config_bump_the_generation_only_when_changed(
    services: Services,
) -> None:
    store: DeploymentStore = services.deployments
    assert store.routes() == [] and store.app_config("triggers") == {}
    store.set_routes([{"path": "/a", "function": "f"}])
    g = store.generation()
    store.set_routes([{"path": "/a", "function": "f"}])
    assert store.generation() == g
    store.set_app_config("triggers", {"queue": [{"queue": "q", "function": "f"}]})
    assert store.generation() == g + 1
    assert store.routes() == [{"path": "/a", "function": "f"}]
    assert store.app_config("triggers") == {"queue": [{"queue": "q", "function": "f"}]}
