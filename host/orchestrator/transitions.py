"""How a run moves: to a step, through choices, to its end; after a success or a failure.

The pure part of the engine. Every function here changes one run record and its
timer through a ``RunWork`` (the services' typed operations inside one transaction)
and decides nothing about when it runs: the engine calls them while leasing, from a
step's commit hook, and after a failed attempt. A failed attempt is retried when the
step's ``RetryPolicy`` allows it (an attempt cut short by its host dying is retried
outside the policy, up to ``MAX_INTERRUPTIONS`` times).
"""

from __future__ import annotations

import logging
from typing import Any

from host.manifest.workflows import END, Step, Workflow
from host.services.interface import RunWork
from host.services.runs import Timer

log = logging.getLogger("nimbus.workflows")

#: an attempt cut short by its host dying is retried at once, outside the step's
#: retry policy (it is not the step's failure), at most this many times
MAX_INTERRUPTIONS = 10
#: choice steps followed in one go before the run is declared looping
MAX_CHOICES = 100
INTERRUPTED = "Interrupted"


def new_run(run_id: str, workflow: str, input: Any, key: str | None, now: int) -> dict[str, Any]:
    """The record of a run that has not reached its first step yet."""
    return {
        "id": run_id,
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
        "idempotency_key": key,
    }


def succeeded(
    runs: RunWork,
    wf: Workflow,
    run: dict[str, Any],
    lease: Timer,
    step_input: Any,
    output: Any,
    now: int,
) -> None:
    """Record the attempt under ``lease`` as succeeded with ``output``; go on."""
    clear_timer(runs, run)
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
    goto(runs, wf, run, wf.steps[lease.step].on_success, now)


def failed(
    runs: RunWork,
    wf: Workflow,
    run: dict[str, Any],
    step: Step,
    attempt: int,
    error: tuple[str, str],
    now: int,
    cause: str = "",
) -> None:
    """Record attempt ``attempt`` of ``step`` as failed with ``(kind, message)``; retry
    it, or take the step's failure path. ``cause`` is the kind the function's own error
    named (``PaymentDeclined``): a retry policy's ``on`` may list it beside ours."""
    kind, message = error
    detail = {"kind": kind, "message": message, **({"cause": cause} if cause else {})}
    started = run.get("running", {}).get("started_ms", now)
    run["history"].append(
        {
            "step": step.name,
            "attempt": attempt,
            "status": "failed",
            "started_ms": started,
            "ended_ms": now,
            "input": run.pop("last_input", None),
            "error": detail,
        }
    )
    run.pop("running", None)
    if kind == INTERRUPTED and _interruptions(run, step) <= MAX_INTERRUPTIONS:
        set_timer(runs, run, Timer(now, run["id"], step.name, attempt + 1))
        runs.put(run)
        return
    if step.retry.should_retry(kind, attempt) or (
        cause and step.retry.should_retry(cause, attempt)
    ):
        due = now + step.retry.delay_ms(attempt)
        set_timer(runs, run, Timer(due, run["id"], step.name, attempt + 1))
        runs.put(run)
        return
    _give_up(run, step, attempt, detail)
    goto(runs, wf, run, step.on_failure, now)


def _interruptions(run: dict[str, Any], step: Step) -> int:
    return sum(
        1
        for h in run["history"]
        if h["step"] == step.name and (h.get("error") or {}).get("kind") == INTERRUPTED
    )


def _give_up(run: dict[str, Any], step: Step, attempt: int, detail: dict[str, str]) -> None:
    error = {**detail, "step": step.name}
    kind, message = detail["kind"], detail["message"]
    run["steps"][step.name] = {"status": "failed", "error": error}
    if step.critical:
        run["error"] = error
        run["failed"] = True
        return
    warning = f"non-critical step {step.name} failed after {attempt} attempt(s): {kind}: {message}"
    run["warnings"].append(warning)
    log.warning("run %s: %s", run["id"], warning)


def goto(runs: RunWork, wf: Workflow, run: dict[str, Any], target: str, now: int) -> None:
    """Move the run to ``target``: follow choices, then schedule a task or end."""
    for _ in range(MAX_CHOICES):
        if target == END:
            run.update(
                status="failed" if run["failed"] else "succeeded", ended_ms=now, current=None
            )
            runs.put(run)
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
        runs.put(run)
        return
    run["current"] = target
    set_timer(runs, run, Timer(now, run["id"], target, 1))
    runs.put(run)


def set_timer(runs: RunWork, run: dict[str, Any], t: Timer) -> None:
    clear_timer(runs, run)
    runs.add_timer(t)
    run["timer_due"] = t.due_ms


def clear_timer(runs: RunWork, run: dict[str, Any]) -> None:
    if run.get("timer_due") is not None:
        runs.remove_timer(run["timer_due"], run["id"])
        run["timer_due"] = None


def is_current(run: dict[str, Any] | None, lease: Timer) -> bool:
    """Whether ``run`` is still at the attempt running under ``lease``."""
    return (
        run is not None
        and run["status"] == "running"
        and run["current"] == lease.step
        and run.get("timer_due") == lease.due_ms
    )
