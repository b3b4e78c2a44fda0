"""A rate limit holds across worker processes: ``nimbus up --workers 2`` must not
double the allowance (the buckets live in LMDB, shared by both processes)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.conftest import Server

Build = Callable[[str], Path]
Start = Callable[..., Server]
BURST = 10

APP = """
[functions.mirror]
wasm = "{mirror}"

[gateway.policies.limited]
rate_limit = {{ rate = 1, per = "1h", burst = {burst}, key = "ip" }}

[[routes]]
method = "GET"
path = "/limited"
function = "mirror"
policies = ["limited"]
"""


def test_two_workers_share_one_allowance(tmp_path: Path, build: Build, start_server: Start) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(mirror=build("mirror_zig"), burst=BURST))
    server = start_server("up", str(app), "--data", str(tmp_path / "data"), "--workers", "2")

    pinned = server.pin_workers()
    try:
        answers: dict[int, list[int]] = {pid: [] for pid in pinned}
        for _ in range(2 * BURST):  # alternate: worker A, worker B, A, B, …
            for pid, client in pinned.items():
                answers[pid].append(client.get("/limited").status_code)
                assert client.get("/_admin/health").json()["pid"] == pid  # still that worker
        codes = [c for per_worker in answers.values() for c in per_worker]
        assert codes.count(200) == BURST, answers  # one allowance, not one per worker
        assert codes.count(429) == 3 * BURST
        assert all(per_worker.count(200) == BURST // 2 for per_worker in answers.values())
    finally:
        for client in pinned.values():
            client.close()
