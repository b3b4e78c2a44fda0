"""Running one leased step through the one invoke path, its completion in the commit.

The function is invoked with a ``workflow`` event whose id is ``run/step/attempt``;
when it succeeds, the platform commits its effects *and* the step's transition (the
run's new state, the history entry, the next step's timer) in one transaction, through
the ``StepCompletion`` commit hook. A host killed before that commit leaves the lease,
which fires later and retries the step as interrupted; a host killed after it has
nothing to redo. So a completed step is never run again and no step's effects are
applied twice. If the run moved on meanwhile (cancelled, or the step was recovered
elsewhere), the hook declines the commit and nothing is kept.
"""

from __future__ import annotations

import logging
from typing import Any

from host.common import paths
from host.common.clock import Clock
from host.common.tracecontext import TRACEPARENT
from host.errors import NimbusError, Overloaded, ServiceUnavailable
from host.manifest.workflows import Step, Workflow
from host.orchestrator.transitions import clear_timer, failed, is_current, succeeded
from host.platform.platform import Platform
from host.platform.request import CommitDeclined, InvocationRequest
from host.services.faults import FaultPacer
from host.services.interface import RunStore, RunWork, UnitOfWork
from host.services.runs import Timer

log = logging.getLogger("nimbus.workflows")


#: how soon a step whose function had no free slot is tried again (the same attempt)
OVERLOADED_RETRY_S = 0.1


class StepCompletion:
    """The commit hook of a step: its output recorded and the run moved on, with the
    step's effects, unless the run moved on without it."""

    def __init__(self, wf: Workflow, lease: Timer, step_input: Any, clock: Clock) -> None:
        self.wf = wf
        self.lease = lease
        self.step_input = step_input
        self.clock = clock
        self.output: Any = None

    def check(self, response: dict[str, Any]) -> None:
        self.output = response.get("output")

    def apply(self, work: UnitOfWork) -> None:
        runs = work.runs
        run = runs.get(self.lease.run_id)
        if run is None or not is_current(run, self.lease):
            raise CommitDeclined(f"run {self.lease.run_id} moved on from {self.lease.step}")
        now = self.clock.now_ms()
        succeeded(runs, self.wf, run, self.lease, self.step_input, self.output, now)


class StepRunner:
    """Runs leased steps and records their failures."""

    def __init__(self, platform: Platform, runs: RunStore, clock: Clock) -> None:
        self.platform = platform
        self.runs = runs
        self.clock = clock
        self.faults = FaultPacer("workflow engine")

    def execute(self, wf: Workflow, lease: Timer, run: dict[str, Any]) -> None:
        step = wf.steps[lease.step]
        state = {"input": run["input"], "error": run.get("error"), **run["steps"]}
        step_input = paths.render(step.input, state)
        event_id = f"{run['id']}/{step.name}/{lease.attempt}"
        event = {
            "kind": "workflow",
            "id": event_id,
            "workflow": wf.name,
            "run_id": run["id"],
            "step": step.name,
            "attempt": lease.attempt,
            "input": step_input,
        }
        if TRACEPARENT in run:  # the run was started in a traced request
            event[TRACEPARENT] = run[TRACEPARENT]
        request = InvocationRequest(
            step.function,
            event,
            idempotency_ids=(event_id,),
            timeout_s=step.timeout_s,
            commit=StepCompletion(wf, lease, step_input, self.clock),
        )
        try:
            self.platform.execute(request)
            self.faults.ok()
        except CommitDeclined:
            return
        except ServiceUnavailable as e:  # the store failed, not the step: not an attempt
            self._postpone(lease, self.faults.failed(e))
        except Overloaded:  # Throttled: at its max_concurrency; not an attempt either
            self._postpone(lease, OVERLOADED_RETRY_S)
        except NimbusError as e:
            cause = str(getattr(e, "error_kind", ""))
            kind = cause or e.kind
            self._fail_later(wf, lease, step, step_input, (e.kind, f"{kind}: {e}"), cause)
        except Exception as e:
            log.exception("step %s of run %s failed unexpectedly", step.name, run["id"])
            self._fail_later(wf, lease, step, step_input, ("InternalError", repr(e)))

    def _postpone(self, lease: Timer, delay_s: float) -> None:
        """Run the same attempt again after ``delay_s`` (its commit met a storage
        fault). If even this cannot be written, the lease fires later as interrupted."""
        due = self.clock.now_ms() + max(int(delay_s * 1000), 1)

        def write(runs: RunWork) -> None:
            run = runs.get(lease.run_id)
            if run is None or not is_current(run, lease):
                return
            clear_timer(runs, run)
            run.pop("running", None)
            runs.add_timer(Timer(due, lease.run_id, lease.step, lease.attempt))
            run["timer_due"] = due
            runs.put(run)

        self.runs.transact(write)

    def _fail_later(
        self,
        wf: Workflow,
        lease: Timer,
        step: Step,
        step_input: Any,
        error: tuple[str, str],
        cause: str = "",
    ) -> None:
        now = self.clock.now_ms()

        def write(runs: RunWork) -> None:
            run = runs.get(lease.run_id)
            if run is None or not is_current(run, lease):
                return
            clear_timer(runs, run)
            run["last_input"] = step_input
            failed(runs, wf, run, step, lease.attempt, error, now, cause)

        self.runs.transact(write)
