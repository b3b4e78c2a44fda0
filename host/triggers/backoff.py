"""Retry delays: exponential, capped, with jitter so that retries do not march in step."""

from __future__ import annotations

import random

from host.manifest.triggers import Backoff


def retry_delay_ms(policy: Backoff, attempt: int, rng: random.Random | None = None) -> int:
    """The wait before the attempt after ``attempt`` (1-based): ``initial * multiplier **
    (attempt - 1)`` capped at ``max``, then "equal jitter": between half and all of it."""
    base = min(policy.max_s, policy.initial_s * policy.multiplier ** max(attempt - 1, 0))
    r = (rng or random).random()
    return int(base * 1000 * (0.5 + r / 2))
