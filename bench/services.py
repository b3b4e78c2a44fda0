"""Table get and put through the services layer and from a guest, next to py-lmdb.

Three layers, on the same LMDB environment and keys in the same run:

- ``Effects`` (host/services): ``kv_get`` from one invocation's snapshot, and
  ``kv_put`` staged then committed in one transaction (the services' own cost);
- a guest: one invocation loops over N keys through the host import, so
  instantiation is not counted (per-operation time = invocation time / N);
- py-lmdb directly: a get in its own read transaction (an independent lookup), a get
  inside one long transaction (the floor), puts in one write transaction.

And a table query by an index against its reference: from a guest, ``kv_query`` of
the 100 rows whose indexed field ``at`` is 3 vs a ``kv_scan`` of the same 100 rows by
their key prefix, one page each, many rounds in one invocation (alternating blocks);
and the price of keeping the index: 500 overwrites of such rows in the indexed table
vs in a table without an index, in one invocation each.

The ratios are what to read (the machine is shared and noisy)::

    python -m bench.services [--n 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from bench.servers import ROOT
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.services.keys import scoped
from host.toolchain.builder import build_function


def _per_op_us(fn: Any, n: int, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1e6 / n)
    return statistics.median(runs)


def run(quick: bool, n: int | None = None) -> dict[str, Any]:
    n = n or (2_000 if quick else 20_000)
    repeat = 3 if quick else 5
    wasm = build_function(ROOT / "bench" / "guests" / "kvloop_zig").wasm.read_bytes()
    with tempfile.TemporaryDirectory() as tmp:
        platform = Platform(Path(tmp))
        try:
            config = {"wasm": "kvloop.wasm", "grants": {"tables": {"bench": "read-write"}}}
            config["memory"] = "512MiB"
            config["max_staged_ops"] = n  # one invocation stages n writes (default 1000)
            platform.deploy(function_spec_from_dict("kvloop", config), wasm)

            def guest(op: str) -> None:
                platform.invoke("kvloop", {"kind": "invoke", "input": {"op": op, "n": n}})

            guest("put")
            put_us = _per_op_us(lambda: guest("put"), n, repeat)
            get_us = _per_op_us(lambda: guest("get"), n, repeat)
            found = platform.invoke("kvloop", {"kind": "invoke", "input": {"op": "get", "n": n}})
            assert found.response["output"] == n, "the guest did not find every key"

            storage = platform.services.storage
            env, db = storage.env, platform.services.tables.db
            keys = [scoped("bench", i.to_bytes(4, "big")) for i in range(n)]

            def raw_get_own_txn() -> None:
                for k in keys:
                    with env.begin(db=db) as txn:
                        txn.get(k)

            def raw_get_one_txn() -> None:
                with env.begin(db=db) as txn:
                    for k in keys:
                        txn.get(k)

            def raw_put_one_txn() -> None:
                with env.begin(db=db, write=True) as txn:
                    for i, k in enumerate(keys):
                        txn.put(k, i.to_bytes(8, "big") + b"\x01")

            services = platform.services
            plain = [i.to_bytes(4, "big") for i in range(n)]
            values = [msgpack.packb(i) for i in range(n)]

            def effects_get() -> None:
                with services.begin("bench") as effects:
                    for k in plain:
                        effects.kv_get("bench", k)

            def effects_put() -> None:
                effects = services.begin("bench")
                for k, v in zip(plain, values, strict=True):
                    effects.kv_put("bench", k, v)
                effects.commit()

            raw_get_own = _per_op_us(raw_get_own_txn, n, repeat)
            raw_get_one = _per_op_us(raw_get_one_txn, n, repeat)
            raw_put = _per_op_us(raw_put_one_txn, n, repeat)
            eff_get = _per_op_us(effects_get, n, repeat)
            eff_put = _per_op_us(effects_put, n, repeat)
            query = _query_vs_scan(platform, 50 if quick else 200, repeat)
        finally:
            platform.close()
    return {
        **query,
        "n": n,
        "effects_get_us": eff_get,
        "effects_put_us": eff_put,
        "effects_get_over_raw_one_txn": eff_get / raw_get_one,
        "effects_get_over_raw_own_txn": eff_get / raw_get_own,
        "effects_put_over_raw_one_txn": eff_put / raw_put,
        "effects_get_ops_per_s": 1e6 / eff_get,
        "effects_put_ops_per_s": 1e6 / eff_put,
        "raw_get_one_txn_ops_per_s": 1e6 / raw_get_one,
        "raw_put_one_txn_ops_per_s": 1e6 / raw_put,
        "guest_get_us": get_us,
        "guest_put_us": put_us,
        "raw_get_own_txn_us": raw_get_own,
        "raw_get_one_txn_us": raw_get_one,
        "raw_put_one_txn_us": raw_put,
        "guest_get_over_raw_own_txn": get_us / raw_get_own,
        "guest_get_over_raw_one_txn": get_us / raw_get_one,
        "guest_put_over_raw_one_txn": put_us / raw_put,
        "guest_get_ops_per_s": 1e6 / get_us,
        "guest_put_ops_per_s": 1e6 / put_us,
    }


def _query_vs_scan(platform: Platform, rounds: int, repeat: int) -> dict[str, Any]:
    """Per page of 100 rows: a guest's ``kv_query`` by index vs its ``kv_scan`` by prefix."""
    wasm = build_function(ROOT / "bench" / "guests" / "kvquery_zig").wasm.read_bytes()
    grants = {"tables": {"bench_ix": "read-write", "bench_plain": "read-write"}}
    config: dict[str, Any] = {"wasm": "kvquery.wasm", "grants": grants, "memory": "512MiB"}
    platform.deploy(function_spec_from_dict("kvquery", config), wasm)
    platform.services.indexes.define({"bench_ix": {"at": "int"}})
    effects = platform.services.begin("bench")
    for i in range(1000):  # keys g0-…, g1-…: prefix gN holds exactly the rows at == N
        value = msgpack.packb({"at": i % 10, "n": i, "name": f"row {i}"})
        effects.kv_put("bench_ix", f"g{i % 10}-{i:04}".encode(), value)
    effects.commit()

    def guest(op: str) -> None:
        r = platform.invoke("kvquery", {"kind": "invoke", "input": {"op": op, "rounds": rounds}})
        assert r.response["output"] == 100 * rounds, f"{op} did not read 100 rows a round"

    guest("query"), guest("scan")  # warm
    query_runs, scan_runs = [], []
    for i in range(repeat * 2):  # alternating, the order flipped each round
        first, second = ("query", "scan") if i % 2 == 0 else ("scan", "query")
        for op in (first, second):
            t0 = time.perf_counter()
            guest(op)
            us = (time.perf_counter() - t0) * 1e6 / rounds
            (query_runs if op == "query" else scan_runs).append(us)
    query_us, scan_us = statistics.median(query_runs), statistics.median(scan_runs)
    puts = {"put_indexed": [], "put_plain": []}  # the price of keeping an index
    for i in range(repeat * 2):
        for op in ("put_indexed", "put_plain") if i % 2 == 0 else ("put_plain", "put_indexed"):
            t0 = time.perf_counter()
            r = platform.invoke("kvquery", {"kind": "invoke", "input": {"op": op, "rounds": 500}})
            puts[op].append((time.perf_counter() - t0) * 1e6 / 500)
            assert r.response["output"] == 500
    indexed_us, plain_us = (
        statistics.median(puts["put_indexed"]),
        statistics.median(puts["put_plain"]),
    )
    return {
        "guest_query_100_rows_us": query_us,
        "guest_scan_100_rows_us": scan_us,
        "guest_query_over_scan_100_rows": query_us / scan_us,
        "guest_put_indexed_us": indexed_us,
        "guest_put_plain_us": plain_us,
        "guest_put_indexed_over_plain": indexed_us / plain_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000)
    args = parser.parse_args()
    print(json.dumps(run(False, args.n), indent=2))


if __name__ == "__main__":
    main()
