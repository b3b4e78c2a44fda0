"""Delivering queued messages to a function: lease, invoke, ack or retry, dead-letter.

Every trigger ends here. A user queue's messages, the storage and bus events fanned
out from the outbox, and schedule firings are all messages on a queue; a
``Subscription`` says which function gets them, how they become an event, and its
``RetryPolicy``. ``Deliverer.poll_once`` is one step (tests drive it with an injected
clock); ``run`` loops it on a thread.

At-least-once, effects once: the messages are acked in the same transaction that
commits the function's effects (the request's ``AckOnCommit`` hook), and each message
id is recorded there as committed, so a redelivery (after a crash, or after a
visibility timeout ran out while the function was still running) never applies the
effects twice.

A storage fault (a full disk) is not the function's failure: the batch goes back
without counting an attempt, and the deliverer waits (``FaultPacer``) before the next.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from msgspec import Struct

from host.common.clock import Clock
from host.common.idle import IdlePoll
from host.errors import NimbusError, Overloaded, ServiceUnavailable
from host.manifest.triggers import Delivery
from host.platform.platform import Platform
from host.platform.request import InvocationRequest
from host.services.faults import FaultPacer
from host.services.interface import UnitOfWork
from host.services.queues import Message
from host.services.work import Ack

log = logging.getLogger("nimbus.triggers")

#: an overloaded function's messages come back after this long, without an attempt
OVERLOADED_RETRY_MS = 100

EventMaker = Callable[[list[Message]], dict[str, Any]]
#: starts a workflow run: (workflow, input, idempotency key) -> the run
StartWorkflow = Callable[[str, Any, str | None], dict[str, Any]]


class Subscription(Struct, frozen=True):
    """A function consuming one queue."""

    name: str
    queue: str
    function: str
    make_event: EventMaker
    delivery: Delivery
    dead_letter: str
    batch_size: int = 1
    visibility_ms: int = 30_000
    concurrency: int = 1
    #: start this workflow with the event as input, instead of running ``function``
    workflow: str = ""


class AckOnCommit:
    """The commit hook of a delivery: the batch is acked with the function's effects."""

    __slots__ = ("ack",)

    def __init__(self, ack: Ack) -> None:
        self.ack = ack

    def check(self, response: dict[str, Any]) -> None:
        pass  # any successful response acks the batch

    def apply(self, work: UnitOfWork) -> None:
        self.ack.apply(work)


class DeliveryStats(Struct):
    """Counters of one deliverer, for tests and the admin API."""

    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    duplicates: int = 0


class Deliverer:
    """Runs one subscription's deliveries."""

    def __init__(
        self,
        platform: Platform,
        sub: Subscription,
        clock: Clock,
        start_workflow: StartWorkflow | None = None,
    ) -> None:
        self.platform = platform
        self.start_workflow = start_workflow
        self.sub = sub
        self.clock = clock
        self.stats = DeliveryStats()
        self.faults = FaultPacer(f"deliverer {sub.name}")
        self.holder = platform.incarnation
        self._services = platform.services
        self._consumer = platform.services.consumer

    def poll_once(self) -> int:
        """Lease a batch and deliver it; the number of messages handled (0: none due)."""
        sub = self.sub
        now = self.clock.now_ms()
        batch = self._consumer.lease(sub.queue, sub.batch_size, sub.visibility_ms, now, self.holder)
        if not batch:
            return 0
        ack = Ack(sub.queue, [m.id for m in batch])
        try:
            if sub.workflow:
                self._start_run(batch, ack)
                return len(batch)
            request = InvocationRequest(
                sub.function,
                sub.make_event(batch),
                idempotency_ids=[f"{sub.name}:{m.id}" for m in batch],
                commit=AckOnCommit(ack),
            )
            result = self.platform.execute(request)
        except Overloaded as e:  # Throttled too: at max_concurrency, not the function's fault
            self._retry(batch, e.kind, f"{e.kind}: {e}", overloaded=True)
        except ServiceUnavailable as e:  # the store, not the function: no attempt burnt
            delay_ms = max(int(self.faults.failed(e) * 1000), 1)
            back = {m.id: self.clock.now_ms() + delay_ms for m in batch}
            self._consumer.retry(sub.queue, back, f"{e.kind}: {e}", count=False)
        except NimbusError as e:
            self.stats.failed += 1
            self._retry(batch, e.kind, f"{e.kind}: {e}")
        except Exception as e:
            log.exception("delivery to %s failed unexpectedly", sub.function)
            self.stats.failed += 1
            self._retry(batch, "InternalError", f"InternalError: {e!r}")
        else:
            self.faults.ok()
            self.stats.delivered += len(batch)
            if not result.applied:
                self.stats.duplicates += len(batch)
        return len(batch)

    def _start_run(self, batch: list[Message], ack: Ack) -> None:
        """Start the subscription's workflow with the event; the key (the first message
        id) makes a redelivery return the run already started, then the ack lands."""
        if self.start_workflow is None:
            raise RuntimeError("this host does not run workflows")
        key = f"{self.sub.name}:{batch[0].id}"
        self.start_workflow(self.sub.workflow, self.sub.make_event(batch), key)
        self._consumer.ack(ack.queue, ack.ids)
        self.stats.delivered += len(batch)

    def _retry(self, batch: list[Message], kind: str, error: str, overloaded: bool = False) -> None:
        sub, consumer = self.sub, self._consumer
        now = self.clock.now_ms()
        policy = sub.delivery.retry
        if overloaded:  # not an attempt: the same messages come back soon
            back = {m.id: now + OVERLOADED_RETRY_MS for m in batch}
            consumer.retry(sub.queue, back, error, count=False)
            return
        dead = [m.id for m in batch if not policy.should_retry(kind, m.attempt)]
        if dead:
            consumer.dead_letter(sub.queue, dead, sub.dead_letter, now, error)
        retried = {m.id: now + policy.delay_ms(m.attempt) for m in batch if m.id not in set(dead)}
        if retried:
            consumer.retry(sub.queue, retried, error)
        if dead:
            self.stats.dead_lettered += len(dead)
            log.warning(
                "%s: %d message(s) moved to %s after %d attempts: %s",
                sub.name,
                len(dead),
                sub.dead_letter,
                sub.delivery.max_attempts,
                error,
            )

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; errors in the machinery are logged, not fatal."""
        idle = IdlePoll()
        while not stop.is_set():
            try:
                handled = self.poll_once()
            except ServiceUnavailable as e:  # the lease or the retry could not be written
                self.faults.wait(stop, e)
                continue
            except Exception:
                log.exception("deliverer %s failed; retrying", self.sub.name)
                handled = 0
            if handled:
                idle.found()
                if self.faults.faults:  # the last commit met a storage fault
                    stop.wait(self.faults.delay())
            elif not stop.is_set():
                idle.waited(self._services.wait_for_commit(idle.wait_s))
