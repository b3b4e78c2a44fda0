"""The console's pure parts: figures from records, the run graph, sessions, tailing."""

from __future__ import annotations

import subprocess
import sys
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
from host.services.activity import KEEP_MS, SWEEP_EVERY, Activity, ActivityRow
from host.services.console_sessions import ConsoleSessions
from host.services.storage import Storage
from host.telemetry.records import InvocationRecord, Telemetry
from tests.conftest import ROOT

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


def activity_of(tmp_path: Path, *records: InvocationRecord) -> list[ActivityRow]:
    """The shared rows the records make, through a real Activity store."""
    store = Activity(tmp_path / "activity")
    try:
        for r in records:
            store.record(r.function, r.started_ms, r.duration_ms, r.outcome == "ok", r.cold)
        return store.rows(0)
    finally:
        store.close()


def test_series_puts_invocations_in_their_minute_and_leaves_the_rest_empty(
    tmp_path: Path,
) -> None:
    rows = activity_of(
        tmp_path,
        rec(0, 1.0, at=NOW - 30_000),
        rec(1, 3.0, at=NOW - 30_000, outcome="FunctionFailed", cold=True),
        rec(2, 9.0, at=NOW - 2 * 3600_000),
    )
    window = stats.window(rows, NOW)
    assert [r.count for r in window] == [2]
    cols = stats.series(window, NOW)
    assert len(cols["t"]) == 60
    filled = [i for i, v in enumerate(cols["rps"]) if v]
    assert len(filled) == 1
    i = filled[0]
    assert cols["rps"][i] == round(2 / 60, 3)
    assert cols["errors"][i] == 50.0 and cols["cold"][i] == 50.0
    assert 0.75 < cols["p50"][i] <= 1.0 and 2.5 < cols["p99"][i] <= 3.0  # within a bucket
    assert cols["errors"][i - 1] is None  # no traffic is not a 0% error rate


def test_top_functions_and_histogram(tmp_path: Path) -> None:
    rows = activity_of(tmp_path, *[rec(i, 0.4, fn="a") for i in range(3)], rec(9, 20000.0, fn="b"))
    top = stats.top_functions(rows)
    assert [(name, s.count) for name, s in top] == [("a", 3), ("b", 1)]
    hist = dict(stats.histogram(rows))
    assert hist["≤ 0.5 ms"] == 3 and hist["> 10000 ms"] == 1
    assert sum(hist.values()) == 4


WORKER = """
import sys
from pathlib import Path
from host.services.activity import Activity
store = Activity(Path(sys.argv[1]))
for i in range(30):
    store.record("f", int(sys.argv[2]) + 1, 100.0, i % 3 != 0, i == 0)
store.close()
"""


def test_activity_rows_add_up_across_processes(tmp_path: Path) -> None:
    """A second process (a worker) on the same directory writes the same rows."""
    store = Activity(tmp_path / "a")
    try:
        for i in range(30):
            store.record("f", NOW, 1.0 + i, True, False)
        store.flush()
        subprocess.run(
            [sys.executable, "-c", WORKER, str(tmp_path / "a"), str(NOW)], check=True, cwd=ROOT
        )
        (row,) = store.rows(0)
        assert (row.count, row.errors, row.cold) == (60, 10, 1)
        assert row.total_ms == sum(1.0 + i for i in range(30)) + 30 * 100.0
        assert stats.summarise([row]).p99 == pytest.approx(100.0, rel=0.25)
        store.record("f", NOW - KEEP_MS - 60_000, 1.0, True, False)  # an old minute
        for _ in range(SWEEP_EVERY):
            store.flush(NOW)
        assert [r.minute_ms for r in store.rows(0)] == [NOW - NOW % 60_000]
    finally:
        store.close()


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
