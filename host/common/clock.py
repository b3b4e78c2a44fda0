"""Time for triggers, injectable so tests can move it instead of sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where triggers and workflows read the time (milliseconds since the epoch)."""

    def now_ms(self) -> int: ...


class WallClock:
    """The real time."""

    def now_ms(self) -> int:
        return int(time.time() * 1000)


class ManualClock:
    """A clock a test sets and advances."""

    def __init__(self, start_ms: int) -> None:
        self.ms = start_ms

    def now_ms(self) -> int:
        return self.ms

    def advance(self, ms: int) -> None:
        self.ms += ms
