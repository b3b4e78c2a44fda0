"""The seed's OrderFulfillment workflow on real guests, with an injected clock: every
path, retries at the times the policy says, timeouts, choices, idempotent starts,
cancellation, retention, and definitions refused with clear errors."""

from __future__ import annotations

import itertools
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest

from host.common.clock import ManualClock
from host.errors import ManifestError
from host.manifest.functions import function_spec_from_dict
from host.manifest.workflows import parse_workflows
from host.orchestrator.engine import Orchestrator
from host.platform.platform import Platform, PlatformOptions

Build = Callable[[str], Path]
T0 = 1_800_000_000_000

FUNCTIONS = {
    "validate-order": "validate",
    "process-payment": "payment",
    "ship-order": "ship",
    "send-notification": "notify",
    "handle-error": "handleError",
    "handle-payment-failure": "paymentFailure",
}

ORDER_FULFILLMENT = """
[workflows.OrderFulfillment]
start = "validateOrder"
retention = "1h"

[workflows.OrderFulfillment.steps.validateOrder]
function = "validate-order"
on_success = "route"
on_failure = "handleError"

[workflows.OrderFulfillment.steps.route]
type = "choice"
choices = [ { path = "$input.total", gt = 1000, next = "handleError" } ]
default = "processPayment"

[workflows.OrderFulfillment.steps.processPayment]
function = "process-payment"
input = { orderId = "$validateOrder.output.orderId", fail = "$input.fail", hang = "$input.hang" }
retry = { max_attempts = 4, initial = "1s", backoff_rate = 2.0, max_interval = "1m" }
on_success = "shipOrder"
on_failure = "handlePaymentFailure"

[workflows.OrderFulfillment.steps.shipOrder]
function = "ship-order"
timeout = "30s"
on_success = "sendNotification"
on_failure = "handleError"

[workflows.OrderFulfillment.steps.sendNotification]
function = "send-notification"
critical = false

[workflows.OrderFulfillment.handlers.handleError]
function = "handle-error"
input = { order = "$input", error = "$error" }

[workflows.OrderFulfillment.handlers.handlePaymentFailure]
function = "handle-payment-failure"
input = { order = "$input", error = "$error" }
"""


@pytest.fixture
def wf_platform(tmp_path: Path, build: Build) -> Iterator[Platform]:
    # time_scale 100: the engine's time limits pass 100x faster (a 30 s step
    # timeout fires after 0.3 s), while the run's clock is the injected one
    p = Platform(tmp_path / "data", PlatformOptions(time_scale=100.0))
    wasm = build("wfstep_zig").read_bytes()
    for name, step in FUNCTIONS.items():
        config = {
            "wasm": "s.wasm",
            "env": {"STEP": step},
            "timeout": "60s",
            "grants": {"tables": {"wf": "read-write"}},
        }
        p.deploy(function_spec_from_dict(name, config), wasm)
    yield p
    p.close()


@pytest.fixture
def engine(wf_platform: Platform) -> Orchestrator:
    workflows = parse_workflows(tomllib.loads(ORDER_FULFILLMENT)["workflows"], set(FUNCTIONS))
    return Orchestrator(wf_platform, workflows, ManualClock(T0))


def settle(
    engine: Orchestrator, run_id: str, step_ms: int = 0, rounds: int = 100
) -> dict[str, Any]:
    clock = engine.clock
    assert isinstance(clock, ManualClock)
    for _ in range(rounds):
        run = engine.get(run_id)
        if run["status"] != "running":
            return run
        if not engine.poll_once():
            clock.advance(step_ms or 1000)
    return engine.get(run_id)


def count(platform: Platform, step: str) -> int:
    with platform.services.storage.read() as txn:
        found = platform.services.tables.get(txn, "wf", f"count.{step}".encode())
    return 0 if found is None else int(msgpack.unpackb(found[0]))


def steps_of(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(h["step"], h["status"]) for h in run["history"]]


