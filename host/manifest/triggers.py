"""The ``[triggers]`` of an app manifest: what starts an invocation besides HTTP.

One frozen record (a msgspec Struct) per trigger kind (queue, schedule, storage, event), read and
validated here so that the manifest and a deployment's stored copy (the registry keeps
the table as written and reads it back with ``triggers_from_dict``) share one set of
rules. The trigger machinery in ``host/triggers/`` consumes these objects; it never
reads TOML. See ``host.manifest`` for the schema.
"""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field

from host.common.retry import RetryPolicy
from host.manifest.config_table import ConfigTable, Problems
from host.manifest.grants import RESOURCE, is_topic_pattern

KINDS = ("queue", "schedule", "storage", "event")
STORAGE_EVENTS = ("put", "delete")
MISSED = ("latest", "skip")
#: how long a delivery is leased before another consumer may take it (every kind has
#: one; a host known to be dead gives its leases back at once, see services/reclaim.py)
VISIBILITY_TIMEOUT_S = 30.0
_NAME_RULE = "letters, digits, '_', '.', '-', starting with a letter or digit, at most 128"


class Delivery(Struct, frozen=True):
    """Retry and dead-letter policy shared by the delivered trigger kinds."""

    #: attempts and delays (jittered); every error kind is retried
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(max_attempts=5))
    #: where a message goes after ``max_attempts`` failures (None: a default per kind)
    dead_letter: str | None = None

    @property
    def max_attempts(self) -> int:
        return self.retry.max_attempts

    @property
    def backoff(self) -> RetryPolicy:
        """The delays (``initial_s``, ``multiplier``, ``max_s``) as the manifest says."""
        return self.retry


class QueueTrigger(Struct, frozen=True):
    """Run ``function`` on messages of a managed queue, ``batch_size`` at a time."""

    queue: str
    function: str
    batch_size: int = 1
    visibility_timeout_s: float = VISIBILITY_TIMEOUT_S
    concurrency: int = 1
    delivery: Delivery = field(default_factory=Delivery)
    #: a workflow to start instead of a function to run (one of the two)
    workflow: str = ""


class ScheduleTrigger(Struct, frozen=True):
    """Run ``function`` at the times of a cron expression, in ``timezone``."""

    name: str
    cron: str
    function: str
    timezone: str = "UTC"
    #: after downtime: "latest" runs once for the latest missed time, "skip" runs none
    missed: str = "latest"
    workflow: str = ""
    visibility_timeout_s: float = VISIBILITY_TIMEOUT_S


class StorageTrigger(Struct, frozen=True):
    """Run ``function`` when objects whose keys match are put into or deleted from a bucket."""

    bucket: str
    function: str
    prefix: str = ""
    suffix: str = ""
    events: tuple[str, ...] = STORAGE_EVENTS
    delivery: Delivery = field(default_factory=Delivery)
    workflow: str = ""
    visibility_timeout_s: float = VISIBILITY_TIMEOUT_S


class EventTrigger(Struct, frozen=True):
    """Run ``function`` on bus events whose topic matches ``topic`` (a pattern)."""

    topic: str
    function: str
    delivery: Delivery = field(default_factory=Delivery)
    workflow: str = ""
    visibility_timeout_s: float = VISIBILITY_TIMEOUT_S


class Triggers(Struct, frozen=True):
    """Every trigger of an app, by kind, in manifest order."""

    queue: tuple[QueueTrigger, ...] = ()
    schedule: tuple[ScheduleTrigger, ...] = ()
    storage: tuple[StorageTrigger, ...] = ()
    event: tuple[EventTrigger, ...] = ()


def dead_letter_queue(delivery: Delivery, source: str) -> str:
    """Where a delivery's failed messages go: its ``dead_letter``, or ``<source>.dlq``
    (``source``: the queue of a queue trigger, the target of the other kinds)."""
    return delivery.dead_letter or f"{source}.dlq"


def dead_letter_queues(triggers: Triggers) -> set[str]:
    """The dead-letter queue of every trigger."""
    found = {dead_letter_queue(q.delivery, q.queue) for q in triggers.queue}
    for t in triggers.storage:
        found.add(dead_letter_queue(t.delivery, t.function or t.workflow))
    for e in triggers.event:
        found.add(dead_letter_queue(e.delivery, e.function or e.workflow))
    found.update(f"{s.function or s.workflow}.dlq" for s in triggers.schedule)
    return found


def triggers_from_dict(data: dict[str, Any], where: str = "triggers") -> Triggers:
    """The ``[triggers]`` table of a manifest, validated (as stored by a deployment).

    Function names are not checked against a list here: the caller knows which exist.
    """
    problems = Problems(where)
    triggers = read_triggers(ConfigTable(data, "triggers", problems))
    problems.raise_if_any()
    return triggers


