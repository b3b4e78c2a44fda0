"""Workflow definitions: steps, choices, retries, transitions, validated at load.

Declared in nimbus.toml under ``[workflows.NAME]``::

    [workflows.OrderFulfillment]
    start = "validateOrder"            # required: the first step
    retention = "7d"                   # finished runs are deleted after this

    [workflows.OrderFulfillment.steps.validateOrder]
    function = "validate-order"        # a task step runs a function
    input = { orderId = "$input.orderId" }   # default: "$input"; see paths.py
    timeout = "30s"                    # the step's own time limit (and the function's)
    retry = { max_attempts = 3, initial = "1s", backoff_rate = 2.0,
              max_interval = "1m", on = ["FunctionFailed", "FunctionTimeout"] }
    on_success = "processPayment"      # a step, a handler, or "end" (the default)
    on_failure = "handleError"         # where an exhausted failure goes (default "end")
    critical = true                    # false: a failure logs a warning and goes on
                                       #   to on_failure without failing the run

    [workflows.OrderFulfillment.steps.route]
    type = "choice"
    choices = [ { path = "$validateOrder.output.total", gt = 100, next = "review" } ]
    default = "processPayment"         # operators: equals, in, exists, gt, gte, lt, lte

    [workflows.OrderFulfillment.handlers.handleError]
    function = "handle-error"          # handlers are steps reached by on_failure;
    input = { error = "$error" }       #   "$error" is the failure that led there

A retry's ``on`` lists error kinds: ours (``FunctionFailed``, ``FunctionTimeout``, …) or
the kind a function's own failure names (``{"error": {"kind": "PaymentUnavailable"}}``),
so a step can retry an outage and not a decline. Retries wait
``initial * backoff_rate ** (attempt - 1)``, capped at ``max_interval``,
without jitter, so attempt times are exactly what the policy says. A load error names
the workflow, the step and what is wrong: unknown step or function, unreachable step,
a loop with no way to the end, a bad path.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from host.common import paths
from host.common.retry import RetryPolicy
from host.common.units import parse_duration
from host.errors import ManifestError

END = "end"
RETRYABLE_DEFAULT = (
    "FunctionFailed",
    "FunctionTimeout",
    "FunctionCrashed",
    "FunctionOutOfMemory",
    "Overloaded",
    "ConditionFailed",
    "ServiceUnavailable",
    "Interrupted",
)
OPERATORS = ("equals", "in", "exists", "gt", "gte", "lt", "lte")


def default_retry() -> RetryPolicy:
    """A step's policy when it says none: one attempt."""
    return RetryPolicy(max_attempts=1, retry_on=RETRYABLE_DEFAULT, jitter=False)


class Choice(Struct, frozen=True):
    """One branch of a choice step: a path, an operator and value, the next step."""

    path: tuple[str, ...]
    op: str
    value: Any
    next: str

    def matches(self, state: dict[str, Any]) -> bool:
        if self.op == "exists":
            return paths.exists(self.path, state) == bool(self.value)
        found = paths.resolve(self.path, state)
        if self.op == "equals":
            return bool(found == self.value)
        if self.op == "in":
            return bool(found in self.value)
        if not isinstance(found, int | float) or isinstance(found, bool):
            return False
        limit = float(self.value)
        return {
            "gt": found > limit,
            "gte": found >= limit,
            "lt": found < limit,
            "lte": found <= limit,
        }[self.op]


class Step(Struct, frozen=True):
    """A named step: a task (runs a function) or a choice (picks the next step)."""

    name: str
    type: str = "task"  # "task" or "choice"
    function: str = ""
    input: Any = "$input"
    timeout_s: float | None = None
    retry: RetryPolicy = field(default_factory=default_retry)
    on_success: str = END
    on_failure: str = END
    critical: bool = True
    handler: bool = False
    choices: tuple[Choice, ...] = ()
    default: str = END

    def targets(self) -> list[str]:
        if self.type == "choice":
            return [c.next for c in self.choices] + [self.default]
        return [self.on_success, self.on_failure]


