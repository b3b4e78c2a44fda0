"""Ids are unique within a process and across processes, and sort by time, without
reading entropy per id."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import re

from host.common import ids
from host.common.ids import new_id, sortable_id


def test_an_id_has_the_documented_shape_and_sorts_by_time() -> None:
    a = sortable_id("req", 1000)
    b = sortable_id("req", 999)
    assert re.fullmatch(r"req-[0-9a-f]{12}[0-9a-f]{6}[0-9a-f]{10}", a)
    assert b < a
    assert sortable_id("req", 5) < sortable_id("req", 5)  # creation order within a ms


def test_ids_of_one_process_never_repeat() -> None:
    made = {sortable_id("x", 7) for _ in range(50_000)}
    assert len(made) == 50_000


def test_a_wrapped_counter_draws_a_new_tag() -> None:
    source = ids._Source()
    tag = source.tag
    source.sequence = itertools.count(ids._MASK + 1)
    seq, new_tag = source.next()
    assert seq == 0 and new_tag != tag


def _child(queue: multiprocessing.Queue[str]) -> None:
    queue.put(new_id("req"))


def test_a_forked_child_has_its_own_tag() -> None:
    parent = new_id("req")
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    proc = ctx.Process(target=_child, args=(queue,))
    proc.start()
    child = queue.get(timeout=30)
    proc.join(timeout=30)
    assert child[-10:] != parent[-10:], "a forked child must not reuse the parent's tag"
    assert os.getpid() != proc.pid
