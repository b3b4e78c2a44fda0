"""Identifiers that sort by creation time: request ids, message ids, run ids.

An id is ``prefix-`` + 12 hex digits of milliseconds + 6 of a per-process counter + 10
of a per-process random tag. The tag is drawn once (and again in a forked child, and
whenever the counter wraps), so making an id reads no entropy: ids from one process
differ by their counter, ids from two processes by their tags.
"""

from __future__ import annotations

import itertools
import os
import time

_COUNTER_BITS = 24
_MASK = (1 << _COUNTER_BITS) - 1


class _Source:
    """This process's tag and counter."""

    def __init__(self) -> None:
        self.redraw()

    def redraw(self) -> None:
        self.tag = os.urandom(5).hex()
        self.sequence = itertools.count()

    def next(self) -> tuple[int, str]:
        seq = next(self.sequence)
        if seq > _MASK:  # wrapped: a new tag keeps (counter, tag) pairs unique
            self.redraw()
            seq = next(self.sequence)
        return seq, self.tag


_source = _Source()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_source.redraw)


def new_id(prefix: str) -> str:
    """``prefix-`` + 12 hex digits of milliseconds + 16 hex digits unique to the id."""
    return sortable_id(prefix, int(time.time() * 1000))


def sortable_id(prefix: str, ms: int) -> str:
    """An id that sorts by ``ms``, then by creation order within this process."""
    seq, tag = _source.next()
    return f"{prefix}-{ms:012x}{seq:06x}{tag}"
