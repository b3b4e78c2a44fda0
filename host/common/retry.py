"""One retry policy for everything that retries: delivered triggers and workflow steps.

A ``RetryPolicy`` says how many attempts, how long between them (exponential,
capped, optionally jittered so that retries do not march in step) and which error
kinds are worth another attempt. The manifest builds one per trigger and per step;
``triggers/delivery.py`` and the orchestrator ask it the same two questions.
"""

from __future__ import annotations

import random

from msgspec import Struct


class RetryPolicy(Struct, frozen=True):
    """Attempts, backoff and retryable error kinds."""

    max_attempts: int = 1
    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 300.0
    #: the error kinds retried (None: every kind)
    retry_on: tuple[str, ...] | None = None
    #: "equal jitter": wait between half and all of the computed delay
    jitter: bool = True

    def delay_ms(self, attempt: int, rng: random.Random | None = None) -> int:
        """The wait after failed attempt ``attempt`` (1-based) before the next:
        ``initial * multiplier ** (attempt - 1)`` capped at ``max``, then jittered."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(attempt - 1, 0))
        if not self.jitter:
            return int(base * 1000)
        r = (rng or random).random()
        return int(base * 1000 * (0.5 + r / 2))

    def retries(self, kind: str) -> bool:
        """Whether an error of ``kind`` is worth another attempt at all."""
        return self.retry_on is None or kind in self.retry_on

    def should_retry(self, kind: str, attempt: int) -> bool:
        """Whether failed attempt ``attempt`` (1-based) with ``kind`` gets another."""
        return attempt < self.max_attempts and self.retries(kind)