class Workflow(Struct, frozen=True):
    """A validated workflow: its start step, every step and handler, its retention."""

    name: str
    start: str
    steps: dict[str, Step]
    retention_s: float = 7 * 86400.0


class _Problems:
    def __init__(self, where: str) -> None:
        self.where = where
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{self.where}: {key}: {message}")


def parse_workflows(
    raw: dict[str, Any], functions: set[str] | None, where: str = "nimbus.toml"
) -> dict[str, Workflow]:
    """Every workflow of a manifest's ``[workflows]`` table, validated; ``functions``
    (when known) are the names a task step may run."""
    problems = _Problems(where)
    out = {}
    for name, body in raw.items():
        wf = _workflow(name, body, functions, problems)
        if wf is not None:
            out[name] = wf
    if problems.items:
        raise ManifestError("\n".join(problems.items))
    return out


def _workflow(
    name: str, body: Any, functions: set[str] | None, problems: _Problems
) -> Workflow | None:
    key = f"workflows.{name}"
    if not isinstance(body, dict):
        problems.add(key, "expected a table")
        return None
    unknown = set(body) - {"start", "steps", "handlers", "retention"}
    for k in sorted(unknown):
        problems.add(f"{key}.{k}", "unknown key")
    steps: dict[str, Step] = {}
    for section, handler in (("steps", False), ("handlers", True)):
        table = body.get(section) or {}
        if not isinstance(table, dict):
            problems.add(f"{key}.{section}", "expected a table of steps")
            continue
        for sname, sbody in table.items():
            if sname in steps or sname == END:
                problems.add(f"{key}.{section}.{sname}", "a step of that name exists already")
                continue
            step = _step(sname, sbody, handler, f"{key}.{section}.{sname}", functions, problems)
            if step is not None:
                steps[sname] = step
    start = body.get("start")
    if not isinstance(start, str) or start not in steps:
        problems.add(f"{key}.start", f"must name one of the steps, got {start!r}")
        return None
    retention = 7 * 86400.0
    if "retention" in body:
        try:
            retention = parse_duration(body["retention"])
        except ValueError as e:
            problems.add(f"{key}.retention", str(e))
    wf = Workflow(name, start, steps, retention)
    _check_graph(wf, key, problems)
    return wf


def _step(
    name: str,
    body: Any,
    handler: bool,
    key: str,
    functions: set[str] | None,
    problems: _Problems,
) -> Step | None:
    if not isinstance(body, dict):
        problems.add(key, "expected a table")
        return None
    kind = body.get("type", "task")
    allowed = {
        "type",
        "function",
        "input",
        "timeout",
        "retry",
        "on_success",
        "on_failure",
        "critical",
    }
    if kind == "choice":
        allowed = {"type", "choices", "default"}
    elif kind != "task":
        problems.add(f"{key}.type", f"expected 'task' or 'choice', got {kind!r}")
        return None
    for k in sorted(set(body) - allowed):
        problems.add(
            f"{key}.{k}", "unknown key" + (" for a choice step" if kind == "choice" else "")
        )
    if kind == "choice":
        return _choice(name, body, key, problems)
    function = body.get("function")
    if not isinstance(function, str) or not function:
        problems.add(f"{key}.function", "a task step needs the function it runs")
        function = ""
    elif functions is not None and function not in functions:
        problems.add(f"{key}.function", f"names no function: {function!r}")
    template = body.get("input", "$input")
    for p in paths.paths_in(template):
        try:
            paths.parse(p)
        except paths.PathError as e:
            problems.add(f"{key}.input", str(e))
    timeout = None
    if "timeout" in body:
        try:
            timeout = parse_duration(body["timeout"])
        except ValueError as e:
            problems.add(f"{key}.timeout", str(e))
    critical = body.get("critical", True)
    if not isinstance(critical, bool):
        problems.add(f"{key}.critical", f"expected true or false, got {critical!r}")
        critical = True
    return Step(
        name=name,
        function=function,
        input=template,
        timeout_s=timeout,
        retry=_retry(body.get("retry"), f"{key}.retry", problems),
        on_success=str(body.get("on_success", END)),
        on_failure=str(body.get("on_failure", END)),
        critical=critical,
        handler=handler,
    )


