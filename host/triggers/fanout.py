"""Fanning the outbox out to subscribers: each matching subscription gets its own copy.

One pass reads the records after the dispatcher's cursor, sends a message to the
queue of every subscription a record matches, advances the cursor and trims what it
read, all in one write transaction: a record is fanned out exactly once, even with
several host processes running dispatchers on one data dir. Each subscriber then
has its own delivery state, so one failing subscriber neither blocks nor repeats
the others.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import msgpack

from host.common.clock import Clock
from host.manifest.triggers import Triggers
from host.services.queues import new_message
from host.services.services import Services
from host.triggers.subscriptions import event_matches, record_queue, storage_matches

log = logging.getLogger("nimbus.triggers")

BATCH = 256
_CURSOR = b"outbox_cursor"


class Dispatcher:
    """Moves outbox records into the subscriptions' queues."""

    def __init__(self, services: Services, triggers: Triggers, clock: Clock) -> None:
        self.services = services
        self.triggers = triggers
        self.clock = clock
        self._state = services.storage.db(b"trigger_state")

    def poll_once(self) -> int:
        s = self.services
        now = self.clock.now_ms()

        def write(txn: Any) -> int:
            raw = txn.get(_CURSOR, db=self._state)
            cursor = int(raw) if raw else 0
            records = s.outbox.after(txn, cursor, BATCH)
            for _seq, record in records:
                for target in self._targets(record):
                    s.queues.send(txn, new_message(target, msgpack.packb(record), now))
            if records:
                last = records[-1][0]
                txn.put(_CURSOR, str(last).encode(), db=self._state)
                s.outbox.trim(txn, last)
            return len(records)

        moved: int = s.storage.write(write)
        if moved:
            s.notify_committed()
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

    def run(self, stop: threading.Event, idle_s: float = 0.02) -> None:
        while not stop.is_set():
            try:
                moved = self.poll_once()
            except Exception:
                log.exception("outbox dispatch failed; retrying")
                moved = 0
            if not moved and not stop.is_set():
                self.services.wait_for_commit(idle_s)
