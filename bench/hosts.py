"""LMDB against PostgreSQL in the same run: queue throughput and gateway hello req/s,
with 1 host and with 2 hosts (issue #19).

"2 hosts" is two ``nimbus serve`` processes: on LMDB both open one data dir (the
most LMDB can share: one machine); on PostgreSQL each has its own data dir and both
point at one database, as hosts on two machines would. Queue throughput: N messages
committed at once, the clock running until the queue is empty (a sink function, one
table write per message, as ``triggers.py``). HTTP: hello through the gateway, the
load split over the hosts (one load generator per host, at once, rates summed).
The PostgreSQL server is ``NIMBUS_BENCH_PG`` (default the test one), in a schema of
its own, dropped after.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import msgpack
import psycopg

from bench.http import _app as http_app
from bench.http import measure, wrk_path
from bench.servers import Process, nimbus
from bench.triggers import _app as queue_app
from host.manifest.app import load_manifest
from host.platform.apply import apply_manifest
from host.platform.platform import Platform, PlatformOptions

PG = os.environ.get("NIMBUS_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _schema_url(schema: str) -> str:
    sep = "&" if "?" in PG else "?"
    return f"{PG}{sep}options=-csearch_path%3D{schema}"


def _hosts(store: str, data: Path, count: int) -> list[Process]:
    """``count`` hosts on ``store`` ("": LMDB, all on ``data``; else each its own dir)."""
    procs = []
    for i in range(count):
        d = data if not store else data.parent / f"{data.name}-h{i}"
        args = ["serve", "--data", str(d)] + (["--store", store] if store else [])
        procs.append(nimbus(*args))
    return procs


def _drain(store: str, data: Path, n: int) -> float:
    platform = Platform(data, PlatformOptions(store=store))
    try:
        e = platform.services.begin("bench")
        for i in range(n):
            e.queue_send("jobs", msgpack.packb(i))
        e.commit()
        t0 = time.perf_counter()
        deadline = t0 + 300
        while time.perf_counter() < deadline:
            with platform.services.storage.read() as txn:
                now = int(time.time() * 1000)
                if not platform.services.queues.stats(txn, "jobs", now).depth:
                    break
            time.sleep(0.02)
        return n / (time.perf_counter() - t0)
    finally:
        platform.close()


def _queue(tmp: Path, store: str, hosts: int, n: int) -> float:
    data = tmp / f"q-{bool(store)}-{hosts}"
    platform = Platform(data, PlatformOptions(store=store))
    try:
        apply_manifest(platform, load_manifest(queue_app(tmp / f"qa-{bool(store)}-{hosts}", 1)))
    finally:
        platform.close()
    procs = _hosts(store, data, hosts)
    try:
        time.sleep(1.5)  # the trigger threads are up
        return _drain(store, data, n)
    finally:
        for p in procs:
            p.stop()


def _http(tmp: Path, store: str, hosts: int, seconds: int, wrk: str | None) -> dict[str, float]:
    data = tmp / f"h-{bool(store)}-{hosts}"
    platform = Platform(data, PlatformOptions(store=store))
    try:
        where = tmp / f"ha-{bool(store)}-{hosts}"
        where.mkdir()
        apply_manifest(platform, load_manifest(http_app(where)))
    finally:
        platform.close()
    procs = _hosts(store, data, hosts)
    try:
        for p in procs:
            p.admin.post("/functions/hello/invoke", content="{}")
        found: list[dict[str, float]] = [{} for _ in procs]

        def load(i: int) -> None:
            found[i] = measure(procs[i], "/hello/bench", seconds, 16 // hosts, wrk)

        threads = [threading.Thread(target=load, args=(i,)) for i in range(hosts)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return {
            "rps": sum(f["rps"] for f in found),
            "p50_ms": max(f["p50_ms"] for f in found),
            "p99_ms": max(f["p99_ms"] for f in found),
        }
    finally:
        for p in procs:
            p.stop()


def run(quick: bool) -> dict[str, Any]:
    n = 200 if quick else 3000
    seconds = 1 if quick else 8
    wrk = wrk_path()
    results: dict[str, Any] = {"messages": n, "seconds": seconds, "load": os.getloadavg()[0]}
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}".encode())
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for hosts in (1, 2):
                for name, store in (("lmdb", ""), ("postgresql", _schema_url(schema))):
                    base = Path(tmp) / f"{name}{hosts}"
                    base.mkdir()
                    results[f"queue_{name}_{hosts}_host_msg_s"] = _queue(base, store, hosts, n)
                    results[f"http_{name}_{hosts}_host"] = _http(base, store, hosts, seconds, wrk)
                    if store:  # a fresh schema for the next round
                        with psycopg.connect(PG, autocommit=True) as conn:
                            conn.execute(f"DROP SCHEMA {schema} CASCADE".encode())
                            conn.execute(f"CREATE SCHEMA {schema}".encode())
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())
    for hosts in (1, 2):
        lmdb_q = results[f"queue_lmdb_{hosts}_host_msg_s"]
        pg_q = results[f"queue_postgresql_{hosts}_host_msg_s"]
        results[f"queue_pg_over_lmdb_{hosts}_host"] = pg_q / lmdb_q if lmdb_q else 0.0
        lmdb_h = results[f"http_lmdb_{hosts}_host"]["rps"]
        pg_h = results[f"http_postgresql_{hosts}_host"]["rps"]
        results[f"http_pg_over_lmdb_{hosts}_host"] = pg_h / lmdb_h if lmdb_h else 0.0
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=2))
