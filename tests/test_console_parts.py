"""The console's pure parts: figures from records, the run graph, sessions, tailing."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from host.common.clock import ManualClock
from host.errors import FunctionFailed, NotFound
from host.gateway.console import stats
from host.gateway.console.graph import build_graph
from host.gateway.console.sessions import SESSION_TTL_MS, SessionStore
from host.gateway.data_api import ADMIN_SOURCE, dead_letter_of
from host.gateway.queues_api import QueuesApi
from host.manifest.functions import function_spec_from_dict
from host.manifest.workflows import parse_workflows
from host.platform.platform import Platform
from host.services.console_sessions import ConsoleSessions
from host.services.storage import Storage
from host.telemetry.records import InvocationRecord, Telemetry

NOW = 1_800_000_000_000


def rec(
    i: int, ms: float, *, at: int = NOW, outcome: str = "ok", cold: bool = False, fn: str = "f"
) -> InvocationRecord:
    return InvocationRecord(f"req-{i}", fn, 1, "http", cold, at, ms, outcome)


def test_percentiles_are_nearest_rank() -> None:
    values = sorted(float(v) for v in range(1, 101))
    assert stats.percentile(values, 50) == 50
    assert stats.percentile(values, 99) == 99
    assert stats.percentile([7.0], 99) == 7
    assert stats.percentile([], 50) is None


def test_series_puts_records_in_their_minute_and_leaves_the_rest_empty() -> None:
    records = [
        rec(0, 1.0, at=NOW - 30_000),
        rec(1, 3.0, at=NOW - 30_000, outcome="FunctionFailed", cold=True),
        rec(2, 9.0, at=NOW - 2 * 3600_000),
    ]
    window = stats.window(records, NOW)
    assert [r.request_id for r in window] == ["req-0", "req-1"]
    cols = stats.series(window, NOW)
    assert len(cols["t"]) == 60
    filled = [i for i, v in enumerate(cols["rps"]) if v]
    assert len(filled) == 1
    i = filled[0]
    assert cols["rps"][i] == round(2 / 60, 3)
    assert cols["errors"][i] == 50.0 and cols["cold"][i] == 50.0
    assert cols["p50"][i] == 1.0 and cols["p99"][i] == 3.0
    assert cols["errors"][i - 1] is None  # no traffic is not a 0% error rate


def test_top_functions_and_histogram() -> None:
    records = [rec(i, 0.4, fn="a") for i in range(3)] + [rec(9, 20000.0, fn="b")]
    top = stats.top_functions(records)
    assert [(name, s.count) for name, s in top] == [("a", 3), ("b", 1)]
    hist = dict(stats.histogram(records))
    assert hist["≤ 0.5 ms"] == 3 and hist["> 10000 ms"] == 1
    assert sum(hist.values()) == 4


def test_telemetry_since_returns_only_new_records() -> None:
    t = Telemetry(keep=3)
    pos, items = t.since(0)
    assert (pos, items) == (0, [])
    for i in range(2):
        t.record(rec(i, 1.0))
    pos, items = t.since(0)
    assert pos == 2 and [r.request_id for r in items] == ["req-0", "req-1"]
    for i in range(2, 7):
        t.record(rec(i, 1.0))
    pos2, items = t.since(pos)  # more than kept: only what is still there
    assert pos2 == 7 and [r.request_id for r in items] == ["req-4", "req-5", "req-6"]
    assert t.since(pos2) == (7, [])


WORKFLOW = """
[W]
start = "a"
[W.steps.a]
function = "f"
on_success = "b"
on_failure = "h"
retry = { max_attempts = 3, initial = "1s" }
[W.steps.b]
function = "f"
[W.handlers.h]
function = "f"
"""


def test_graph_marks_retries_the_handler_and_the_path_taken() -> None:
    wf = parse_workflows(tomllib.loads(WORKFLOW), {"f"})["W"]
    history = [
        {"step": "a", "attempt": 1, "status": "failed", "started_ms": 0, "ended_ms": 10},
        {"step": "a", "attempt": 2, "status": "failed", "started_ms": 1010, "ended_ms": 1020},
        {"step": "a", "attempt": 3, "status": "failed", "started_ms": 3020, "ended_ms": 3030},
        {"step": "h", "attempt": 1, "status": "succeeded", "started_ms": 3030, "ended_ms": 3040},
    ]
    run = {
        "status": "failed",
        "current": None,
        "history": history,
        "steps": {"a": {"status": "failed"}, "h": {"status": "succeeded"}},
    }
    g = build_graph(wf, run)
    nodes = {n.name: n for n in g.nodes}
    assert nodes["a"].status == "failed" and nodes["a"].delays_ms == [1000, 2000]
    assert "3 attempts" in nodes["a"].label
    assert nodes["h"].kind == "handler" and nodes["h"].status == "succeeded"
    assert nodes["b"].status == "pending" and nodes["end"].status == "failed"
    assert nodes["h"].x > nodes["a"].x  # handlers sit in their own column
    taken = {(e.source, e.target) for e in g.edges if e.taken}
    assert taken == {("a", "h"), ("h", "end")}


def test_sessions_end_expire_and_die_with_their_token(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db")
    try:
        clock = ManualClock(NOW)
        store = SessionStore(ConsoleSessions(storage), "tok", clock)
        assert store.check_token("tok") and not store.check_token("nope")
        s = store.create()
        found = store.get(s.id)
        assert found is not None and found.csrf_ok(s.csrf) and not found.csrf_ok("x")
        assert not found.csrf_ok(None)
        assert SessionStore(ConsoleSessions(storage), "another-token").get(s.id) is None
        store.end(s.id)
        assert store.get(s.id) is None
        later = store.create()
        clock.advance(SESSION_TTL_MS)
        assert store.get(later.id) is None
        assert store.get("") is None and store.get("x" * 500) is None
    finally:
        storage.close()


def test_replay_one_dead_letter_or_all_and_the_queue_overview(platform: Platform) -> None:
    data = QueuesApi(platform.services, ADMIN_SOURCE, dead_letter_of(platform))
    s = platform.services
    ids = []
    for i in range(3):
        effects = s.begin("test")
        ids.append(effects.queue_send("jobs", msgpack.packb({"n": i})))
        effects.commit()
    s.consumer.dead_letter("jobs", ids, "jobs.dlq", NOW, "FunctionFailed: no")
    overview = data.overview()
    assert overview["jobs.dlq"]["depth"] == 3 and overview["jobs.dlq"]["oldest_ms"] is not None
    assert data.replay("jobs", ids[1]) == {"replayed": 1, "from": "jobs.dlq", "to": "jobs"}
    assert [m["body"] for m in data.messages("jobs", 10)] == [{"n": 1}]
    with pytest.raises(NotFound, match="no message"):
        data.replay("jobs", ids[1])
    assert data.replay("jobs")["replayed"] == 2
    overview = data.overview()
    assert overview["jobs"]["depth"] == 3 and overview["jobs"]["dead"] == 0
    assert overview["jobs"]["dead_letter"] == "jobs.dlq"


def test_records_say_what_an_invocation_committed(
    platform: Platform, build: Callable[[str], Path]
) -> None:
    config = {"wasm": "s.wasm", "env": {"STEP": "s"}, "grants": {"tables": {"wf": "read-write"}}}
    platform.deploy(function_spec_from_dict("step", config), build("wfstep_zig").read_bytes())
    platform.invoke("step", {"kind": "invoke", "input": {}}, request_id="req-ok")
    with pytest.raises(FunctionFailed):
        platform.invoke("step", {"kind": "invoke", "input": {"fail": ["s"]}}, request_id="req-bad")
    ok, bad = platform.telemetry.recent("step", 2)
    assert ok.request_id == "req-ok" and ok.effects == {"table_writes": 1}
    assert bad.outcome == "FunctionFailed" and bad.effects == {}  # nothing was committed
