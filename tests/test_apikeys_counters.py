"""The services behind gateway policies: API keys (hashed in LMDB) and the counters of
rate limits and quotas, shared by processes (host/services/apikeys.py, counters.py)."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import pytest

from host.errors import InvalidArgument, NotFound
from host.services.apikeys import ApiKeys, split_key
from host.services.counters import Allowance, Bucket, Counters
from host.services.storage import Storage


def test_keys_are_stored_hashed_and_checked(tmp_path: Path) -> None:
    storage = Storage(tmp_path / "db")
    now = [1_000_000]
    keys = ApiKeys(storage, now_ms=lambda: now[0])
    g0 = keys.generation()
    key, text = keys.create("ci", expires_in_s=60, policies=("orders",), routes=("/orders",))
    assert keys.generation() == g0 + 1
    key_id, secret = split_key(text) or ("", "")
    assert key_id == key.id and len(secret) >= 40
    raw = b"".join(v for _, v in storage.env.begin(db=storage.db(b"apikeys")).cursor())
    assert secret.encode() not in raw  # only the hash is kept
    assert keys.lookup(text) == key
    assert keys.lookup(text + "x") is None and keys.lookup("nk_bad") is None
    assert key.allows("/orders", ("orders",)) and not key.allows("/other", ("orders",))
    assert not key.expired(now[0] + 59_000) and key.expired(now[0] + 60_000)
    other = ApiKeys(storage)  # what another process sees, through the shared mapping
    seen = other.generation()
    revoked = keys.revoke(key.id)
    assert revoked.revoked_ms == now[0] and keys.generation() == g0 + 2
    assert other.generation() != seen
    keys.revoke(key.id)  # revoking twice changes nothing
    assert other.generation() == g0 + 2
    assert [k.id for k in keys.list()] == [key.id]
    with pytest.raises(NotFound):
        keys.revoke("000000000000")
    with pytest.raises(InvalidArgument):
        keys.create("")
    keys.close()
    other.close()
    storage.close()


def test_token_bucket_and_allowances(tmp_path: Path) -> None:
    c = Counters(tmp_path / "counters")
    bucket = Bucket(b"b/r\0ip", rate_per_s=1.0, capacity=2)
    day = Allowance(b"q/plan\0k\0d1", limit=3, resets_at=1000.0)
    first = c.charge(bucket, [day], now=100.0)
    assert first.allowed and first.remaining == 1.0 and first.left == (2,)
    assert c.charge(bucket, [day], now=100.0).allowed
    empty = c.charge(bucket, [day], now=100.0)
    assert not empty.allowed and empty.exhausted is None
    assert empty.retry_after_s == pytest.approx(1.0)
    assert c.usage(day.key) == 2  # a refused call is not counted
    later = c.charge(bucket, [day], now=101.0)  # one token back
    assert later.allowed and c.usage(day.key) == 3
    over = c.charge(bucket, [day], now=200.0)
    assert not over.allowed and over.exhausted == day and over.retry_after_s == 800.0
    # a new period starts from zero
    assert c.charge(None, [Allowance(day.key, 3, 2000.0)], now=1000.0).allowed
    c.close()


def _take(path: str, n: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    c = Counters(Path(path))
    bucket = Bucket(b"b/shared", rate_per_s=1e-9, capacity=50)
    out.put(sum(c.charge(bucket, [], now=1.0).allowed for _ in range(n)))
    c.close()


def test_processes_share_one_bucket(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue = ctx.Queue()  # type: ignore[type-arg]
    procs = [ctx.Process(target=_take, args=(str(tmp_path / "c"), 40, out)) for _ in range(2)]
    for p in procs:
        p.start()
    taken = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    assert sum(taken) == 50  # 80 attempts, one shared capacity of 50
