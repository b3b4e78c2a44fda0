"""One outbound HTTP request from a guest, next to the same request from httpx in the
host process, against the same local server in the same run.

The server is the bare Starlette reference (its own process, so it does not share
the host's GIL). Three figures, each a median over rounds:

- httpx: a keep-alive ``httpx.Client`` GET in this process (the reference);
- guest, per request: one invocation making 32 requests through ``http_fetch``
  (allowlist, address check and pinning, Idempotency-Key, streaming body read, the
  msgpack crossing), divided by 32, so instantiation is not counted;
- guest, whole invocation with one request (fresh instance included).

The target is per request <= 1.5 x httpx + 0.2 ms::

    python -m bench.outbound [--rounds 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.servers import ROOT, bare_starlette
from host.manifest.functions import function_spec_from_dict
from host.platform.platform import Platform
from host.toolchain.builder import build_function

PER_INVOCATION = 32


def _median_ms(fn: Any, rounds: int, per: int = 1) -> float:
    runs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000 / per)
    return statistics.median(runs)


def run(quick: bool, rounds: int | None = None) -> dict[str, Any]:
    rounds = rounds or (30 if quick else 200)
    wasm = build_function(ROOT / "bench" / "guests" / "fetch_zig").wasm.read_bytes()
    server = bare_starlette(b"paid\n")
    url = f"{server.url}/charge"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            platform = Platform(Path(tmp))
            client = httpx.Client()
            try:
                config = {"wasm": "fetch.wasm", "allowed_outbound_hosts": [server.url]}
                platform.deploy(function_spec_from_dict("fetch", config), wasm)

                def guest(n: int) -> None:
                    r = platform.invoke("fetch", {"kind": "invoke", "input": {"url": url, "n": n}})
                    assert r.response["output"] == n, r.response

                def reference() -> None:
                    assert client.get(url).status_code == 200

                for _ in range(20):  # warm both pools, the module and the server
                    guest(1)
                    reference()
                # interleaved, so both see the same machine load
                ref, per_request, one = [], [], []
                for _ in range(3):
                    ref.append(_median_ms(reference, rounds))
                    per_request.append(
                        _median_ms(lambda: guest(PER_INVOCATION), rounds // 8 or 1, PER_INVOCATION)
                    )
                    one.append(_median_ms(lambda: guest(1), rounds))
            finally:
                client.close()
                platform.close()
    finally:
        server.stop()
    httpx_ms = statistics.median(ref)
    guest_ms = statistics.median(per_request)
    target_ms = 1.5 * httpx_ms + 0.2
    return {
        "httpx_in_host_ms": httpx_ms,
        "guest_per_request_ms": guest_ms,
        "guest_invocation_with_one_request_ms": statistics.median(one),
        "ratio": guest_ms / httpx_ms,
        "target_ms": target_ms,
        "within_target": guest_ms <= target_ms,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    a = parser.parse_args()
    print(json.dumps(run(a.quick, a.rounds), indent=2))
