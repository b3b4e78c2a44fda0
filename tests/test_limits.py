"""Rate limits and quotas of a route (host/gateway/policies/limits.py) on real counters:
the IETF RateLimit headers, the refusal kinds, and the UTC periods of a quota."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest
from starlette.requests import Request

from host.errors import QuotaExceeded, RateLimited
from host.gateway.policies.identity import Identity
from host.gateway.policies.limits import Limiter
from host.manifest.gateway import Quota, RateLimit
from host.services.counters import Counters


def request(ip: str) -> Request:
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "client": (ip, 1)}
    return Request(scope)


def test_bucket_per_caller_with_headers(tmp_path: Path) -> None:
    counters = Counters(tmp_path / "c")
    limiter = Limiter(counters, "GET /x", RateLimit(2, 60.0, 2, "ip"), "p", None, "")
    h = limiter.charge(request("10.0.0.1"), None)
    assert h == {"ratelimit-policy": '"p";q=2;w=60', "ratelimit": '"p";r=1;t=30'}
    limiter.charge(request("10.0.0.1"), None)
    with pytest.raises(RateLimited) as refused:
        limiter.charge(request("10.0.0.1"), None)
    assert refused.value.headers["retry-after"] == "30"
    assert refused.value.headers["ratelimit"] == '"p";r=0;t=30'
    assert limiter.charge(request("10.0.0.2"), None)  # another caller, another bucket
    counters.close()


def test_quota_by_key_across_routes_of_one_plan(tmp_path: Path) -> None:
    counters = Counters(tmp_path / "c")
    quota = Quota(day=2, month=3)
    a = Limiter(counters, "GET /a", None, "", quota, "plan")
    b = Limiter(counters, "GET /b", None, "", quota, "plan")
    who = Identity("api_key", "ci", {}, "k1")
    h = a.charge(request("1.1.1.1"), who)
    assert h["ratelimit-policy"].startswith('"plan-day";q=2;w=86400, "plan-month";q=3;w=')
    b.charge(request("1.1.1.1"), who)  # the same plan: one allowance
    with pytest.raises(QuotaExceeded, match="day quota of 2"):
        a.charge(request("1.1.1.1"), who)
    other = Identity("api_key", "ci2", {}, "k2")
    assert a.charge(request("1.1.1.1"), other)
    counters.close()


def test_quota_periods_end_at_utc_midnight_and_month_end(tmp_path: Path) -> None:
    counters = Counters(tmp_path / "c")
    limiter = Limiter(counters, "GET /a", None, "", Quota(day=1, month=1), "plan")
    now = calendar.timegm((2026, 12, 31, 23, 0, 0))
    day, month = limiter._periods(Identity("jwt", "u", {}), now)
    assert day.resets_at == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert month.resets_at == calendar.timegm((2027, 1, 1, 0, 0, 0))
    assert month.seconds == 31 * 86400
    assert day.key.endswith(b"d20261231") and month.key.endswith(b"m202612")
    counters.close()
