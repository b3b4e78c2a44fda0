"""Cron schedules: exactly one firing per scheduled time, across every host process.

Each schedule's last fired time lives in the services' ``ScheduleStore``. A tick
reads it, works out the latest time due, and claims it with a compare-and-set that
enqueues the firing for delivery (with retries like any trigger) in the same
transaction. Two processes racing for one time are serialised by the store: the
second's claim fails, and it fires nothing.

Missed runs (the host was down): ``missed = "latest"`` (default) fires once, for the
latest missed time, not a burst; ``"skip"`` fires nothing for times more than
``GRACE_MS`` in the past. A schedule seen for the first time starts from now.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime

import msgpack

from host.common.clock import Clock
from host.errors import ServiceUnavailable
from host.manifest.triggers import ScheduleTrigger
from host.services.faults import FaultPacer
from host.services.interface import ServiceSet
from host.services.schedule_leases import Firing
from host.triggers.subscriptions import schedule_queue

log = logging.getLogger("nimbus.triggers")

GRACE_MS = 60_000


def _dt(ms: int, tz: str) -> datetime:
    from zoneinfo import ZoneInfo  # (as croniter: a host with no schedule never imports it)

    return datetime.fromtimestamp(ms / 1000, ZoneInfo(tz))


def next_after(sc: ScheduleTrigger, ms: int) -> int:
    """The first scheduled time strictly after ``ms``."""
    from croniter import croniter  # here: a host with no schedule never imports it

    it = croniter(sc.cron, _dt(ms, sc.timezone))
    return int(it.get_next(float) * 1000)


def latest_at_or_before(sc: ScheduleTrigger, ms: int) -> int:
    from croniter import croniter

    it = croniter(sc.cron, _dt(ms + 1, sc.timezone))
    return int(it.get_prev(float) * 1000)


def fire_now(services: ServiceSet, sc: ScheduleTrigger, now_ms: int) -> str:
    """Deliver one firing of ``sc`` now, as its cron would (same queue, retries and
    envelope, ``scheduled_ms`` = now), without touching the schedule's last fired time:
    ``nimbus schedules run NAME``. The message id."""
    body = {
        "id": f"{sc.name}@{now_ms}/run",
        "schedule": sc.name,
        "cron": sc.cron,
        "timezone": sc.timezone,
        "scheduled_ms": now_ms,
    }
    effects = services.begin(f"schedule:{sc.name}")
    message_id = effects.queue_send(schedule_queue(sc), msgpack.packb(body))
    effects.commit()
    services.notify_committed()
    return message_id


class Scheduler:
    """Fires the app's schedules."""

    def __init__(self, services: ServiceSet, schedules: tuple[ScheduleTrigger, ...], clock: Clock):
        self.services = services
        self.schedules = schedules
        self.clock = clock
        self.faults = FaultPacer("scheduler")

    def poll_once(self) -> list[tuple[str, int]]:
        """Fire what is due; the ``(schedule, scheduled_ms)`` fired by this call."""
        now = self.clock.now_ms()
        fired: list[tuple[str, int]] = []
        last = self.services.schedules.last_fired(sc.name for sc in self.schedules)
        for sc in self.schedules:
            at = self._fire(sc, last[sc.name], now)
            if at is not None:
                fired.append((sc.name, at))
        if fired:
            self.services.notify_committed()
        return fired

    def _fire(self, sc: ScheduleTrigger, last: int | None, now: int) -> int | None:
        """Claim the latest due time of ``sc`` and enqueue its firing; None when nothing
        is due, the firing is skipped, or another process claimed the time first."""
        leases = self.services.schedules
        if last is None:  # first seen: start from now
            leases.claim(sc.name, None, now, None, now)
            return None
        if next_after(sc, last) > now:
            return None
        latest = latest_at_or_before(sc, now)
        firing = None
        if sc.missed != "skip" or now - latest <= GRACE_MS:
            body = {
                "id": f"{sc.name}@{latest}",
                "schedule": sc.name,
                "cron": sc.cron,
                "timezone": sc.timezone,
                "scheduled_ms": latest,
            }
            firing = Firing(schedule_queue(sc), msgpack.packb(body))
        claimed = leases.claim(sc.name, last, latest, firing, now)
        return latest if claimed and firing is not None else None

    def next_fire_times(self) -> dict[str, int]:
        """Each schedule's next scheduled time (for ``nimbus schedules``)."""
        now = self.clock.now_ms()
        last = self.services.schedules.last_fired(sc.name for sc in self.schedules)
        out = {}
        for sc in self.schedules:
            found = last[sc.name]
            out[sc.name] = next_after(sc, max(found if found is not None else now, 0))
        return out

    def run(self, stop: threading.Event, tick_s: float = 0.1) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
                self.faults.ok()
            except ServiceUnavailable as e:  # a full disk: the time stays due, fired later
                self.faults.wait(stop, e)
                continue
            except Exception:
                log.exception("schedule tick failed; retrying")
            stop.wait(tick_s)
