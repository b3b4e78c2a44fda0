"""Taking due timers: a step about to run is leased, an expired lease is an interruption.

Starting a step moves its timer to ``now + lease`` and marks it leased, in the same
transaction that takes it: a host that dies mid-step leaves that lease, which fires
later and is recorded as an ``Interrupted`` attempt (then retried). A timer whose run
moved on (cancelled, finished, or at another step) is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from host.manifest.workflows import Step, Workflow
from host.orchestrator.transitions import INTERRUPTED, failed
from host.services.interface import RunWork
from host.services.runs import Timer

#: the step's lease in ms
LeaseMs = Callable[[Step], int]


def lease_due(
    runs: RunWork,
    workflows: dict[str, Workflow],
    now: int,
    limit: int,
    lease_ms: LeaseMs,
    holder: str = "",
) -> list[tuple[Timer, dict[str, Any]]]:
    """Lease up to ``limit`` due steps, in the name of ``holder`` (a host incarnation,
    ``services/hosts.py``); each with the run as it was leased."""
    out = []
    for t in runs.due(now, limit):
        runs.remove_timer(t.due_ms, t.run_id)
        run = runs.get(t.run_id)
        wf = workflows.get(run["workflow"]) if run else None
        if run is None or wf is None or run["status"] != "running" or run["current"] != t.step:
            continue  # a stale timer of a run that moved on
        run["timer_due"] = None
        step = wf.steps[t.step]
        if t.leased:  # the attempt running under this lease never finished
            message = "the step did not finish (host stopped, or it outlived its lease)"
            failed(runs, wf, run, step, t.attempt, (INTERRUPTED, message), now)
            continue
        lease = Timer(now + lease_ms(step), t.run_id, t.step, t.attempt, True, holder)
        runs.add_timer(lease)
        run["timer_due"] = lease.due_ms
        run["running"] = {"step": step.name, "attempt": t.attempt, "started_ms": now}
        runs.put(run)
        out.append((lease, run))
    return out
