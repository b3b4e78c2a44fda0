"""Triggers with real guests and an injected clock: delivery, batches, retries with
backoff, dead letters, filters, wildcards, independent subscribers, schedules."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.common.clock import ManualClock
from host.errors import NotFound
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.platform.platform import Platform
from host.triggers.manager import TriggerManager
from host.triggers.schedules import Scheduler

Build = Callable[[str], Path]
T0 = 1_800_000_000_000  # a fixed "now", far from any real clock


def deploy(platform: Platform, build: Build, name: str, **env: str) -> None:
    config = {
        "wasm": "r.wasm",
        "env": env,
        "grants": {"tables": {"state": "read-write"}, "topics": {"#": "read-write"}},
    }
    platform.deploy(function_spec_from_dict(name, config), build("recorder_zig").read_bytes())


def manager(platform: Platform, triggers: dict[str, Any], clock: ManualClock) -> TriggerManager:
    m = TriggerManager(platform, clock)
    m.build(triggers_from_dict(triggers))
    return m


def drain(m: TriggerManager, rounds: int = 20) -> None:
    for _ in range(rounds):
        if not m.poll_once():
            return


def state(platform: Platform, key: str) -> Any:
    with platform.services.storage.read() as txn:
        found = platform.services.tables.get(txn, "state", key.encode())
    return None if found is None else msgpack.unpackb(found[0])


def send(platform: Platform, queue: str, *bodies: Any) -> list[str]:
    e = platform.services.begin("test")
    ids = [e.queue_send(queue, msgpack.packb(b)) for b in bodies]
    e.commit()
    return ids


def test_queue_messages_are_delivered_in_batches(platform: Platform, build: Build) -> None:
    deploy(platform, build, "worker")
    clock = ManualClock(T0)
    m = manager(
        platform, {"queue": [{"queue": "jobs", "function": "worker", "batch_size": 3}]}, clock
    )
    ids = send(platform, "jobs", *[{"n": i} for i in range(5)])
    clock.advance(1)
    drain(m)
    assert state(platform, "count.queue") == 5
    assert all(state(platform, f"seen.queue.{i}") == 1 for i in ids)
    assert len([r for r in platform.telemetry.recent("worker", 100) if r.trigger == "queue"]) == 2
    last = state(platform, "last.queue")
    assert last["queue"] == "jobs" and len(last["messages"]) == 2
    with platform.services.storage.read() as txn:
        assert platform.services.queues.peek(txn, "jobs", 10) == []


def test_retries_follow_the_backoff_then_dead_letter(platform: Platform, build: Build) -> None:
    deploy(platform, build, "worker")
    clock = ManualClock(T0)
    trig = {
        "queue": [
            {
                "queue": "jobs",
                "function": "worker",
                "max_attempts": 3,
                "backoff": {"initial": "1s", "max": "10s", "multiplier": 2.0},
            }
        ]
    }
    m = manager(platform, trig, clock)
    [mid] = send(platform, "jobs", {"fail": True})
    queues = platform.services.queues

    def message() -> Any:
        with platform.services.storage.read() as txn:
            return queues.get(txn, "jobs", mid)

    clock.advance(1)
    assert m.poll_once() == 1  # attempt 1 fails
    first = message()
    assert first.attempt == 1 and "Told" in first.last_error
    delay1 = first.visible_ms - clock.now_ms()
    assert 500 <= delay1 <= 1000  # 1s with equal jitter
    clock.advance(delay1 - 1)
    assert m.poll_once() == 0  # not yet
    clock.advance(1)
    assert m.poll_once() == 1  # attempt 2 fails
    delay2 = message().visible_ms - clock.now_ms()
    assert 1000 <= delay2 <= 2000  # doubled
    clock.advance(delay2)
    assert m.poll_once() == 1  # attempt 3 fails: the last
    assert message() is None
    with platform.services.storage.read() as txn:
        [dead] = queues.peek(txn, "jobs.dlq", 10)
    assert dead.id == mid and dead.attempt == 3 and "Told" in dead.last_error
    assert state(platform, "count.queue") is None  # failed attempts left nothing


def test_storage_events_filtered_by_prefix_suffix_and_kind(
    platform: Platform, build: Build
) -> None:
    deploy(platform, build, "thumb")
    clock = ManualClock(T0)
    trig = {
        "storage": [
            {
                "bucket": "up",
                "prefix": "img/",
                "suffix": ".png",
                "events": ["put"],
                "function": "thumb",
            }
        ]
    }
    m = manager(platform, trig, clock)
    e = platform.services.begin("test")
    for key in ("img/a.png", "img/a.jpg", "doc/a.png"):
        e.blob_put("up", key.encode(), b"px", "image/png", {})
    e.blob_put("other", b"img/b.png", b"px", "image/png", {})
    e.commit()
    e = platform.services.begin("test")
    e.blob_delete("up", b"img/a.png")
    e.commit()
    drain(m)
    assert state(platform, "count.storage") == 1
    last = state(platform, "last.storage")
    assert (last["bucket"], last["key"], last["op"], last["size"]) == ("up", "img/a.png", "put", 2)
    assert last["id"].startswith("evt-") and last["etag"]


def test_bus_wildcards(platform: Platform, build: Build) -> None:
    for name in ("orders", "everything", "paid"):
        deploy(platform, build, name)
    clock = ManualClock(T0)
    trig = {
        "event": [
            {"topic": "order.*", "function": "orders"},
            {"topic": "#", "function": "everything"},
            {"topic": "order.*.paid", "function": "paid"},
        ]
    }
    m = manager(platform, trig, clock)
    e = platform.services.begin("producer")
    for topic in ("order.created", "order.eu.paid", "user.created"):
        e.event_publish(topic, msgpack.packb({"t": topic}))
    e.commit()
    drain(m)
    counts = {
        n: len([r for r in platform.telemetry.recent(n, 100)])
        for n in ("orders", "everything", "paid")
    }
    assert counts == {"orders": 1, "everything": 3, "paid": 1}
    last = state(platform, "last.event")
    assert last["source"] == "producer" and last["payload"] == {"t": last["topic"]}


def test_one_failing_subscriber_neither_blocks_nor_repeats_another(
    platform: Platform, build: Build
) -> None:
    deploy(platform, build, "good")
    deploy(platform, build, "bad", FAIL="always")
    clock = ManualClock(T0)
    trig = {
        "event": [
            {"topic": "order.*", "function": "bad", "max_attempts": 2, "dead_letter": "bad-dlq"},
            {"topic": "order.*", "function": "good"},
        ]
    }
    m = manager(platform, trig, clock)
    e = platform.services.begin("p")
    e.event_publish("order.created", msgpack.packb(1))
    e.commit()
    drain(m)
    assert len(platform.telemetry.recent("good", 10)) == 1
    clock.advance(60_000)
    drain(m)
    assert len(platform.telemetry.recent("bad", 10)) == 2
    assert len(platform.telemetry.recent("good", 10)) == 1  # not repeated
    with platform.services.storage.read() as txn:
        assert len(platform.services.queues.peek(txn, "bad-dlq", 10)) == 1


@pytest.mark.parametrize(("missed", "fires"), [("latest", 1), ("skip", 0)])
def test_schedule_fires_once_per_time_and_handles_missed_runs(
    platform: Platform, build: Build, missed: str, fires: int
) -> None:
    deploy(platform, build, "report")
    start = 1_800_000_000_000 - (1_800_000_000_000 % 300_000)  # on a 5-minute boundary
    clock = ManualClock(start + 1000)
    trig = {
        "schedule": [
            {"name": "every5", "cron": "*/5 * * * *", "function": "report", "missed": missed}
        ]
    }
    m = manager(platform, trig, clock)
    rival = Scheduler(platform.services, m.scheduler.schedules, clock)  # type: ignore[union-attr]
    assert m.scheduler.poll_once() == []  # type: ignore[union-attr]  # first sight: starts now
    clock.advance(300_000)
    assert m.scheduler.poll_once() == [("every5", start + 300_000)]  # type: ignore[union-attr]
    assert rival.poll_once() == []  # the same time is not fired twice
    drain(m)
    assert state(platform, "count.schedule") == 1
    last = state(platform, "last.schedule")
    assert last["scheduled_ms"] == start + 300_000 and last["id"] == f"every5@{start + 300_000}"
    clock.advance(3_720_000)  # "down" for an hour: 12 missed times, the latest 2 min ago
    fired = m.scheduler.poll_once()  # type: ignore[union-attr]
    assert len(fired) == fires
    drain(m)
    assert state(platform, "count.schedule") == 1 + fires


def test_a_schedule_run_now_is_one_firing_and_leaves_the_cron_alone(
    platform: Platform, build: Build
) -> None:
    deploy(platform, build, "report")
    clock = ManualClock(T0)
    triggers = {"schedule": [{"name": "nightly", "cron": "0 3 * * *", "function": "report"}]}
    platform.registry.set_app_config("triggers", triggers)  # what the manager reads
    m = manager(platform, triggers, clock)
    assert m.scheduler.poll_once() == []  # type: ignore[union-attr]  # first sight: starts now
    before = platform.services.schedules.last_fired(["nightly"])
    fired = m.run_now("nightly")
    assert fired["function"] == "report" and fired["at_ms"] == T0
    drain(m)
    assert state(platform, "count.schedule") == 1
    last = state(platform, "last.schedule")
    assert last["schedule"] == "nightly" and last["scheduled_ms"] == T0
    assert last["id"] == f"nightly@{T0}/run"
    assert platform.services.schedules.last_fired(["nightly"]) == before  # the cron's time
    with pytest.raises(NotFound, match="no schedule named 'nope'"):
        m.run_now("nope")
