"""``GET /_admin/metrics``: the Prometheus exposition of this worker's metrics.

Invocations by function, trigger and outcome, their wall-time histogram and cold
starts come from the platform's telemetry (counted as each invocation ends); queue
depth, messages in flight and dead letters are read from the services at scrape
time, so every worker reports the same, current, figures for them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio.to_thread
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.platform.platform import Platform


class QueueCollector(Collector):
    """Queue gauges read from the services when scraped."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[Metric]:
        stats = self.platform.services.consumer.all_stats(int(time.time() * 1000))
        families = {
            "depth": GaugeMetricFamily(
                "nimbus_queue_depth", "Messages in a queue (all states)", labels=["queue"]
            ),
            "in_flight": GaugeMetricFamily(
                "nimbus_queue_in_flight",
                "Messages leased or backing off after a failure",
                labels=["queue"],
            ),
            "delayed": GaugeMetricFamily(
                "nimbus_queue_delayed", "Messages sent with a delay not yet over", labels=["queue"]
            ),
        }
        for name, st in stats.items():
            for field, family in families.items():
                family.add_metric([name], getattr(st, field))
        yield from families.values()


class MetricsApi:
    """Routes under ``/_admin/metrics``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.scraped = CollectorRegistry()
        self.scraped.register(QueueCollector(platform))

    def routes(self, guard: Any) -> list[Route]:
        return [Route("/metrics", guard(self.metrics), methods=["GET"])]

    async def metrics(self, request: Request) -> Response:
        def text() -> bytes:
            return generate_latest(self.platform.telemetry.registry) + generate_latest(self.scraped)

        body = await anyio.to_thread.run_sync(text)
        return Response(body, media_type=CONTENT_TYPE_LATEST)
