"""Running workflows durably: the runs API and the loop that drives the steps.

``Orchestrator`` starts, inspects, cancels and cleans up runs, and ``poll_once``
leases the steps that are due (``leasing.py``) and runs each through the one invoke
path (``execution.py``); how a run moves from step to step is ``transitions.py``.
Every change to a run is one transaction of the services' ``RunStore``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from host.common.clock import Clock, WallClock
from host.common.idle import IdlePoll
from host.common.ids import new_id
from host.common.tracecontext import TRACEPARENT
from host.errors import FunctionNotFound, InvalidRequest, NotFound, ServiceUnavailable
from host.manifest.workflows import Step, Workflow
from host.orchestrator.execution import StepRunner
from host.orchestrator.leasing import lease_due
from host.orchestrator.transitions import clear_timer, goto, new_run
from host.platform.platform import Platform
from host.services.interface import RunWork
from host.services.runs import Timer

log = logging.getLogger("nimbus.workflows")

#: a running step's lease is its timeout plus this
LEASE_MARGIN_MS = 5_000
CLEANUP_EVERY_S = 10.0
#: how long finished runs of a workflow that is no longer deployed are kept
DEFAULT_RETENTION_S = 7 * 86400


class Orchestrator:
    """Starts, runs, inspects and cancels the runs of the app's workflows."""

    def __init__(
        self, platform: Platform, workflows: dict[str, Workflow], clock: Clock | None = None
    ) -> None:
        self.platform = platform
        self.workflows = workflows
        self.clock = clock or WallClock()
        self.store = platform.services.runs
        self.steps = StepRunner(platform, self.store, self.clock)

    # --- starting and inspecting -------------------------------------------------------

    def start(
        self, workflow: str, input: Any = None, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A new run (or, with a key used before, the run that key started)."""
        wf = self.workflows.get(workflow)
        if wf is None:
            known = ", ".join(sorted(self.workflows)) or "none"
            raise NotFound(f"no workflow named {workflow!r} (deployed: {known})")
        now = self.clock.now_ms()
        # started under a span (a traced HTTP request): every step continues its trace
        traceparent = self.platform.tracing.traceparent()

        def write(runs: RunWork) -> dict[str, Any]:
            if idempotency_key is not None:
                existing = runs.key_run(workflow, idempotency_key)
                found = runs.get(existing) if existing else None
                if found is not None:
                    return found
            run = new_run(new_id("run"), workflow, input, idempotency_key, now)
            if traceparent is not None:
                run[TRACEPARENT] = traceparent
            if idempotency_key is not None:
                runs.set_key(workflow, idempotency_key, run["id"])
            goto(runs, wf, run, wf.start, now)
            return run

        run = self.store.transact(write)
        self.platform.services.notify_committed()
        return run

    def get(self, run_id: str) -> dict[str, Any]:
        run = self.store.get(run_id)
        if run is None:
            raise NotFound(f"no workflow run {run_id!r}")
        return run

    def runs(
        self, workflow: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        runs = [
            r
            for r in self.store.all()
            if (workflow is None or r["workflow"] == workflow)
            and (status is None or r["status"] == status)
        ]
        runs.sort(key=lambda r: r["started_ms"], reverse=True)
        return runs[:limit]

    def cancel(self, run_id: str) -> dict[str, Any]:
        now = self.clock.now_ms()

        def write(runs: RunWork) -> dict[str, Any]:
            run = runs.get(run_id)
            if run is None:
                raise NotFound(f"no workflow run {run_id!r}")
            if run["status"] != "running":
                raise InvalidRequest(
                    f"run {run_id} is {run['status']}; only a running run can be cancelled"
                )
            clear_timer(runs, run)
            run.update(status="cancelled", ended_ms=now, current=None)
            runs.put(run)
            return run

        return self.store.transact(write)

    def cleanup(self) -> int:
        """Delete finished runs older than their workflow's retention."""
        now = self.clock.now_ms()

        def write(runs: RunWork) -> int:
            removed = 0
            for run in runs.all():
                wf = self.workflows.get(run["workflow"])
                retention_ms = int((wf.retention_s if wf else DEFAULT_RETENTION_S) * 1000)
                ended = run.get("ended_ms")
                if run["status"] != "running" and ended is not None and now - ended > retention_ms:
                    runs.delete(run["id"])
                    if run.get("idempotency_key"):
                        runs.delete_key(run["workflow"], run["idempotency_key"])
                    removed += 1
            return removed

        return self.store.transact(write)

    # --- running -----------------------------------------------------------------------

    def poll_once(self, limit: int = 16) -> int:
        """Run the steps that are due; how many timers were handled."""
        started = self.lease_due(self.clock.now_ms(), limit)
        for lease, run in started:
            self.steps.execute(self.workflows[run["workflow"]], lease, run)
        return len(started)

    def lease_due(self, now: int, limit: int) -> list[tuple[Timer, dict[str, Any]]]:
        """Lease up to ``limit`` steps due at ``now`` (without running them)."""
        return self.store.transact(
            lambda runs: lease_due(
                runs, self.workflows, now, limit, self._lease_ms, self.platform.incarnation
            )
        )

    def _lease_ms(self, step: Step) -> int:
        timeout = step.timeout_s
        if timeout is None:
            try:
                timeout = self.platform.registry.get(step.function).spec.timeout_s
            except FunctionNotFound:
                timeout = 10.0
        return int(timeout * 1000) + LEASE_MARGIN_MS

    def run(self, stop: threading.Event) -> None:
        """Drive the runs until ``stop`` is set (a background thread of the host)."""
        last_cleanup = time.monotonic()
        idle = IdlePoll()
        while not stop.is_set():
            try:
                handled = self.poll_once()
                if time.monotonic() - last_cleanup > CLEANUP_EVERY_S:
                    self.cleanup()
                    last_cleanup = time.monotonic()
            except ServiceUnavailable as e:  # a full disk: timers stay due, run later
                self.steps.faults.wait(stop, e)
                continue
            except Exception:
                log.exception("workflow engine step failed; retrying")
                handled = 0
            if handled:
                idle.found()
                if self.steps.faults.faults:  # the last commit met a storage fault
                    stop.wait(self.steps.faults.delay())
            elif not stop.is_set():
                idle.waited(self.platform.services.wait_for_commit(idle.wait_s))
