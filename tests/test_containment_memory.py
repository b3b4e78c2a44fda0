"""The host's memory under guests that try to grow it (issue 12, class 1): a log flood
for a whole timeout, 20 MB of empty msgpack maps sent to an import, and staging
values until refused, 20 times each; the host's RSS afterwards stays within 50 MiB of
what it was before."""

from __future__ import annotations

import pytest

from host.errors import FunctionFailed, FunctionTimeout
from host.hostcalls.wire import INVALID
from host.manifest.functions import FunctionSpec
from host.manifest.grants import Grants
from host.platform.platform import Platform, PlatformOptions
from tests.hostile import guest, packb, settled_rss
from tests.test_containment import empty_maps_guest

MiB = 1024 * 1024
GRANTS = Grants(tables={"t": "read-write"}, buckets={"b": "read-write"})


#: logs 200-byte lines until the timeout stops it
FLOOD = guest(body="(loop $l (call $log (i32.const 1) (i32.const 1024) (i32.const 200)) (br $l))")

#: kv_put of a ~1 MiB value (a new key each time) until the reply is not ok, then
#: the invocation fails (so the 80 MiB it staged are never written)
VALUE_AT = 2 * MiB
_VALUE = packb({"table": "t", "key": b"k0000", "value": b"v" * (MiB - 100)})
_KEY_END = VALUE_AT + _VALUE.index(b"k0000") + 4  # the key's last byte, bumped per put
FAILS = packb({"error": "refused, as expected"})
STAGE = guest(
    body=f"""(loop $l
        (i32.store8 (i32.const {_KEY_END})
          (i32.add (i32.load8_u (i32.const {_KEY_END})) (i32.const 1)))
        (local.set $r (call $kv_put (i32.const {VALUE_AT}) (i32.const {len(_VALUE)})))
        (br_if $l (i32.eqz (i32.load8_u (i32.add (i32.wrap_i64
          (i64.shr_u (local.get $r) (i64.const 32))) (i32.const 1))))))""",
    extra_data=[(VALUE_AT, _VALUE)],
    memory_pages=64,
    response=FAILS,
)


@pytest.fixture
def mem_platform(tmp_path: object) -> Platform:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    p = Platform(tmp_path / "data", PlatformOptions(initial_map_size=1 << 20))
    p.deploy(FunctionSpec(name="flood", timeout_s=0.3, grants=GRANTS), FLOOD)
    p.deploy(
        FunctionSpec(name="maps", grants=GRANTS),
        empty_maps_guest("blob_put", {"bucket": "b", "key": "k"}, "data", 20_000_000),
    )
    p.deploy(FunctionSpec(name="stage", grants=GRANTS), STAGE)
    return p


def run_all(p: Platform) -> None:
    with pytest.raises(FunctionTimeout):
        p.invoke("flood", {"kind": "invoke"})
    assert p.invoke("maps", {"kind": "invoke"}).response["output"][0] == INVALID
    with pytest.raises(FunctionFailed):  # it stopped at its budget, then failed
        p.invoke("stage", {"kind": "invoke"})


@pytest.mark.slow
def test_rss_stays_within_budget(mem_platform: Platform) -> None:
    p = mem_platform
    try:
        run_all(p)  # first runs: code paths, caches and the LMDB map warm up
        before = settled_rss()
        for _ in range(20):
            run_all(p)
        grown = settled_rss() - before
        assert grown < 50 * MiB, f"RSS grew by {grown / MiB:.1f} MiB"
        records = p.telemetry.recent("flood", limit=100)
        assert all(len(r.logs) <= 1001 for r in records)
    finally:
        p.close()


def test_failed_staging_commits_nothing(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    p = Platform(tmp_path / "data", PlatformOptions(initial_map_size=1 << 20))
    try:
        p.deploy(FunctionSpec(name="stagefail", grants=GRANTS), guest_failing_after_staging())
        before = p.services.storage.env.info()["last_txnid"]
        with pytest.raises(FunctionFailed):
            p.invoke("stagefail", {"kind": "invoke"})
        assert p.services.storage.env.info()["last_txnid"] == before
    finally:
        p.close()


def guest_failing_after_staging() -> bytes:
    return guest(stage=[("kv_put", packb({"table": "t", "key": "k", "value": 1}))], response=FAILS)
