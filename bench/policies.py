"""What gateway policies cost: hello with no policy, an API key, a JWT, a rate limit.

One ``nimbus up`` serves the same function on four routes; each policy route is
measured next to the no-policy route in the same run (no policy is measured before
and after the others, and the mean is the reference), so the ratio is what to read.
The rate-limit route has an allowance nobody reaches: every call pays the shared LMDB
counter, none is refused. ``in_process`` is each step alone, in microseconds per call
(steadier than req/s on a shared machine); the ``_pg_`` ones are the same steps on a
PostgreSQL store (``NIMBUS_BENCH_PG``), as hosts sharing one database pay them. With
``rounds`` > 1 the routes are measured in turn that many times and the figures
summed, so drift hits all alike.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import jwt
from starlette.requests import Request

from bench.http import measure, wrk_path
from bench.servers import ROOT, nimbus
from host.gateway.policies.authn import ApiKeyCheck, JwtCheck, KeyCache
from host.gateway.policies.limits import Limiter
from host.manifest.gateway import ApiKeyAuth, JwtAuth, RateLimit
from host.services.apikeys import ApiKeys
from host.services.counters import Counters
from host.services.storage import Storage
from host.toolchain.builder import build_function

SECRET = "bench-secret-bench-secret-bench-secret"

APP = """
[functions.hello]
wasm = "{hello}"

[gateway.policies.key]
api_key = {{}}

[gateway.policies.jwt]
jwt = {{ algorithms = ["HS256"], secret = "{secret}", audience = "bench" }}

[gateway.policies.limit]
rate_limit = {{ rate = 1000000000, per = "1s", burst = 1000000000, key = "ip" }}

[[routes]]
method = "GET"
path = "/hello/{{name}}"
function = "hello"

[[routes]]
method = "GET"
path = "/key/{{name}}"
function = "hello"
policies = ["key"]

[[routes]]
method = "GET"
path = "/jwt/{{name}}"
function = "hello"
policies = ["jwt"]

