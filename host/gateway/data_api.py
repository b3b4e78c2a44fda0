"""The admin API's debugging view of the managed services: one module per noun.

Tables (``tables_api.py``), buckets (``buckets_api.py``), queues and their dead letters
(``queues_api.py``), events (``events_api.py``) and schedules (``schedules_api.py``);
this module only puts their routes together. Writes made here go through the same
staged effects as a guest's, under the source ``admin``.
"""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from host.gateway.buckets_api import BucketsApi
from host.gateway.events_api import EventsApi
from host.gateway.queues_api import DeadLetterOf, QueuesApi
from host.gateway.schedules_api import SchedulesApi, ScheduleSource
from host.gateway.tables_api import TablesApi
from host.manifest.triggers import dead_letter_queue
from host.platform.platform import Platform

ADMIN_SOURCE = "admin"


def data_routes(platform: Platform, schedules: ScheduleSource, guard: Any) -> list[Route]:
    """The routes of the services' admin view, each behind ``guard``."""
    s, traced = platform.services, platform.tracing.traceparent
    return [
        *TablesApi(s, ADMIN_SOURCE).routes(guard),
        *BucketsApi(s, ADMIN_SOURCE, traced).routes(guard),
        *QueuesApi(s, ADMIN_SOURCE, dead_letter_of(platform), traced).routes(guard),
        *EventsApi(s, ADMIN_SOURCE, traced).routes(guard),
        *SchedulesApi(schedules).routes(guard),
    ]


def dead_letter_of(platform: Platform) -> DeadLetterOf:
    """The dead-letter queue of a queue, as the deployed triggers say."""

    def find(queue: str) -> str:
        for t in platform.registry.triggers().queue:
            if t.queue == queue:
                return dead_letter_queue(t.delivery, queue)
        return f"{queue}.dlq"

    return find
