"""What starts an invocation besides HTTP: queues, schedules, storage and bus events.

``TriggerManager`` runs, in every host process, the deliverers of the app's
subscriptions, the outbox dispatcher and the scheduler, on threads, all calling the
platform's one invoke path. Several processes on one data dir cooperate through
LMDB: leases, the outbox cursor and the schedules' last times are transactional.
When a deployment changes the triggers, the manager restarts its threads. A server
makes its manager before it serves and starts it in the background: the parts' modules
are imported then (``build``), not on the way to a first response.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from host.common.clock import Clock, WallClock
from host.errors import NotFound
from host.manifest.triggers import ScheduleTrigger, Triggers
from host.platform.platform import Platform

if TYPE_CHECKING:
    from host.triggers.delivery import Deliverer, StartWorkflow
    from host.triggers.fanout import Dispatcher
    from host.triggers.schedules import Scheduler

log = logging.getLogger("nimbus.triggers")

#: how often the manager looks for changed triggers
RELOAD_S = 1.0


class TriggerManager:
    """The trigger threads of one host process."""

    def __init__(
        self,
        platform: Platform,
        clock: Clock | None = None,
        start_workflow: StartWorkflow | None = None,
    ) -> None:
        self.platform = platform
        self.start_workflow = start_workflow
        self.clock = clock or WallClock()
        self.deliverers: list[Deliverer] = []
        self.dispatcher: Dispatcher | None = None
        self.scheduler: Scheduler | None = None
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._watch_stop = threading.Event()
        self._generation = -1
        self._watcher: threading.Thread | None = None

    def build(self, triggers: Triggers) -> None:
        """Make (but do not start) the parts for ``triggers``."""
        from host.triggers.delivery import Deliverer
        from host.triggers.fanout import Dispatcher
        from host.triggers.schedules import Scheduler
        from host.triggers.subscriptions import subscriptions

        s = self.platform.services
        self.deliverers = [
            Deliverer(self.platform, sub, self.clock, self.start_workflow)
            for sub in subscriptions(triggers)
        ]
        self.dispatcher = Dispatcher(s, triggers, self.clock)
        self.scheduler = Scheduler(s, triggers.schedule, self.clock)

    def upcoming(self) -> list[tuple[ScheduleTrigger, int]]:
        """The deployed schedules, each with its next fire time (for the admin API)."""
        from host.triggers.schedules import Scheduler

        schedules = self.platform.registry.triggers().schedule
        nxt = Scheduler(self.platform.services, schedules, self.clock).next_fire_times()
        return [(sc, nxt[sc.name]) for sc in schedules]

    def run_now(self, name: str) -> dict[str, object]:
        """Fire the deployed schedule ``name`` once, now (for the admin API)."""
        from host.triggers.schedules import fire_now

        for sc in self.platform.registry.triggers().schedule:
            if sc.name == name:
                now = self.clock.now_ms()
                message = fire_now(self.platform.services, sc, now)
                return {"schedule": name, "function": sc.function, "message": message, "at_ms": now}
        raise NotFound(f"no schedule named {name!r}; `nimbus schedules` lists them")

    def poll_once(self) -> int:
        """One step of everything (tests drive the triggers with this)."""
        assert self.dispatcher is not None and self.scheduler is not None
        done = len(self.scheduler.poll_once()) + self.dispatcher.poll_once()
        for d in self.deliverers:
            done += d.poll_once()
        return done

    def start(self) -> None:
        """Run the threads, and follow changes to the deployed triggers."""
        self._watcher = threading.Thread(target=self._watch, name="nimbus-triggers", daemon=True)
        self._watcher.start()

    def stop(self) -> None:
        self._watch_stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._stop_threads()

    def _watch(self) -> None:
        from host.services.reclaim import reclaim_deliveries

        while not self._watch_stop.is_set():
            try:  # first, so that a restarted host redelivers its predecessor's at once
                reclaim_deliveries(self.platform.services, self.platform.hosts, self.clock.now_ms())
            except Exception:
                log.exception("taking back dead hosts' leases failed")
            try:
                generation = self.platform.registry.generation()
                if generation != self._generation:
                    self._generation = generation
                    self._restart(self.platform.registry.triggers())
            except Exception:
                log.exception("reloading triggers failed")
            self._watch_stop.wait(RELOAD_S)

    def _restart(self, triggers: Triggers) -> None:
        self._stop_threads()
        self.build(triggers)
        self._stop = threading.Event()
        assert self.dispatcher is not None and self.scheduler is not None
        targets: list[Callable[[threading.Event], None]] = [
            self.dispatcher.run,
            self.scheduler.run,
        ]
        for d in self.deliverers:
            targets += [d.run] * d.sub.concurrency
        for target in targets:
            t = threading.Thread(target=target, args=(self._stop,), daemon=True)
            t.start()
            self._threads.append(t)

    def _stop_threads(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=15)
        self._threads = []
