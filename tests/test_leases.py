"""Leases in the name of a host incarnation: a dead host's deliveries and workflow steps
come back as soon as it is known dead, not after their visibility timeout.

In-process tests use records of processes that are gone (a pid that exited); the last
test SIGKILLs a real ``nimbus serve`` in the middle of an event delivery and times the
redelivery by the restarted host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from host.services.hosts import Hosts, process_start
from host.services.queues import Queues, new_message
from host.services.reclaim import reclaim_deliveries, reclaim_steps
from host.services.runs import Timer
from host.services.services import Services
from tests.conftest import serve_unwaited

Build = Callable[[str], Path]


def dead_incarnation(hosts: Hosts, storage: Any) -> str:
    """The record of a host process that ran on this data dir and is gone."""
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(child.stdout)
    record = {**hosts._here, "pid": pid, "start": 1, "data": hosts._data_file}
    storage.write(lambda txn: txn.put(b"host-dead", msgpack.packb(record), db=hosts._db))
    return "host-dead"


def test_a_process_is_alive_only_with_its_pid_and_start_time() -> None:
    me = process_start(os.getpid())
    assert me is not None
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start(child.pid) is None  # gone (and reaped)


def test_an_incarnation_is_live_until_closed_and_a_dead_one_is_not(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "data")
    try:
        hosts, storage = platform.hosts, platform.services.storage
        dead = dead_incarnation(hosts, storage)
        with storage.read() as txn:
            live = hosts.live(txn)
        assert platform.incarnation in live and dead not in live
        again = hosts.register()  # registering drops the dead records on the way
        with storage.read() as txn:
            assert txn.get(dead.encode(), db=hosts._db) is None
            assert {platform.incarnation, again} <= hosts.live(txn)
        hosts.unregister(again)
        with storage.read() as txn:
            assert again not in hosts.live(txn)
    finally:
        platform.close()


def test_a_copy_of_the_data_dir_sees_the_original_hosts_as_dead(tmp_path: Path) -> None:
    """A backup holds the records of the hosts serving the original: still running, but
    not on this data dir, so their leases are free in the copy."""
    platform = Platform(tmp_path / "data")
    try:
        platform.services.backup(tmp_path / "copy" / "db")
        copy = Services(tmp_path / "copy" / "db")
        try:
            hosts = Hosts(copy.storage)
            with copy.storage.read() as txn:
                assert hosts.live(txn) == set()
        finally:
            copy.close()
    finally:
        platform.close()


def test_a_dead_hosts_deliveries_are_released_and_a_live_ones_kept(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "data")
    try:
        s, q = platform.services, platform.services.queues
        dead = dead_incarnation(platform.hosts, s.storage)
        now = 1_000_000

        def setup(txn: Any) -> None:
            for i in range(3):
                q.send(txn, new_message("jobs", msgpack.packb(i), now))
            q.lease(txn, "jobs", 2, 30_000, now, holder=dead)
            q.lease(txn, "jobs", 1, 30_000, now, holder=platform.incarnation)

        s.storage.write(setup)
        assert reclaim_deliveries(s, platform.hosts, now + 100) == 2
        assert reclaim_deliveries(s, platform.hosts, now + 100) == 0  # nothing left to take
        with s.storage.read() as txn:
            messages = q.peek(txn, "jobs", 10)
            assert q.holders(txn) == [platform.incarnation]
        released = [m for m in messages if not m.holder]
        assert len(released) == 2
        assert all(m.visible_ms == now + 100 and m.attempt == 1 for m in released)
    finally:
        platform.close()


def test_ack_retry_and_dead_letter_drop_the_lease(tmp_path: Path) -> None:
    services = Services(tmp_path / "db")
    try:
        q: Queues = services.queues

        def run(txn: Any) -> list[str]:
            for i in range(3):
                q.send(txn, new_message("jobs", msgpack.packb(i), 0))
            a, b, c = q.lease(txn, "jobs", 3, 1000, 0, holder="h")
            q.ack(txn, "jobs", a.id)
            q.retry_at(txn, "jobs", b.id, 5, "boom")
            q.move(txn, "jobs", c.id, "jobs.dlq", 0, "dead")
            assert q.get(txn, "jobs", b.id).holder == ""  # type: ignore[union-attr]
            return q.holders(txn)

        assert services.storage.write(run) == []
    finally:
        services.close()


def test_a_dead_hosts_workflow_steps_are_due_at_once(tmp_path: Path) -> None:
    platform = Platform(tmp_path / "data")
    try:
        s = platform.services
        dead = dead_incarnation(platform.hosts, s.storage)
        lease = Timer(90_000, "run-1", "charge", 1, leased=True, holder=dead)
        mine = Timer(95_000, "run-2", "charge", 1, leased=True, holder=platform.incarnation)

        def setup(runs: Any) -> None:
            for t in (lease, mine):
                runs.add_timer(t)
                runs.put({"id": t.run_id, "timer_due": t.due_ms})

        s.runs.transact(setup)
        assert reclaim_steps(s, platform.hosts, 10_000) == 1
        assert reclaim_steps(s, platform.hosts, 10_000) == 0
        due = s.runs.transact(lambda runs: runs.due(10_000, 10))
        assert [(t.run_id, t.leased) for t in due] == [("run-1", True)]  # interrupted
        assert s.runs.get("run-1")["timer_due"] == 10_000  # type: ignore[index]
        assert s.runs.get("run-2")["timer_due"] == 95_000  # type: ignore[index]
    finally:
        platform.close()


EVENT_APP = """
[functions.worker]
wasm = "{wasm}"
grants = {{ tables = {{ state = "read-write" }} }}
env = {{ SLEEP_MS = "3000" }}

