"""Identifiers that sort by creation time: request ids, message ids, run ids."""

from __future__ import annotations

import itertools
import os
import time

_sequence = itertools.count()


def new_id(prefix: str) -> str:
    """``prefix-`` + 12 hex digits of milliseconds + 16 random hex digits."""
    return sortable_id(prefix, int(time.time() * 1000))


def sortable_id(prefix: str, ms: int) -> str:
    """An id that sorts by ``ms``, then by creation order within this process."""
    seq = next(_sequence) & 0xFFFFFF
    return f"{prefix}-{ms:012x}{seq:06x}{os.urandom(5).hex()}"