def test_all_steps_succeed(engine: Orchestrator, wf_platform: Platform) -> None:
    run = settle(engine, engine.start("OrderFulfillment", {"orderId": "o-1", "total": 42})["id"])
    assert run["status"] == "succeeded", run
    assert steps_of(run) == [
        ("validateOrder", "succeeded"),
        ("route", "chose"),
        ("processPayment", "succeeded"),
        ("shipOrder", "succeeded"),
        ("sendNotification", "succeeded"),
    ]
    assert run["steps"]["processPayment"]["output"]["orderId"] == "o-1"  # fed by a path
    assert all(count(wf_platform, s) == 1 for s in ("validate", "payment", "ship", "notify"))
    assert all(h["ended_ms"] >= h["started_ms"] for h in run["history"])


def test_validation_failure_goes_to_handle_error(
    engine: Orchestrator, wf_platform: Platform
) -> None:
    run = settle(
        engine, engine.start("OrderFulfillment", {"orderId": "o-2", "fail": ["validate"]})["id"]
    )
    assert run["status"] == "failed"
    assert steps_of(run) == [("validateOrder", "failed"), ("handleError", "succeeded")]
    assert run["error"]["step"] == "validateOrder" and run["error"]["kind"] == "FunctionFailed"
    assert count(wf_platform, "handleError") == 1 and count(wf_platform, "payment") == 0


def test_payment_retries_with_exponential_backoff_then_its_handler(
    engine: Orchestrator, wf_platform: Platform
) -> None:
    run = settle(
        engine,
        engine.start("OrderFulfillment", {"orderId": "o-3", "fail": ["payment"]})["id"],
        step_ms=100,
    )
    assert run["status"] == "failed"
    attempts = [h for h in run["history"] if h["step"] == "processPayment"]
    assert [h["attempt"] for h in attempts] == [1, 2, 3, 4]  # the first try and 3 retries
    starts = [h["started_ms"] for h in attempts]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # each wait is the policy's (1 s, 2 s, 4 s) rounded up to the 100 ms the clock steps by
    assert [round(g / 1000) for g in gaps] == [1, 2, 4]
    assert all(0 <= g - 1000 * 2**i < 100 for i, g in enumerate(gaps))
    assert steps_of(run)[-1] == ("handlePaymentFailure", "succeeded")
    assert count(wf_platform, "payment") == 0 and count(wf_platform, "ship") == 0


def test_notification_failure_is_a_warning(engine: Orchestrator) -> None:
    run = settle(
        engine, engine.start("OrderFulfillment", {"orderId": "o-4", "fail": ["notify"]})["id"]
    )
    assert run["status"] == "succeeded"
    assert steps_of(run)[-1] == ("sendNotification", "failed")
    assert len(run["warnings"]) == 1 and "sendNotification" in run["warnings"][0]


def test_a_step_over_its_timeout_fails_to_its_handler(engine: Orchestrator) -> None:
    run = settle(
        engine, engine.start("OrderFulfillment", {"orderId": "o-5", "hang": ["ship"]})["id"]
    )
    assert run["status"] == "failed"
    assert run["error"]["kind"] == "FunctionTimeout" and run["error"]["step"] == "shipOrder"
    assert steps_of(run)[-2:] == [("shipOrder", "failed"), ("handleError", "succeeded")]


def test_choice_routes_big_orders(engine: Orchestrator) -> None:
    run = settle(engine, engine.start("OrderFulfillment", {"orderId": "o-6", "total": 5000})["id"])
    assert steps_of(run) == [
        ("validateOrder", "succeeded"),
        ("route", "chose"),
        ("handleError", "succeeded"),
    ]


