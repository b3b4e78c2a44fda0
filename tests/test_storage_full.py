"""A full disk, for real: a small tmpfs mounted by the test holds the data dir of a
``nimbus serve`` process, and a file fills what is left of it.

Writes answer 507 ``StorageFull`` naming the data dir, with ``Retry-After``; queue
deliveries back off without burning attempts (no dead letters); reads, health and a
read-only function keep answering; a SIGKILL and a restart on the full disk lose
nothing; once the file is deleted, writes resume and every message is delivered once.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from tests.conftest import Server, eventually, fill, free_port

Build = Callable[[str], Path]
TOKEN = "test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
MESSAGES = 4
#: big enough that a commit of this many bytes needs pages LMDB's free list does not
#: have (the function writes this much for every message, and for every POST)
BIG = 400_000

APP = """
[functions.rec]
wasm = "{rec}"
grants = {{ tables = {{ state = "read-write" }} }}
env = {{ PAD_BYTES = "{pad}" }}

[functions.hello]
wasm = "{hello}"

[[routes]]
method = "POST"
path = "/rec"
function = "rec"

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"

[[triggers.queue]]
queue = "jobs"
function = "rec"
max_attempts = 2
backoff = {{ initial = "10ms", max = "20ms" }}
"""


def start(data: Path) -> Server:
    env = {**os.environ, "NIMBUS_ADMIN_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
    server = Server(["serve", "--data", str(data)], free_port(), env)
    server.wait_ready()
    return server


def admin(server: Server, path: str) -> Any:
    r = httpx.get(f"{server.url}/_admin{path}", headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def assert_reads_served(server: Server) -> None:
    assert httpx.get(f"{server.url}/_admin/health", timeout=30).status_code == 200
    assert httpx.get(f"{server.url}/hello/ada", timeout=30).status_code == 200
    assert admin(server, "/tables/state/keys/before")["value"] == "kept"


def assert_messages_kept(server: Server) -> None:
    """Every message still queued, none dead-lettered, no attempt burnt by the fault."""
    messages = admin(server, "/queues/jobs/messages?limit=100")["messages"]
    assert len(messages) == MESSAGES
    assert admin(server, "/queues/jobs/dlq")["messages"] == []
    for m in messages:
        assert m["attempt"] <= 1, m["attempt"]  # 2 counted attempts would dead-letter it
        assert m["last_error"] is None or "Storage" in m["last_error"], m["last_error"]


@pytest.mark.crash
def test_a_full_disk_is_a_typed_retryable_error_and_loses_nothing(
    small_fs: Path, build: Build, tmp_path: Path
) -> None:
    data = small_fs / "data"
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(
        APP.format(rec=build("recorder_zig"), hello=build("hello"), pad=BIG)
    )
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(app))
        e = platform.services.begin("test")
        e.kv_put("state", b"before", msgpack.packb("kept"))
        for i in range(MESSAGES):
            e.queue_send("jobs", msgpack.packb({"i": i}))
        e.commit()
        # a data dir in use has free pages inside its file: small writes (leases, the
        # host's record) fit there, a big commit needs the disk
        for value in (msgpack.packb("s" * BIG), None, msgpack.packb(1)):
            e = platform.services.begin("test")
            e.kv_put("state", b"scratch", value) if value else e.kv_delete("state", b"scratch")
            e.commit()
    finally:
        platform.close()
    filler = fill(small_fs)

    server = start(data)  # starts on the full disk
    try:
        # a write through the gateway: 507, typed, naming the data dir, retryable
        r = httpx.post(f"{server.url}/rec", content=b"y", timeout=30)
        assert r.status_code == 507, r.text
        error = r.json()["error"]
        assert error["kind"] == "StorageFull"
        assert str(data / "db") in error["message"] and "full" in error["message"]
        assert int(r.headers["retry-after"]) > 0
        # through the admin API too
        r = httpx.put(
            f"{server.url}/_admin/tables/state/keys/big",
            content=b'"' + b"z" * BIG + b'"',
            headers=AUTH,
            timeout=30,
        )
        assert r.status_code == 507 and r.json()["error"]["kind"] == "StorageFull"
        # a deployment: its module does not fit either
        r = httpx.put(
            f"{server.url}/_admin/functions/counter",
            files={"module": ("c.wasm", build("counter_zig").read_bytes(), "application/wasm")},
            data={"config": "{}"},
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 507 and r.json()["error"]["kind"] == "StorageFull", r.text
        # through the queue trigger: the deliveries fail on the store, and back off
        assert eventually(
            lambda: any(
                rec["trigger"] == "queue" and rec["outcome"] == "StorageFull"
                for rec in admin(server, "/invocations?limit=1000")["invocations"]
            ),
            timeout_s=30,
            every_s=0.2,
        )
        time.sleep(1.0)  # long enough for max_attempts = 2 to be burnt many times over
        assert_messages_kept(server)
        assert_reads_served(server)

        server.proc.send_signal(signal.SIGKILL)  # then a restart, still on the full disk
        server.proc.wait()
        server = start(data)
        assert_reads_served(server)
        assert_messages_kept(server)
        r = httpx.post(f"{server.url}/rec", content=b"y", timeout=30)
        assert r.status_code == 507

        filler.unlink()  # space comes back: writes resume by themselves
        assert eventually(
            lambda: (
                httpx.get(
                    f"{server.url}/_admin/tables/state/keys/count.queue", headers=AUTH, timeout=30
                ).status_code
                == 200
                and admin(server, "/tables/state/keys/count.queue")["value"] == MESSAGES
            ),
            timeout_s=60,
            every_s=0.2,
        )
        r = httpx.post(f"{server.url}/rec", content=b"y", timeout=30)
        assert r.status_code == 200, r.text
        assert admin(server, "/queues/jobs/messages")["messages"] == []
        assert admin(server, "/queues/jobs/dlq")["messages"] == []
        seen = admin(server, "/tables/state/keys?prefix=seen.queue.")["items"]
        assert len(seen) == MESSAGES  # each message applied once
        assert admin(server, "/tables/state/keys/before")["value"] == "kept"
    finally:
        server.stop()