def _retry(raw: Any, key: str, problems: _Problems) -> RetryPolicy:
    if raw is None:
        return default_retry()
    if not isinstance(raw, dict):
        problems.add(key, "expected a table")
        return default_retry()
    for k in sorted(set(raw) - {"max_attempts", "initial", "backoff_rate", "max_interval", "on"}):
        problems.add(f"{key}.{k}", "unknown key")
    try:
        max_attempts = int(raw.get("max_attempts", 1))
        initial = parse_duration(raw.get("initial", 1))
        rate = float(raw.get("backoff_rate", 2.0))
        max_interval = parse_duration(raw.get("max_interval", 300))
    except (TypeError, ValueError) as e:
        problems.add(key, str(e))
        return default_retry()
    on = raw.get("on", list(RETRYABLE_DEFAULT))
    if not isinstance(on, list) or not all(isinstance(x, str) for x in on):
        problems.add(f"{key}.on", "expected a list of error kinds")
        on = list(RETRYABLE_DEFAULT)
    if max_attempts < 1 or rate < 1:
        problems.add(key, "max_attempts must be >= 1 and backoff_rate >= 1")
    return RetryPolicy(
        max(max_attempts, 1), initial, max(rate, 1.0), max_interval, tuple(on), jitter=False
    )


def _choice(name: str, body: dict[str, Any], key: str, problems: _Problems) -> Step:
    choices = []
    raw = body.get("choices")
    if not isinstance(raw, list) or not raw:
        problems.add(f"{key}.choices", "a choice step needs a list of choices")
        raw = []
    for i, c in enumerate(raw):
        ck = f"{key}.choices[{i}]"
        if not isinstance(c, dict):
            problems.add(ck, "expected a table")
            continue
        ops = [op for op in OPERATORS if op in c]
        extra = set(c) - set(OPERATORS) - {"path", "next"}
        if len(ops) != 1 or extra:
            problems.add(ck, f"needs 'path', 'next' and exactly one of {', '.join(OPERATORS)}")
            continue
        try:
            parsed = paths.parse(str(c.get("path", "")))
        except paths.PathError as e:
            problems.add(f"{ck}.path", str(e))
            continue
        if ops[0] == "in" and not isinstance(c["in"], list):
            problems.add(f"{ck}.in", "expected a list")
            continue
        choices.append(Choice(parsed, ops[0], c[ops[0]], str(c.get("next", END))))
    return Step(
        name=name, type="choice", choices=tuple(choices), default=str(body.get("default", END))
    )


def _check_graph(wf: Workflow, key: str, problems: _Problems) -> None:
    for step in wf.steps.values():
        for target in step.targets():
            if target != END and target not in wf.steps:
                problems.add(f"{key}.steps.{step.name}", f"goes to unknown step {target!r}")
        for p in paths.paths_in(step.input) + ["$" + ".".join(c.path) for c in step.choices]:
            try:
                head = paths.parse(p)[0]
            except paths.PathError:
                continue  # reported where the step was read
            if head not in ("input", "error") and head not in wf.steps:
                problems.add(f"{key}.steps.{step.name}", f"path {p!r} names no step")
    reachable = _reach(wf, wf.start)
    for name in wf.steps:
        if name not in reachable:
            problems.add(f"{key}.steps.{name}", "is unreachable from the start step")
    for name in reachable:
        if END not in _reach(wf, name, include_end=True):
            problems.add(f"{key}.steps.{name}", "is in a loop with no way to 'end'")


def _reach(wf: Workflow, start: str, include_end: bool = False) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        step = wf.steps.get(name)
        if step is not None:
            todo.extend(step.targets())
    if not include_end:
        seen.discard(END)
    return seen
