"""Running workflows durably: every step through the one invoke path, its completion
committed in the same transaction as its effects.

``poll_once`` takes the timers that are due, leases them, and runs each step: the
function is invoked with a ``workflow`` event whose id is ``run/step/attempt``; when
it succeeds, the platform commits its effects *and* ``_complete`` (the run's new
state, the history entry, the next step's timer) in one LMDB transaction. A host
killed before that commit leaves the lease, which fires later and retries the step
as interrupted; a host killed after it has nothing to redo. So a completed step is
never run again and no step's effects are applied twice.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from host.common import paths
from host.common.clock import Clock, WallClock
from host.common.ids import new_id
from host.errors import FunctionNotFound, InvalidRequest, NimbusError, NotFound
from host.manifest.workflows import END, Step, Workflow
from host.orchestrator.store import RunStore, Timer
from host.platform.platform import Platform

log = logging.getLogger("nimbus.workflows")

#: a running step's lease is its timeout plus this
LEASE_MARGIN_MS = 5_000
#: an attempt cut short by its host dying is retried at once, outside the step's
#: retry policy (it is not the step's failure), at most this many times
MAX_INTERRUPTIONS = 10
#: choice steps followed in one go before the run is declared looping
MAX_CHOICES = 100
CLEANUP_EVERY_S = 10.0


class _Stale(Exception):
    """The run moved on (cancelled, or the step recovered elsewhere): do not commit."""


class Orchestrator:
    """Starts, runs, inspects and cancels the runs of the app's workflows."""

    def __init__(
        self, platform: Platform, workflows: dict[str, Workflow], clock: Clock | None = None
    ) -> None:
        self.platform = platform
        self.workflows = workflows
        self.clock = clock or WallClock()
        self.store = RunStore(platform.services.storage)
        self._storage = platform.services.storage

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

        def write(txn: Any) -> dict[str, Any]:
            if idempotency_key is not None:
                existing = self.store.key_run(txn, workflow, idempotency_key)
                found = self.store.get(txn, existing) if existing else None
                if found is not None:
                    return found
            run: dict[str, Any] = {
                "id": new_id("run"),
                "workflow": workflow,
                "status": "running",
                "input": input,
                "current": None,
                "started_ms": now,
                "ended_ms": None,
                "output": None,
                "error": None,
                "failed": False,
                "warnings": [],
                "steps": {},
                "history": [],
                "timer_due": None,
                "idempotency_key": idempotency_key,
            }
            if idempotency_key is not None:
                self.store.set_key(txn, workflow, idempotency_key, run["id"])
            self._goto(txn, wf, run, wf.start, now)
            return run

        run: dict[str, Any] = self._storage.write(write)
        self.platform.services.notify_committed()
        return run

    def get(self, run_id: str) -> dict[str, Any]:
        with self._storage.read() as txn:
            run = self.store.get(txn, run_id)
        if run is None:
            raise NotFound(f"no workflow run {run_id!r}")
        return run

    def runs(
        self, workflow: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        with self._storage.read() as txn:
            runs = self.store.all(txn)
        runs = [
            r
            for r in runs
            if (workflow is None or r["workflow"] == workflow)
            and (status is None or r["status"] == status)
        ]
        runs.sort(key=lambda r: r["started_ms"], reverse=True)
        return runs[:limit]

    def cancel(self, run_id: str) -> dict[str, Any]:
        now = self.clock.now_ms()

        def write(txn: Any) -> dict[str, Any]:
            run = self.store.get(txn, run_id)
            if run is None:
                raise NotFound(f"no workflow run {run_id!r}")
            if run["status"] != "running":
                raise InvalidRequest(
                    f"run {run_id} is {run['status']}; only a running run can be cancelled"
                )
            self._clear_timer(txn, run)
            run.update(status="cancelled", ended_ms=now, current=None)
            self.store.put(txn, run)
            return run

        cancelled: dict[str, Any] = self._storage.write(write)
        return cancelled

    def cleanup(self) -> int:
        """Delete finished runs older than their workflow's retention."""
        now = self.clock.now_ms()

        def write(txn: Any) -> int:
            removed = 0
            for run in self.store.all(txn):
                wf = self.workflows.get(run["workflow"])
                retention_ms = int((wf.retention_s if wf else 7 * 86400) * 1000)
                ended = run.get("ended_ms")
                if run["status"] != "running" and ended is not None and now - ended > retention_ms:
                    self.store.delete(txn, run["id"])
                    if run.get("idempotency_key"):
                        self.store.delete_key(txn, run["workflow"], run["idempotency_key"])
                    removed += 1
            return removed

        removed: int = self._storage.write(write)
        return removed

    # --- running -----------------------------------------------------------------------

    def poll_once(self, limit: int = 16) -> int:
        """Run the steps that are due; how many timers were handled."""
        now = self.clock.now_ms()
        started: list[tuple[Timer, dict[str, Any]]] = self._storage.write(
            lambda txn: self._lease(txn, now, limit)
        )
        for timer, run in started:
            self._execute(timer, run)
        return len(started)

    def _lease(self, txn: Any, now: int, limit: int) -> list[tuple[Timer, dict[str, Any]]]:
        out = []
        for t in self.store.due(txn, now, limit):
            self.store.remove_timer(txn, t.due_ms, t.run_id)
            run = self.store.get(txn, t.run_id)
            wf = self.workflows.get(run["workflow"]) if run else None
            if run is None or wf is None or run["status"] != "running" or run["current"] != t.step:
                continue  # a stale timer of a run that moved on
            run["timer_due"] = None
            step = wf.steps[t.step]
            if t.leased:  # the attempt running under this lease never finished
                self._failed(
                    txn,
                    wf,
                    run,
                    step,
                    t.attempt,
                    "Interrupted",
                    "the step did not finish (host stopped, or it outlived its lease)",
                    now,
                )
                continue
            lease = Timer(now + self._lease_ms(step), t.run_id, t.step, t.attempt, leased=True)
            self.store.add_timer(txn, lease)
            run["timer_due"] = lease.due_ms
            run["running"] = {"step": step.name, "attempt": t.attempt, "started_ms": now}
            self.store.put(txn, run)
            out.append((lease, run))
        return out

    def _lease_ms(self, step: Step) -> int:
        timeout = step.timeout_s
        if timeout is None:
            try:
                timeout = self.platform.registry.get(step.function).spec.timeout_s
            except FunctionNotFound:
                timeout = 10.0
        return int(timeout * 1000) + LEASE_MARGIN_MS

    def _execute(self, lease: Timer, run: dict[str, Any]) -> None:
        wf = self.workflows[run["workflow"]]
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

        def complete(txn: Any) -> None:
            self._complete(txn, wf, lease, step_input, result_box)

        result_box: dict[str, Any] = {}
        try:
            result = self.platform.invoke(
                step.function,
                event,
                on_commit=complete,
                idempotency_id=event_id,
                timeout_s=step.timeout_s,
                before_commit=lambda response: result_box.update(output=response.get("output")),
            )
            del result
        except _Stale:
            return
        except NimbusError as e:
            kind = e.kind if not hasattr(e, "error_kind") else str(e.error_kind)
            self._fail_later(wf, lease, step, step_input, e.kind, f"{kind}: {e}")
        except Exception as e:
            log.exception("step %s of run %s failed unexpectedly", step.name, run["id"])
            self._fail_later(wf, lease, step, step_input, "InternalError", repr(e))

    def _complete(
        self, txn: Any, wf: Workflow, lease: Timer, step_input: Any, box: dict[str, Any]
    ) -> None:
        run = self._current(txn, lease)
        now = self.clock.now_ms()
        self._clear_timer(txn, run)
        output = box.get("output")
        run["history"].append(
            {
                "step": lease.step,
                "attempt": lease.attempt,
                "status": "succeeded",
                "started_ms": run["running"]["started_ms"],
                "ended_ms": now,
                "input": step_input,
                "output": output,
            }
        )
        run["steps"][lease.step] = {"status": "succeeded", "output": output}
        run["output"] = output
        run.pop("running", None)
        self._goto(txn, wf, run, wf.steps[lease.step].on_success, now)

    def _current(self, txn: Any, lease: Timer) -> dict[str, Any]:
        run = self.store.get(txn, lease.run_id)
        if (
            run is None
            or run["status"] != "running"
            or run["current"] != lease.step
            or run.get("timer_due") != lease.due_ms
        ):
            raise _Stale()
        return run

    def _fail_later(
        self, wf: Workflow, lease: Timer, step: Step, step_input: Any, kind: str, message: str
    ) -> None:
        now = self.clock.now_ms()

        def write(txn: Any) -> None:
            try:
                run = self._current(txn, lease)
            except _Stale:
                return
            self._clear_timer(txn, run)
            run["last_input"] = step_input
            self._failed(txn, wf, run, step, lease.attempt, kind, message, now)

        self._storage.write(write)

    def _failed(
        self,
        txn: Any,
        wf: Workflow,
        run: dict[str, Any],
        step: Step,
        attempt: int,
        kind: str,
        message: str,
        now: int,
    ) -> None:
        started = run.get("running", {}).get("started_ms", now)
        run["history"].append(
            {
                "step": step.name,
                "attempt": attempt,
                "status": "failed",
                "started_ms": started,
                "ended_ms": now,
                "input": run.pop("last_input", None),
                "error": {"kind": kind, "message": message},
            }
        )
        run.pop("running", None)
        interrupted = (
            [
                h
                for h in run["history"]
                if h["step"] == step.name and (h.get("error") or {}).get("kind") == "Interrupted"
            ]
            if kind == "Interrupted"
            else []
        )
        if kind == "Interrupted" and len(interrupted) <= MAX_INTERRUPTIONS:
            self._set_timer(txn, run, Timer(now, run["id"], step.name, attempt + 1))
            self.store.put(txn, run)
            return
        if kind in step.retry.on and attempt < step.retry.max_attempts:
            self._set_timer(
                txn,
                run,
                Timer(now + step.retry.delay_ms(attempt), run["id"], step.name, attempt + 1),
            )
            self.store.put(txn, run)
            return
        error = {"kind": kind, "message": message, "step": step.name}
        run["steps"][step.name] = {"status": "failed", "error": error}
        if step.critical:
            run["error"] = error
            run["failed"] = True
            target = step.on_failure
        else:
            warning = (
                f"non-critical step {step.name} failed after {attempt} attempt(s): "
                f"{kind}: {message}"
            )
            run["warnings"].append(warning)
            log.warning("run %s: %s", run["id"], warning)
            target = step.on_failure
        self._goto(txn, wf, run, target, now)

    def _goto(self, txn: Any, wf: Workflow, run: dict[str, Any], target: str, now: int) -> None:
        """Move the run to ``target``: follow choices, then schedule a task or end."""
        for _ in range(MAX_CHOICES):
            if target == END:
                run.update(
                    status="failed" if run["failed"] else "succeeded", ended_ms=now, current=None
                )
                self.store.put(txn, run)
                return
            step = wf.steps[target]
            if step.type != "choice":
                break
            state = {"input": run["input"], "error": run.get("error"), **run["steps"]}
            chosen = next((c.next for c in step.choices if c.matches(state)), step.default)
            run["history"].append(
                {
                    "step": step.name,
                    "attempt": 1,
                    "status": "chose",
                    "started_ms": now,
                    "ended_ms": now,
                    "output": chosen,
                }
            )
            target = chosen
        else:
            run.update(
                status="failed",
                ended_ms=now,
                current=None,
                failed=True,
                error={"kind": "Loop", "message": "too many choices in a row"},
            )
            self.store.put(txn, run)
            return
        run["current"] = target
        self._set_timer(txn, run, Timer(now, run["id"], target, 1))
        self.store.put(txn, run)

    def _set_timer(self, txn: Any, run: dict[str, Any], t: Timer) -> None:
        self._clear_timer(txn, run)
        self.store.add_timer(txn, t)
        run["timer_due"] = t.due_ms

    def _clear_timer(self, txn: Any, run: dict[str, Any]) -> None:
        if run.get("timer_due") is not None:
            self.store.remove_timer(txn, run["timer_due"], run["id"])
            run["timer_due"] = None

    def run(self, stop: threading.Event) -> None:
        """Drive the runs until ``stop`` is set (a background thread of the host)."""
        last_cleanup = time.monotonic()
        while not stop.is_set():
            try:
                handled = self.poll_once()
                if time.monotonic() - last_cleanup > CLEANUP_EVERY_S:
                    self.cleanup()
                    last_cleanup = time.monotonic()
            except Exception:
                log.exception("workflow engine step failed; retrying")
                handled = 0
            if not handled and not stop.is_set():
                self.platform.services.wait_for_commit(0.02)
