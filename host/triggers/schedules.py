"""Cron schedules: exactly one firing per scheduled time, across every host process.

Each schedule's last fired time lives in LMDB. A tick reads it, works out the latest
time due, and in one write transaction moves it forward and enqueues the firing for
delivery (with retries like any trigger). Two processes racing for one time are
serialised by LMDB's writer lock: the second sees the time already taken.

Missed runs (the host was down): ``missed = "latest"`` (default) fires once, for the
latest missed time, not a burst; ``"skip"`` fires nothing for times more than
``GRACE_MS`` in the past. A schedule seen for the first time starts from now.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgpack
from croniter import croniter

from host.common.clock import Clock
from host.manifest.triggers import ScheduleTrigger
from host.services.queues import new_message
from host.services.services import Services
from host.triggers.subscriptions import schedule_queue

log = logging.getLogger("nimbus.triggers")

GRACE_MS = 60_000


def _dt(ms: int, tz: str) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))


def next_after(sc: ScheduleTrigger, ms: int) -> int:
    """The first scheduled time strictly after ``ms``."""
    it = croniter(sc.cron, _dt(ms, sc.timezone))
    return int(it.get_next(float) * 1000)


def latest_at_or_before(sc: ScheduleTrigger, ms: int) -> int:
    it = croniter(sc.cron, _dt(ms + 1, sc.timezone))
    return int(it.get_prev(float) * 1000)


class Scheduler:
    """Fires the app's schedules."""

    def __init__(self, services: Services, schedules: tuple[ScheduleTrigger, ...], clock: Clock):
        self.services = services
        self.schedules = schedules
        self.clock = clock
        self._db = services.storage.db(b"schedules")

    def poll_once(self) -> list[tuple[str, int]]:
        """Fire what is due; the ``(schedule, scheduled_ms)`` fired by this call."""
        now = self.clock.now_ms()
        fired: list[tuple[str, int]] = []
        for sc in self.schedules:
            at = self._fire(sc, now)
            if at is not None:
                fired.append((sc.name, at))
        if fired:
            self.services.notify_committed()
        return fired

    def _fire(self, sc: ScheduleTrigger, now: int) -> int | None:
        s = self.services
        key = sc.name.encode()

        def write(txn: Any) -> int | None:
            raw = txn.get(key, db=self._db)
            if raw is None:
                txn.put(key, str(now).encode(), db=self._db)
                return None
            last = int(raw)
            if next_after(sc, last) > now:
                return None
            latest = latest_at_or_before(sc, now)
            txn.put(key, str(latest).encode(), db=self._db)
            if sc.missed == "skip" and now - latest > GRACE_MS:
                return None
            body = {
                "id": f"{sc.name}@{latest}",
                "schedule": sc.name,
                "cron": sc.cron,
                "timezone": sc.timezone,
                "scheduled_ms": latest,
            }
            s.queues.send(txn, new_message(schedule_queue(sc), msgpack.packb(body), now))
            return latest

        fired: int | None = s.storage.write(write)
        return fired

    def next_fire_times(self) -> dict[str, int]:
        """Each schedule's next scheduled time (for ``nimbus schedules``)."""
        now = self.clock.now_ms()
        out = {}
        with self.services.storage.read() as txn:
            for sc in self.schedules:
                raw = txn.get(sc.name.encode(), db=self._db)
                out[sc.name] = next_after(sc, max(int(raw) if raw else now, 0))
        return out

    def run(self, stop: threading.Event, tick_s: float = 0.1) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception:
                log.exception("schedule tick failed; retrying")
            stop.wait(tick_s)
