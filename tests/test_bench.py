"""The benchmark harness runs every scenario in --quick mode and writes sane figures.

Nothing here asserts a time: only that the figures exist, are positive, and are
ordered where they must be (a p99 is not below its median, and so on).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_bench_writes_sane_figures(tmp_path: Path) -> None:
    out = tmp_path / "latest.json"
    r = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=560,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["machine"]["versions"]["wasmtime"]
    s = results["scenarios"]
    assert set(s) == {
        "coldstart",
        "isolation",
        "isolation-storm",
        "http",
        "memory",
        "policies",
        "metering",
        "services",
        "outbound",
        "triggers",
        "workflows",
        "hosts",
    }
    hosts = s["hosts"]
    for store in ("lmdb", "postgresql"):
        for n in (1, 2):
            assert hosts[f"queue_{store}_{n}_host_msg_s"] > 0
            h = hosts[f"http_{store}_{n}_host"]
            assert h["rps"] > 0 and h["p99_ms"] >= h["p50_ms"] > 0

    for name in ("hello", "big", "python"):
        c = s["coldstart"][name]
        assert all(
            c[k] > 0 for k in ("compile_ms", "cache_load_fresh_process_ms", "first_response_ms")
        )
        assert c["module_bytes"] > (1 << 20 if name == "big" else 0)
    iso = s["isolation"]
    assert iso["fresh_p99_us"] >= iso["fresh_median_us"] > iso["instantiate_median_us"] > 0
    assert iso["reused_p99_us"] >= iso["reused_median_us"] > 0
    for key in ("a_bare_starlette", "b_hello", "c_hello_table_read", "d_hello_2_workers"):
        h = s["http"][key]
        assert h["rps"] > 0 and h["p99_ms"] >= h["p50_ms"] > 0 and h["errors"] == 0
    pol = s["policies"]
    assert all(v > 0 for v in pol["in_process"].values())
    for key in ("a_no_policy", "b_api_key", "c_jwt", "d_rate_limit"):
        h = pol[key]
        assert h["rps"] > 0 and h["p99_ms"] >= h["p50_ms"] > 0 and h["errors"] == 0
    storm = s["isolation-storm"]
    assert sum(storm["statuses"].values()) == storm["spinners"]
    assert storm["overshoot_max_ms"] >= storm["overshoot_p50_ms"]
    assert storm["fast_storm_requests"] > 0 and storm["fast_storm_p99_ms"] > 0
    met = s["metering"]
    assert met["on"]["rps"] > 0 and met["off"]["rps"] > 0 and met["on_over_off"] > 0
    assert met["in_process"]["cpu_on_us_per_call"] > 0
    d = met["direct"]
    assert d["invoke_cpu_us"] > d["metering_us"] > 0 and d["metrics_us"] > 0
    mem = s["memory"]
    assert mem["warm_1_rss_mib"] >= mem["empty_rss_mib"] > 0
    sv = s["services"]
    assert sv["guest_get_us"] > 0 and sv["raw_get_one_txn_us"] > 0
    assert sv["guest_query_100_rows_us"] > 0 and sv["guest_scan_100_rows_us"] > 0
    ob = s["outbound"]
    assert ob["guest_per_request_ms"] > 0 and ob["httpx_in_host_ms"] > 0
    assert ob["target_ms"] > ob["httpx_in_host_ms"]
    tr = s["triggers"]
    assert tr["msgs_per_s_1_worker"] > 0 and tr["msgs_per_s_2_workers"] > 0
    assert tr["trigger_ms_median"] > 0
    wf = s["workflows"]
    assert wf["run_of_10_steps_ms"] > wf["10_direct_invokes_ms"] > 0
