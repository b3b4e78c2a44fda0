"""The gateway's invoker: fast functions inline under a budget, slow ones in threads,
and a function over its budget re-run with its full limit, nothing recorded twice."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from host.gateway.invoker import FAST_STREAK, Invoker
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import OverBudget, Platform
from host.platform.request import InvocationRequest
from tests.conftest import garbage_cycles

Build = Callable[[str], Path]


def test_budget_stops_without_recording(platform: Platform, build: Build) -> None:
    spec = function_spec_from_dict("loop", {"wasm": "l.wasm", "timeout": "2s"})
    platform.deploy(spec, build("loop_zig").read_bytes())
    with pytest.raises(OverBudget):
        platform.execute(InvocationRequest("loop", {"kind": "invoke"}, budget_s=0.01))
    assert platform.telemetry.recent("loop", 10) == []


def test_fast_functions_go_inline_and_slow_ones_fall_back(platform: Platform, build: Build) -> None:
    platform.deploy(
        function_spec_from_dict("fast", {"wasm": "c.wasm"}), build("counter_zig").read_bytes()
    )
    platform.deploy(
        function_spec_from_dict("busy", {"wasm": "b.wasm", "timeout": "5s"}),
        build("busy_c").read_bytes(),
    )
    invoker = Invoker(platform)

    async def run() -> None:
        for _ in range(FAST_STREAK + 5):
            result = await invoker.invoke("fast", {"kind": "invoke"}, "req-x")
            assert result.response["output"] == 1
        assert invoker._streak["fast"] >= FAST_STREAK  # now inline
        invoker._streak["busy"] = FAST_STREAK  # pretend it had been fast
        slow = await invoker.invoke("busy", {"kind": "invoke", "input": {"ms": 50}}, "req-y")
        assert slow.response["status"] == 200  # re-run in a thread with its full limit
        assert invoker._streak["busy"] == 0
        records = platform.telemetry.recent("busy", 10)
        assert [r.outcome for r in records] == ["ok"]  # the stopped inline try left no record

    anyio.run(run)


def test_an_invocation_leaves_no_garbage_cycle(platform: Platform, build: Build) -> None:
    """Everything an invocation made is freed when it ends, by reference counting: a
    cycle (the invocation and its service access held each other) left ~17 objects a
    request to the cyclic GC, whose runs then cost the server ~15 % of its throughput
    and held the invocation's read snapshot until they came."""
    spec = function_spec_from_dict(
        "rec", {"wasm": "r.wasm", "grants": {"tables": {"state": "read-write"}}}
    )
    platform.deploy(spec, build("recorder_zig").read_bytes())
    platform.execute(InvocationRequest("rec", {"kind": "invoke", "id": "warm"}))

    def run() -> None:
        for i in range(20):
            result = platform.execute(InvocationRequest("rec", {"kind": "invoke", "id": f"e{i}"}))
            assert result.response.get("error") is None and result.applied

    assert garbage_cycles(run) == []
