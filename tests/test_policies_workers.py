"""A rate limit holds across worker processes: ``nimbus up --workers 2`` must not
double the allowance (the buckets live in LMDB, shared by both processes)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import httpx

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


async def _burst(url: str, n: int) -> list[int]:
    # a client per request: a fresh connection, which either worker may accept
    async def one() -> int:
        async with httpx.AsyncClient() as c:
            return (await c.get(url)).status_code

    return list(await asyncio.gather(*(one() for _ in range(n))))


def test_two_workers_share_one_allowance(tmp_path: Path, build: Build, start_server: Start) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "nimbus.toml").write_text(APP.format(mirror=build("mirror_zig"), burst=BURST))
    server = start_server("up", str(app), "--data", str(tmp_path / "data"), "--workers", "2")
    admin = {"authorization": "Bearer test-token"}

    codes = asyncio.run(_burst(server.url + "/limited", 4 * BURST))
    assert codes.count(200) == BURST, codes
    assert codes.count(429) == 3 * BURST

    # each worker keeps its own invocation records: find both workers' sets
    seen: dict[frozenset[str], None] = {}
    for _ in range(200):
        r = httpx.get(
            server.url + "/_admin/invocations",
            params={"function": "mirror", "limit": 1000},
            headers=admin,
        )
        seen[frozenset(i["request_id"] for i in r.json()["invocations"])] = None
        if len(seen) == 2:
            break
    assert len(seen) == 2, "only one worker answered; cannot tell the allowance was shared"
    first, second = seen
    assert first and second and not (first & second)  # both workers admitted calls
    assert len(first | second) == BURST  # and together no more than the one allowance