def read_triggers(t: ConfigTable) -> Triggers:
    """Read ``[triggers]`` from ``t``, noting every problem in ``t.problems``."""
    queue = tuple(_queue(s) for s in t.tables("queue", "[[triggers.queue]]"))
    schedule = tuple(_schedule(s) for s in t.tables("schedule", "[[triggers.schedule]]"))
    storage = tuple(_storage(s) for s in t.tables("storage", "[[triggers.storage]]"))
    event = tuple(_event(s) for s in t.tables("event", "[[triggers.event]]"))
    t.finish()
    _check_unique(t, "schedule", [s.name for s in schedule], "two schedules named {!r}")
    _check_unique(
        t,
        "queue",
        [f"{q.queue} → {q.function}" for q in queue],
        "the queue trigger {} appears twice",
    )
    return Triggers(queue, schedule, storage, event)


def _check_unique(t: ConfigTable, kind: str, keys: list[str], message: str) -> None:
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key and key in seen:
            t.problems.add(f"{t.key(kind)}[{i}]", message.format(key))
        seen.add(key)


def _resource(s: ConfigTable, k: str, what: str, required: bool = True) -> str | None:
    value = s.string(k, required=required)
    if value and not RESOURCE.match(value):
        s.error(k, f"{value!r} is not a valid {what} name ({_NAME_RULE})")
    return value


def _delivery(s: ConfigTable) -> Delivery:
    b = s.table("backoff")
    initial = b.duration("initial", 1.0)
    maximum = b.duration("max", 300.0)
    multiplier = b.number("multiplier", 2.0, minimum=1.0)
    b.finish()
    if maximum < initial:
        b.error("max", f"must be at least 'initial' ({initial:g}s), got {maximum:g}s")
    return Delivery(
        retry=RetryPolicy(s.integer("max_attempts", 5, minimum=1), initial, multiplier, maximum),
        dead_letter=_resource(s, "dead_letter", "dead-letter queue", required=False),
    )


def _visibility(s: ConfigTable) -> float:
    return s.duration("visibility_timeout", VISIBILITY_TIMEOUT_S, positive=True)


def _function(s: ConfigTable) -> str:
    """The function a trigger runs; a trigger names a function or a workflow, not both."""
    has_workflow = s.data.get("workflow") is not None
    function = s.string("function", required=not has_workflow) or ""
    if function and has_workflow:
        s.error("workflow", "a trigger runs a function or starts a workflow, not both")
    return function


def _queue(s: ConfigTable) -> QueueTrigger:
    trig = QueueTrigger(
        queue=_resource(s, "queue", "queue") or "",
        function=_function(s),
        workflow=s.string("workflow", "") or "",
        batch_size=s.integer("batch_size", 1, minimum=1),
        visibility_timeout_s=_visibility(s),
        concurrency=s.integer("concurrency", 1, minimum=1),
        delivery=_delivery(s),
    )
    s.finish()
    return trig


def _schedule(s: ConfigTable) -> ScheduleTrigger:
    trig = ScheduleTrigger(
        name=_resource(s, "name", "schedule") or "",
        cron=s.string("cron", required=True) or "",
        function=_function(s),
        workflow=s.string("workflow", "") or "",
        timezone=s.string("timezone", "UTC") or "UTC",
        missed=s.string("missed", "latest") or "latest",
        visibility_timeout_s=_visibility(s),
    )
    s.finish()
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # (as croniter: only with a schedule)

    from croniter import croniter  # here: a host with no schedule never imports it

    if trig.cron and not croniter.is_valid(trig.cron):
        s.error(
            "cron",
            f"{trig.cron!r} is not a valid cron expression "
            "(five fields 'minute hour day month weekday', e.g. '0 3 * * *', or '@daily')",
        )
    try:
        ZoneInfo(trig.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        s.error("timezone", f"{trig.timezone!r} is not a known IANA time zone (e.g. 'UTC')")
    if trig.missed not in MISSED:
        s.error("missed", f"expected 'latest' or 'skip', got {trig.missed!r}")
    return trig


def _storage(s: ConfigTable) -> StorageTrigger:
    raw = s.raw("events")
    events = STORAGE_EVENTS if raw is None else raw
    if (
        not isinstance(events, list | tuple)
        or not events
        or not all(isinstance(e, str) and e in STORAGE_EVENTS for e in events)
    ):
        s.error("events", f"expected a non-empty list of 'put' and 'delete', got {raw!r}")
        events = STORAGE_EVENTS
    trig = StorageTrigger(
        bucket=_resource(s, "bucket", "bucket") or "",
        function=_function(s),
        workflow=s.string("workflow", "") or "",
        prefix=s.string("prefix", "") or "",
        suffix=s.string("suffix", "") or "",
        events=tuple(dict.fromkeys(events)),
        delivery=_delivery(s),
        visibility_timeout_s=_visibility(s),
    )
    s.finish()
    return trig


def _event(s: ConfigTable) -> EventTrigger:
    topic = s.string("topic", required=True) or ""
    if topic and not is_topic_pattern(topic):
        s.error(
            "topic",
            f"{topic!r} is not a topic or pattern: dot-separated words, '*' for one "
            "segment, '#' (last) for the rest, e.g. 'order.*'",
        )
    trig = EventTrigger(
        topic=topic,
        function=_function(s),
        delivery=_delivery(s),
        workflow=s.string("workflow", "") or "",
        visibility_timeout_s=_visibility(s),
    )
    s.finish()
    return trig
