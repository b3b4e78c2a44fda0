"""Fanning the outbox out to subscribers: each matching subscription gets its own copy.

One pass reads the records after the dispatcher's cursor, sends a message to the
queue of every subscription a record matches, advances the cursor and trims what it
read, all in one transaction of the services' ``OutboxDispatch``: a record is fanned
out exactly once, even with several host processes running dispatchers on one data
dir. This module only decides where a record goes. Each subscriber then
has its own delivery state, so one failing subscriber neither blocks nor repeats
the others.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from host.common.clock import Clock
from host.common.idle import IdlePoll
from host.errors import ServiceUnavailable
from host.manifest.triggers import Triggers
from host.services.faults import FaultPacer
from host.services.interface import ServiceSet
from host.triggers.subscriptions import event_matches, record_queue, storage_matches

log = logging.getLogger("nimbus.triggers")

BATCH = 256


class Dispatcher:
    """Moves outbox records into the subscriptions' queues."""

    def __init__(self, services: ServiceSet, triggers: Triggers, clock: Clock) -> None:
        self.services = services
        self.triggers = triggers
        self.clock = clock
        self.faults = FaultPacer("outbox dispatcher")

    def poll_once(self) -> int:
        moved = self.services.dispatch.dispatch(self._targets, BATCH, self.clock.now_ms())
        if moved:
            self.services.notify_committed()
        return moved

    def _targets(self, record: dict[str, Any]) -> list[str]:
        out = []
        for i, st in enumerate(self.triggers.storage):
            if storage_matches(st, record):
                out.append(record_queue("storage", i, st.function or st.workflow))
        for i, ev in enumerate(self.triggers.event):
            if event_matches(ev, record):
                out.append(record_queue("event", i, ev.function or ev.workflow))
        return out

    def run(self, stop: threading.Event) -> None:
        idle = IdlePoll()
        while not stop.is_set():
            try:
                moved = self.poll_once()
                self.faults.ok()
            except ServiceUnavailable as e:  # a full disk: the records wait in the outbox
                self.faults.wait(stop, e)
                continue
            except Exception:
                log.exception("outbox dispatch failed; retrying")
                moved = 0
            if moved:
                idle.found()
            elif not stop.is_set():
                idle.waited(self.services.wait_for_commit(idle.wait_s))