[[routes]]
method = "GET"
path = "/limit/{{name}}"
function = "hello"
policies = ["limit"]
"""


def _request(headers: list[tuple[bytes, bytes]]) -> Request:
    """A GET /x from 127.0.0.1 with ``headers``, as the policy steps see it."""
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/x",
            "query_string": b"",
            "client": ("127.0.0.1", 1),
            "headers": headers,
        }
    )


def _step_costs(tmp: Path, calls: int) -> dict[str, float]:
    """Microseconds per call of each policy step alone, in this process (a cached key,
    a cached JWT, a charge of the shared counters)."""
    storage = Storage(tmp / "db")
    counters = Counters(tmp / "counters")
    keys = ApiKeys(storage)
    _, text = keys.create("bench")
    token = jwt.encode({"sub": "b", "aud": "bench", "exp": int(time.time()) + 3600}, SECRET)
    request = _request(
        [(b"x-api-key", text.encode()), (b"authorization", f"Bearer {token}".encode())]
    )
    key_check = ApiKeyCheck(ApiKeyAuth(), KeyCache(keys), "/x", ("key",))
    jwt_check = JwtCheck(JwtAuth(algorithms=("HS256",), secret=SECRET, audience=("bench",)))
    limiter = Limiter(counters, "GET /x", RateLimit(1e9, 1.0, 10**9, "ip"), "limit", None, "")

    async def per_call(step: Callable[[], Awaitable[object]]) -> float:
        await step()
        t0 = time.perf_counter()
        for _ in range(calls):
            await step()
        return (time.perf_counter() - t0) / calls * 1e6

    async def charge() -> object:
        return limiter.charge(request, None)

    async def all_steps() -> dict[str, float]:
        return {
            "api_key_check_us": await per_call(lambda: key_check.authenticate(request, {}, "r")),
            "jwt_check_us": await per_call(lambda: jwt_check.authenticate(request, {}, "r")),
            "rate_limit_charge_us": await per_call(charge),
        }

    try:
        costs = asyncio.run(all_steps())
    finally:
        counters.close()
        storage.close()
    return costs | _pg_step_costs(calls)


def _pg_step_costs(calls: int) -> dict[str, float]:
    """The API key check and the rate-limit charge on a PostgreSQL store (shared by
    hosts: a charge is a transaction, a key check a cached lookup), measured right
    after the LMDB ones; {} when no server answers at ``NIMBUS_BENCH_PG``."""
    import uuid

    from bench.hosts import PG
    from host.services.pg.apikeys import PgApiKeys
    from host.services.pg.counters import PgCounters
    from host.services.pg.schema import migrate
    from host.services.pg.store import PgStore

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        store = PgStore(PG, schema)
    except Exception:
        return {}
    try:
        with store.connect() as conn:
            migrate(conn, schema)
        keys = PgApiKeys(store)
        _, text = keys.create("bench")
        request = _request([(b"x-api-key", text.encode())])
        key_check = ApiKeyCheck(ApiKeyAuth(), KeyCache(keys), "/x", ("key",))
        limit = RateLimit(1e9, 1.0, 10**9, "ip")
        limiter = Limiter(PgCounters(store), "GET /x", limit, "limit", None, "")

        async def check() -> object:
            return await key_check.authenticate(request, {}, "r")

        async def charge() -> object:
            return limiter.charge(request, None)

        async def steps() -> dict[str, float]:
            out = {}
            for name, step in (("api_key_check_pg_us", check), ("rate_limit_charge_pg_us", charge)):
                await step()
                t0 = time.perf_counter()
                for _ in range(calls // 10 or 1):  # a round trip each: fewer calls
                    await step()
                out[name] = (time.perf_counter() - t0) / (calls // 10 or 1) * 1e6
            return out

        return asyncio.run(steps())
    finally:
        with store.connect() as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())
        store.close()


def run(quick: bool) -> dict[str, Any]:
    seconds = 1 if quick else 10
    rounds = 1 if quick else 3
    connections = 16
    wrk = wrk_path()
    results: dict[str, Any] = {"load_generator": "wrk" if wrk else "asyncio (bench/loadgen.py)"}
    results["connections"] = connections
    results["seconds"] = seconds
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        results["in_process"] = _step_costs(tmp, 500 if quick else 20_000)
        app = tmp / "app"
        app.mkdir()
        hello = build_function(ROOT / "functions" / "hello").wasm
        (app / "nimbus.toml").write_text(APP.format(hello=hello, secret=SECRET))
        server = nimbus("up", str(app), "--data", str(tmp / "data"))
        try:
            with server.admin as admin:
                key = admin.post("/keys", json={"name": "bench"}).json()["api_key"]
            token = jwt.encode(
                {"sub": "bench", "aud": "bench", "exp": int(time.time()) + 3600},
                SECRET,
                algorithm="HS256",
            )

            def m(path: str, headers: dict[str, str] | None = None) -> dict[str, float]:
                return measure(server, path, seconds, connections, wrk, headers)

            routes = {
                "a_no_policy": ("/hello/bench", None),
                "b_api_key": ("/key/bench", {"x-api-key": key}),
                "c_jwt": ("/jwt/bench", {"authorization": f"Bearer {token}"}),
                "d_rate_limit": ("/limit/bench", None),
            }
            m("/hello/warm")  # warm up: the function runs inline from here on
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in routes}
            for _ in range(rounds):
                for name, (path, headers) in routes.items():
                    runs[name].append(m(path, headers))
        finally:
            server.stop()
    results["rounds"] = rounds
    for name, figures in runs.items():
        results[name] = {
            "rps": sum(f["rps"] for f in figures) / rounds,
            "p50_ms": sorted(f["p50_ms"] for f in figures)[rounds // 2],
            "p99_ms": max(f["p99_ms"] for f in figures),
            "errors": sum(f["errors"] for f in figures),
        }
    reference = results["a_no_policy"]["rps"]
    for k in ("b_api_key", "c_jwt", "d_rate_limit"):
        results[k]["over_no_policy"] = results[k]["rps"] / reference if reference else 0.0
    return results
