"""Rate limits and quotas of a route, and the headers that tell a client about them.

The token bucket of a route is keyed by the caller (client IP, API key or JWT
subject); a quota (usage plan) counts an authenticated caller's calls per UTC day
and month under the policy's name, whatever route of the plan they call. The counts
live in ``host/services/counters.py``, shared by every worker process.

Headers follow the IETF httpapi draft "RateLimit header fields for HTTP"::

    RateLimit-Policy: "orders";q=20;w=2, "orders-day";q=1000;w=86400
    RateLimit: "orders";r=13;t=1, "orders-day";r=987;t=41230

``q`` is the bucket's capacity (or the quota), ``w`` the seconds it takes to refill
(or the period), ``r`` what remains and ``t`` the seconds until it is back. A refused
call gets 429 with ``Retry-After`` as well.
"""

from __future__ import annotations

import calendar
import math
import time
from typing import NamedTuple

from starlette.requests import Request

from host.errors import QuotaExceeded, RateLimited
from host.gateway.policies.identity import Identity
from host.manifest.gateway import Quota, RateLimit
from host.services.counters import Allowance, Bucket, Charge
from host.services.interface import RateCounters

DAY_S = 86_400


class Limiter:
    """One route's rate limit and quota, charged once per call."""

    def __init__(
        self,
        counters: RateCounters,
        route_key: str,
        rate: RateLimit | None,
        rate_policy: str,
        quota: Quota | None,
        quota_policy: str,
    ) -> None:
        self.counters = counters
        self.route_key = route_key.encode()
        self.rate = rate
        self.rate_name = rate_policy
        self.quota = quota
        self.quota_name = quota_policy
        self._bucket_prefix = b"b/" + self.route_key + b"\0"
        if rate is not None:
            self.rate_per_s = rate.rate / rate.per_s
            self.window = max(1, math.ceil(rate.capacity / self.rate_per_s))
            self._rate_policy = f'"{rate_policy}";q={rate.capacity};w={self.window}'

    def charge(self, request: Request, identity: Identity | None) -> dict[str, str]:
        """Count the call; the headers to send, or ``RateLimited``/``QuotaExceeded``."""
        now = time.time()
        bucket = None
        if self.rate is not None:
            caller = _caller(self.rate.key, request, identity)
            bucket = Bucket(
                self._bucket_prefix + caller.encode(), self.rate_per_s, self.rate.capacity
            )
        periods = self._periods(identity, now)
        charge = self.counters.charge(bucket, [p.key_allowance for p in periods], now)
        headers = self._headers(charge, periods, now)
        if charge.allowed:
            return headers
        retry = max(1, math.ceil(charge.retry_after_s))
        headers["retry-after"] = str(retry)
        if charge.exhausted is not None:
            period = next(p for p in periods if p.key == charge.exhausted.key)
            raise QuotaExceeded(
                f"the {period.name} quota of {period.limit} calls is used up; "
                f"it resets in {retry} s",
                headers,
            )
        rate = self.rate
        assert rate is not None
        raise RateLimited(
            f"too many requests: {rate.rate:g} per {rate.per_s:g} s (burst {rate.capacity}) "
            f"for this caller; retry in {retry} s",
            headers,
        )

    def _periods(self, identity: Identity | None, now: float) -> list[_PeriodAllowance]:
        if self.quota is None or identity is None:
            return []
        caller = f"{identity.kind}:{identity.key_id or identity.subject}"
        base = b"q/" + self.quota_name.encode() + b"\0" + caller.encode() + b"\0"
        t = time.gmtime(now)
        out = []
        if self.quota.day:
            day_start = calendar.timegm((t.tm_year, t.tm_mon, t.tm_mday, 0, 0, 0))
            out.append(
                _PeriodAllowance(
                    "day",
                    self.quota.day,
                    base + time.strftime("d%Y%m%d", t).encode(),
                    day_start + DAY_S,
                    DAY_S,
                )
            )
        if self.quota.month:
            year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
            start = calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0))
            end = calendar.timegm((year, month, 1, 0, 0, 0))
            out.append(
                _PeriodAllowance(
                    "month",
                    self.quota.month,
                    base + time.strftime("m%Y%m", t).encode(),
                    end,
                    end - start,
                )
            )
        return out

    def _headers(
        self, charge: Charge, periods: list[_PeriodAllowance], now: float
    ) -> dict[str, str]:
        policy: list[str] = []
        state: list[str] = []
        if self.rate is not None:
            remaining = math.floor(charge.remaining)
            t = charge.retry_after_s if remaining < 1 and not charge.allowed else charge.full_in_s
            policy.append(self._rate_policy)
            state.append(f'"{self.rate_name}";r={remaining};t={math.ceil(t)}')
        lefts = charge.left if charge.allowed else ()
        for i, p in enumerate(periods):
            name = f"{self.quota_name}-{p.name}"
            policy.append(f'"{name}";q={p.limit};w={p.seconds}')
            if lefts:
                left = lefts[i]
            elif charge.exhausted is not None and charge.exhausted.key == p.key:
                left = 0
            else:
                left = p.limit - self.counters.usage(p.key)
            state.append(f'"{name}";r={max(0, left)};t={math.ceil(p.resets_at - now)}')
        if not policy:
            return {}
        return {"ratelimit-policy": ", ".join(policy), "ratelimit": ", ".join(state)}


class _PeriodAllowance(NamedTuple):
    """One UTC period of a quota (a tuple: built on every request of a plan)."""

    name: str
    limit: int
    key: bytes
    resets_at: float
    seconds: int

    @property
    def key_allowance(self) -> Allowance:
        return Allowance(self.key, self.limit, self.resets_at)


def _caller(kind: str, request: Request, identity: Identity | None) -> str:
    if kind == "api_key" and identity is not None and identity.key_id:
        return f"key:{identity.key_id}"
    if kind in ("api_key", "subject") and identity is not None:
        return f"sub:{identity.kind}:{identity.subject}"
    return f"ip:{request.client.host if request.client else ''}"
