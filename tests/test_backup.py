"""``nimbus backup`` while a server writes, then a fresh server on the backup alone:
every function answers and every message queued at the time of the copy is delivered,
once, including the one the original server had leased (it still runs, but on another
data dir, so its lease is taken back at once)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgpack
import pytest

from host.errors import InvalidRequest
from host.manifest.app import load_manifest
from host.manifest.functions import function_spec_from_dict
from host.platform.apply import apply_manifest
from host.platform.backup import backup, restore, verify
from host.platform.platform import Platform
from host.services.services import Services
from tests.conftest import ROOT, Server

Build = Callable[[str], Path]
Start = Callable[..., Server]
AUTH = {"authorization": "Bearer test-token"}

APP = """
[functions.worker]
wasm = "{rec}"
grants = {{ tables = {{ state = "read-write" }} }}
env = {{ SLEEP_MS = "100" }}

[functions.hello]
wasm = "{hello}"

[[routes]]
method = "POST"
path = "/rec"
function = "worker"

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"

[[triggers.queue]]
queue = "jobs"
function = "worker"
visibility_timeout = "120s"
"""


def queue_state(db: Path) -> tuple[set[str], int, set[str]]:
    """The ids queued in ``jobs``, ``count.queue``, and the ids seen by the worker."""
    services = Services(db)
    try:
        with services.storage.read() as txn:
            messages = services.queues.peek(txn, "jobs", 1_000_000)
            queued = {m.id for m in messages}
            print(f"\n{db}: {len(queued)} queued, {sum(1 for m in messages if m.holder)} leased")
            count = services.tables.get(txn, "state", b"count.queue")
            seen = {
                k.decode().removeprefix("seen.queue.")
                for k, _, _ in services.tables.items(txn, "state", b"seen.queue.", b"seen.queue/")
            }
    finally:
        services.close()
    return queued, 0 if count is None else msgpack.unpackb(count[0]), seen


@pytest.mark.slow
def test_a_backup_taken_while_writing_serves_as_is(
    tmp_path: Path, build: Build, start_server: Start
) -> None:
    data, copy = tmp_path / "data", tmp_path / "backup"
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(rec=build("recorder_zig"), hello=build("hello")))
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(app))
        e = platform.services.begin("test")
        for i in range(120):
            e.queue_send("jobs", msgpack.packb({"i": i}))
        e.commit()
    finally:
        platform.close()
    original = start_server("serve", "--data", str(data))

    stop = threading.Event()
    writes = [0]

    def write() -> None:
        with httpx.Client(base_url=original.url, timeout=30) as client:
            while not stop.is_set():
                assert client.post("/rec", content=b"x").status_code == 200
                r = client.post("/_admin/queues/jobs/messages", json={"w": writes[0]}, headers=AUTH)
                assert r.status_code == 201
                writes[0] += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        time.sleep(1.0)
        r = subprocess.run(
            [sys.executable, "-m", "host.cli", "backup", str(copy), "--data", str(data)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        time.sleep(0.5)
    finally:
        stop.set()
        writer.join()
    assert r.returncode == 0, r.stderr
    assert writes[0] > 0
    assert verify(copy) == ["hello", "worker"]  # each module there, matching its hash
    queued, count_at_copy, seen_at_copy = queue_state(copy / "db")
    assert queued, "the copy must hold a backlog for this test to mean anything"

    restored = start_server("serve", "--data", str(copy))  # the original keeps running
    assert httpx.get(f"{restored.url}/hello/ada", timeout=30).status_code == 200
    assert httpx.post(f"{restored.url}/rec", content=b"x", timeout=30).status_code == 200
    deadline = time.monotonic() + 90  # well under the 120 s visibility timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{restored.url}/_admin/queues/jobs/messages", headers=AUTH, timeout=30)
        if not r.json()["messages"]:
            break
        time.sleep(0.5)
    restored.stop()
    left, count, seen = queue_state(copy / "db")
    assert left == set()
    assert seen - seen_at_copy == queued  # every message of the copy delivered...
    assert count - count_at_copy == len(queued)  # ...and applied once


def test_backup_and_restore_check_what_they_copy(tmp_path: Path, build: Build) -> None:
    data = tmp_path / "data"
    platform = Platform(data)
    try:
        wasm = build("hello").read_bytes()
        platform.deploy(function_spec_from_dict("hello", {"wasm": "h.wasm"}), wasm)
    finally:
        platform.close()
    with pytest.raises(InvalidRequest, match="not a Nimbus data dir"):
        backup(tmp_path / "nothing", tmp_path / "b0")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(InvalidRequest, match="not empty"):
        backup(data, tmp_path / "full")
    assert backup(data, tmp_path / "b1") == ["hello"]
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    (module,) = (tmp_path / "b1" / "modules").iterdir()
    assert module.read_bytes() == wasm
    module.write_bytes(wasm[:-1])
    with pytest.raises(InvalidRequest, match=r"hello: module .* is damaged"):
        restore(tmp_path / "b1", tmp_path / "r1")
    module.unlink()
    with pytest.raises(InvalidRequest, match=r"hello: module .* is missing"):
        restore(tmp_path / "b1", tmp_path / "r1")
    assert not (tmp_path / "r1").exists()  # nothing half written


def test_a_backup_keeps_the_secrets_key_and_the_usage(tmp_path: Path, build: Build) -> None:
    data = tmp_path / "data"
    platform = Platform(data)
    try:
        platform.deploy(
            function_spec_from_dict("hello", {"wasm": "h.wasm"}), build("hello").read_bytes()
        )
        platform.secrets.set("API_TOKEN", b"s3cret")
        for _ in range(3):
            platform.invoke("hello", {"kind": "http", "method": "GET", "path": "/hello/ada"})
        before = [(r.function, r.requests, r.byte_ms) for r in platform.services.usage.query()]
    finally:
        platform.close()
    assert before and before[0][:2] == ("hello", 3)
    assert backup(data, tmp_path / "b") == ["hello"]
    assert (tmp_path / "b" / "secrets.key").read_bytes() == (data / "secrets.key").read_bytes()
    assert (tmp_path / "b" / "secrets.key").stat().st_mode & 0o077 == 0
    assert restore(tmp_path / "b", tmp_path / "r") == ["hello"]
    for root in (tmp_path / "b", tmp_path / "r"):
        served = Platform(root)
        try:
            assert served.secrets.get("API_TOKEN") == b"s3cret"  # sealed with the copied key
            after = [(r.function, r.requests, r.byte_ms) for r in served.services.usage.query()]
        finally:
            served.close()
        assert after == before
