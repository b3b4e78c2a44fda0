"""Identifiers that sort by creation time: request ids, message ids, run ids."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    """``prefix-`` + 12 hex digits of milliseconds + 16 random hex digits."""
    return f"{prefix}-{int(time.time() * 1000):012x}{os.urandom(8).hex()}"
