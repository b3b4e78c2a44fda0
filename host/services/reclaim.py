"""Taking back the deliveries and workflow steps a dead host process had leased, as
soon as it is known dead, rather than when their visibility timeout (or the step's
lease) runs out.

A deliverer (``host/triggers/delivery.py``) leases messages in the name of its
process's incarnation (``hosts.py``). A process that was SIGKILLed (or lost its
machine) leaves those leases behind; the next look by any host on the data dir (the
trigger manager's, at its start and then every second) finds the holder dead and
makes its messages visible at once. The
interrupted attempt stays counted, as it would be after a timeout; effects are still
applied once, since a redelivered message's id was never committed. A dead host's
workflow step leases are moved to now: they fire at once as interrupted attempts,
which the engine retries outside the step's retry policy.
"""

from __future__ import annotations

import logging
from typing import Any

from msgspec.structs import replace

from host.services.interface import HostRegistry, ServiceSet

log = logging.getLogger("nimbus.triggers")


def reclaim_deliveries(s: ServiceSet, hosts: HostRegistry, now_ms: int) -> int:
    """Release every lease held by a dead incarnation; the number of messages."""
    with s.storage.read() as txn:
        holders = s.queues.holders(txn)
        if not holders or not set(holders) - hosts.live(txn):
            return 0

    def write(txn: Any) -> int:
        live = hosts.live(txn)  # decided in the writing view: a holder's leases are
        # never newer than its record, so a host registered since is seen alive here
        return sum(s.queues.release(txn, h, now_ms) for h in s.queues.holders(txn) if h not in live)

    released: int = s.storage.write(write)
    if released:
        log.warning("took back %d delivery lease(s) of dead host process(es)", released)
        s.notify_committed()
    return released


def reclaim_steps(s: ServiceSet, hosts: HostRegistry, now_ms: int) -> int:
    """Make the workflow step leases of dead incarnations due now; how many."""
    with s.storage.read() as txn:
        leases = [t for t in s.runs.table(txn).leases() if t.holder and t.due_ms > now_ms]
        if not leases or all(t.holder in hosts.live(txn) for t in leases):
            return 0

    def write(txn: Any) -> int:
        live = hosts.live(txn)
        runs = s.runs.table(txn)
        moved = 0
        for t in runs.leases():
            if not t.holder or t.holder in live or t.due_ms <= now_ms:
                continue
            runs.remove_timer(t.due_ms, t.run_id)
            runs.add_timer(replace(t, due_ms=now_ms))
            run = runs.get(t.run_id)
            if run is not None and run.get("timer_due") == t.due_ms:
                run["timer_due"] = now_ms
                runs.put(run)
            moved += 1
        return moved

    moved: int = s.storage.write(write)
    if moved:
        log.warning("took back %d workflow step lease(s) of dead host process(es)", moved)
        s.notify_committed()
    return moved
