"""Storage faults, piece by piece: which typed error a failure is, what HTTP says about
it, the pacing of the loops that meet one, and a workflow step whose commit meets a
full disk (a real tmpfs) retried later without counting an attempt."""

from __future__ import annotations

import errno
import json
import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import lmdb
import msgpack
import pytest

from host.common.clock import ManualClock
from host.errors import StorageFull, StorageUnavailable
from host.gateway.errors import error_response
from host.manifest.functions import function_spec_from_dict
from host.manifest.triggers import triggers_from_dict
from host.manifest.workflows import parse_workflows
from host.orchestrator.engine import Orchestrator
from host.platform.platform import Platform
from host.services.faults import FaultPacer, storage_fault
from host.triggers.subscriptions import subscriptions
from tests.conftest import fill

Build = Callable[[str], Path]


def test_no_space_is_storage_full_naming_the_data_dir(tmp_path: Path) -> None:
    err = storage_fault(tmp_path, OSError(errno.ENOSPC, "No space left on device"))
    assert isinstance(err, StorageFull)
    assert str(tmp_path) in str(err) and "full" in str(err) and "Free some space" in str(err)


def test_an_io_error_with_room_left_is_storage_unavailable(tmp_path: Path) -> None:
    err = storage_fault(tmp_path, lmdb.Error("mdb_txn_commit: Input/output error"))
    assert type(err) is StorageUnavailable  # this disk has room: not "full"
    assert str(tmp_path) in str(err) and "Input/output error" in str(err)
    panic = storage_fault(tmp_path, lmdb.PanicError("mdb_txn_begin: MDB_PANIC"))
    assert "restart the host" in str(panic)


@pytest.mark.parametrize(("err", "status"), [(StorageFull, 507), (StorageUnavailable, 503)])
def test_storage_faults_answer_retryable_statuses(
    err: type[StorageUnavailable], status: int
) -> None:
    response = error_response(err("the disk holding /d is full", "/d", 7), "req-1")
    assert response.status_code == status
    assert response.headers["retry-after"] == "7"
    body = json.loads(bytes(response.body))
    assert body["error"]["kind"] == err.kind and "/d" in body["error"]["message"]


def test_the_pacer_waits_longer_each_fault_and_resets_when_a_write_passes() -> None:
    pacer = FaultPacer("test", initial_s=0.1, max_s=0.4)
    fault = StorageFull("full", "/d")
    assert [pacer.failed(fault) for _ in range(4)] == [0.1, 0.2, 0.4, 0.4]
    pacer.ok()
    assert pacer.delay() == 0.0 and pacer.total == 4
    stop = threading.Event()
    stop.set()
    pacer.wait(stop, fault)  # returns at once when stopping
    assert pacer.faults == 1


def test_every_trigger_kind_takes_a_visibility_timeout() -> None:
    common = {"function": "f", "visibility_timeout": "45s"}
    triggers = triggers_from_dict(
        {
            "queue": [{"queue": "q", **common}],
            "schedule": [{"name": "s", "cron": "* * * * *", **common}],
            "storage": [{"bucket": "b", **common}],
            "event": [{"topic": "a.*", **common}],
        }
    )
    assert {s.visibility_ms for s in subscriptions(triggers)} == {45_000}
    default = triggers_from_dict({"event": [{"topic": "a.*", "function": "f"}]})
    assert subscriptions(default)[0].visibility_ms == 30_000


@pytest.mark.parametrize("kind", ["queue", "schedule", "storage", "event"])
def test_a_zero_visibility_timeout_is_refused(kind: str) -> None:
    table = {
        "queue": {"queue": "q"},
        "schedule": {"name": "s", "cron": "* * * * *"},
        "storage": {"bucket": "b"},
        "event": {"topic": "a.*"},
    }[kind]
    with pytest.raises(Exception, match=r"visibility_timeout.*duration above zero"):
        triggers_from_dict({kind: [{**table, "function": "f", "visibility_timeout": "0s"}]})


WORKFLOW = """
[workflows.Big]
start = "write"

[workflows.Big.steps.write]
function = "rec"
retry = { max_attempts = 1 }
"""


def test_a_step_whose_commit_meets_a_full_disk_runs_again_without_counting(
    small_fs: Path, build: Build
) -> None:
    platform = Platform(small_fs / "data")
    try:
        config = {
            "wasm": "r.wasm",
            "env": {"PAD_BYTES": "400000"},
            "grants": {"tables": {"state": "read-write"}},
        }
        platform.deploy(function_spec_from_dict("rec", config), build("recorder_zig").read_bytes())
        workflows = parse_workflows(tomllib.loads(WORKFLOW)["workflows"], {"rec"})
        clock = ManualClock(1_800_000_000_000)
        engine = Orchestrator(platform, workflows, clock)
        run_id = engine.start("Big", {})["id"]
        # pages free inside the file, for the small writes (the lease) to fit; LMDB
        # reuses a page one transaction after the one that freed it
        for value in (msgpack.packb("s" * 400_000), None, msgpack.packb(1)):
            e = platform.services.begin("test")
            e.kv_put("state", b"scratch", value) if value else e.kv_delete("state", b"scratch")
            e.commit()
        filler = fill(small_fs)

        assert engine.poll_once() == 1  # the step runs; its commit does not fit
        run = engine.get(run_id)
        assert run["status"] == "running" and run["history"] == []  # no failure counted
        assert engine.steps.faults.faults == 1
        assert engine.poll_once() == 0  # postponed: not due yet
        filler.unlink()
        clock.advance(1000)
        assert engine.poll_once() == 1
        run = engine.get(run_id)
        assert run["status"] == "succeeded", run
        assert [(h["step"], h["attempt"], h["status"]) for h in run["history"]] == [
            ("write", 1, "succeeded")
        ]
        assert engine.steps.faults.faults == 0
        with platform.services.storage.read() as txn:
            count = platform.services.tables.get(txn, "state", b"count.workflow")
        assert count is not None and msgpack.unpackb(count[0]) == 1
    finally:
        platform.close()
