"""Exactly-once reaches the outside world: a host SIGKILLed after its outbound call and
before its commit redelivers the message, and the payment service sees the same
``Idempotency-Key`` twice."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from host.hostcalls.http import idempotency_key
from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform
from tests.conftest import eventually, serve_unwaited
from tests.payment_server import PaymentServer

APP = """
[functions.payer]
wasm = "{wasm}"
timeout = "60s"
allowed_outbound_hosts = ["{url}"]

[[triggers.queue]]
queue = "payments"
function = "payer"
visibility_timeout = "2s"
max_attempts = 5
backoff = {{ initial = "10ms", max = "100ms" }}
"""


@pytest.mark.crash
def test_same_key_after_sigkill_between_the_call_and_the_commit(
    tmp_path: Path, build: Callable[[str], Path]
) -> None:
    server = PaymentServer().start()
    data = tmp_path / "data"
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(wasm=build("outbound_zig"), url=server.url))
    charge = {"url": f"{server.url}/echo", "method": "POST", "body": "charge o-1 42.00"}
    platform = Platform(data)
    try:
        apply_manifest(platform, load_manifest(app))
        effects = platform.services.begin("test")
        message_id = effects.queue_send(
            "payments", msgpack.packb({"calls": [charge], "spin_on_attempt": 1})
        )
        effects.commit()
    finally:
        platform.close()

    first = serve_unwaited(data)
    try:
        # attempt 1 makes its call, then spins: its effects and its ack are not committed
        assert eventually(lambda: len(server.seen) >= 1, 90, 0.05), (
            "the first attempt never called out"
        )
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    second = serve_unwaited(data)
    try:
        assert eventually(lambda: len(server.seen) >= 2, 90, 0.05), (
            "the message was not redelivered"
        )
        keys = server.keys()
        assert keys[0] == keys[1] == idempotency_key("payer", message_id, 1)
        assert [s.body for s in server.seen[:2]] == [b"charge o-1 42.00"] * 2

        def drained() -> bool:
            p = Platform(data)
            try:
                with p.services.storage.read() as txn:
                    stats = p.services.queues.stats(txn, "payments", int(time.time() * 1000))
                return stats.depth == 0
            finally:
                p.close()

        assert eventually(drained, 30, 0.05), "attempt 2 did not commit"
    finally:
        second.terminate()
        second.wait(timeout=30)
        server.stop()
    assert len(server.seen) == 2