def test_idempotent_start_cancel_and_retention(engine: Orchestrator) -> None:
    first = engine.start("OrderFulfillment", {"orderId": "o-7"}, idempotency_key="order-7")
    again = engine.start("OrderFulfillment", {"orderId": "other"}, idempotency_key="order-7")
    assert again["id"] == first["id"] and again["input"] == {"orderId": "o-7"}
    cancelled = engine.cancel(first["id"])
    assert cancelled["status"] == "cancelled"
    assert engine.poll_once() == 0  # its timer went with it
    done = settle(engine, engine.start("OrderFulfillment", {"orderId": "o-8"})["id"])
    assert done["status"] == "succeeded"
    assert len(engine.runs()) == 2
    engine.clock.advance(2 * 3_600_000)  # type: ignore[attr-defined]
    assert engine.cleanup() == 2 and engine.runs() == []


def test_an_interrupted_step_is_retried_not_repeated(
    engine: Orchestrator, wf_platform: Platform
) -> None:
    """A host that died mid-step leaves its lease; when it expires, the step runs again
    as a new attempt, and the steps completed before are not run again."""
    run_id = engine.start("OrderFulfillment", {"orderId": "o-9"})["id"]
    engine.poll_once()  # validateOrder completes
    # processPayment is leased, then the "host dies" before running it
    leased = engine.lease_due(engine.clock.now_ms(), 10)
    assert [t.step for t, _ in leased] == ["processPayment"]
    run = settle(engine, run_id, step_ms=10_000)
    assert run["status"] == "succeeded"
    payments = [h for h in run["history"] if h["step"] == "processPayment"]
    assert [(h["attempt"], h["status"]) for h in payments] == [(1, "failed"), (2, "succeeded")]
    assert payments[0]["error"]["kind"] == "Interrupted"
    assert count(wf_platform, "validate") == 1 and count(wf_platform, "payment") == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('start = "a"\n[steps.a]\nfunction = "nope"', "names no function"),
        ('start = "a"\n[steps.a]\nfunction = "ship-order"\non_success = "b"', "unknown step 'b'"),
        (
            'start = "a"\n[steps.a]\nfunction = "ship-order"\n[steps.b]\nfunction = "ship-order"',
            "unreachable",
        ),
        (
            'start = "a"\n[steps.a]\nfunction = "ship-order"\non_success = "b"\non_failure = "b"\n'
            '[steps.b]\nfunction = "ship-order"\non_success = "a"\non_failure = "a"',
            "no way to 'end'",
        ),
        ('start = "a"\n[steps.a]\nfunction = "ship-order"\ninput = "$input..x"', "segment"),
        (
            'start = "a"\n[steps.a]\nfunction = "ship-order"\ninput = "$ghost.output"',
            "names no step",
        ),
    ],
)
def test_bad_definitions_are_refused_clearly(body: str, message: str) -> None:
    raw = {"W": tomllib.loads(body)}
    with pytest.raises(ManifestError) as info:
        parse_workflows(raw, set(FUNCTIONS), where="nimbus.toml")
    assert message in str(info.value) and "workflows.W" in str(info.value)


def test_a_retry_policy_may_name_the_functions_own_error_kind(wf_platform: Platform) -> None:
    """``on`` lists our kinds or the kind a function's failure names: the guest fails
    with StepFailed, which one workflow retries and the other does not."""
    raw = {
        name: {
            "start": "pay",
            "steps": {
                "pay": {
                    "function": "process-payment",
                    "retry": {"max_attempts": 3, "initial": "1s", "on": on},
                }
            },
        }
        for name, on in (("Retried", ["StepFailed"]), ("NotRetried", ["PaymentUnavailable"]))
    }
    engine = Orchestrator(wf_platform, parse_workflows(raw, set(FUNCTIONS)), ManualClock(T0))
    for name, attempts in (("Retried", 3), ("NotRetried", 1)):
        run = settle(engine, engine.start(name, {"fail": ["payment"]})["id"], step_ms=100)
        assert run["status"] == "failed"
        assert [h["attempt"] for h in run["history"]] == list(range(1, attempts + 1))
        assert {h["error"]["cause"] for h in run["history"]} == {"StepFailed"}
        assert run["error"]["kind"] == "FunctionFailed" and run["error"]["cause"] == "StepFailed"