[[triggers.event]]
topic = "load.*"
function = "worker"
"""
QUEUE = "!event.0.worker"
VISIBILITY_MS = 30_000  # the default: what a lost lease would cost without the reclaim


def peek(services: Services) -> Any:
    with services.storage.read() as txn:
        found = services.queues.peek(txn, QUEUE, 10)
    return found[0] if found else None


def wait(check: Callable[[], Any], timeout: float, step: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out")


@pytest.mark.crash
def test_sigkill_mid_event_delivery_is_redelivered_at_once_after_restart(
    tmp_path: Path, build: Build
) -> None:
    data = tmp_path / "data"
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(EVENT_APP.format(wasm=build("recorder_zig")))
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(app))
        e = platform.services.begin("test")
        e.event_publish("load.tick", msgpack.packb(1))
        e.commit()
    finally:
        platform.close()
    services = Services(data / "db")
    proc = serve_unwaited(data)
    try:
        first = wait(lambda: (m := peek(services)) and m.attempt == 1 and m, timeout=60)
        time.sleep(0.5)  # the function is busy for 3 s: kill it in the middle
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        left = peek(services)
        assert left.holder == first.holder and left.visible_ms > time.time() * 1000 + 20_000
        restarted_ms = time.time() * 1000
        proc = serve_unwaited(data)
        again = wait(lambda: (m := peek(services)) and m.attempt == 2 and m, timeout=30)
        leased_ms = again.visible_ms - VISIBILITY_MS
        assert again.holder != first.holder
        # the new host's incarnation id carries the time it opened the data dir
        opened_ms = int(again.holder.split("-")[1][:12], 16)
        after_open_s = (leased_ms - opened_ms) / 1000
        after_spawn_s = (leased_ms - restarted_ms) / 1000
        print(
            f"\nredelivery leased {after_open_s:.2f} s after the new host opened the data dir"
            f" ({after_spawn_s:.2f} s after its process was spawned, imports included)"
        )
        assert after_open_s < 2.0  # not the 30 s visibility timeout
        assert after_spawn_s < 20.0  # the same, with a loaded machine's start-up on top
        with services.storage.read() as txn:
            assert services.tables.get(txn, "state", b"count.event") is None  # not yet
        wait(lambda: peek(services) is None, timeout=30, step=0.2)
        with services.storage.read() as txn:
            count = services.tables.get(txn, "state", b"count.event")
        assert count is not None and msgpack.unpackb(count[0]) == 1  # applied once
    finally:
        proc.kill()
        proc.wait()
        services.close()
