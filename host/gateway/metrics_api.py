"""``GET /_admin/metrics``: the Prometheus exposition of this worker's metrics.

Invocations by function, trigger and outcome, their wall-time histogram and cold
starts come from the platform's telemetry (counted as each invocation ends, summed
over the workers when the server runs several). The rest is read when scraped: from
the services (queue depth, messages in flight, the age of the oldest message, dead
letters, workflow runs by status, LMDB map use), so every worker reports the same,
current, figures for them; and from the worker that answers (invocations running
now per function, its warm pool).
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

from host.manifest.triggers import dead_letter_queues
from host.platform.platform import Platform
from host.services.services import Services


class QueueCollector(Collector):
    """Queue gauges read from the services when scraped."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[Metric]:
        now_ms = int(time.time() * 1000)
        stats = self.platform.services.consumer.all_stats(now_ms)
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
        oldest = GaugeMetricFamily(
            "nimbus_queue_oldest_message_age_seconds",
            "Age of the oldest message still in a queue (0: empty)",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "nimbus_dead_letters",
            "Messages in a dead-letter queue (every trigger's, empty ones as 0)",
            labels=["queue"],
        )
        for name, st in stats.items():
            for field, family in families.items():
                family.add_metric([name], getattr(st, field))
            age_s = max(now_ms - st.oldest_ms, 0) / 1000 if st.oldest_ms else 0.0
            oldest.add_metric([name], age_s)
        for name in sorted(dead_letter_queues(self.platform.registry.triggers())):
            found = stats.get(name)
            dead.add_metric([name], found.depth if found is not None else 0)
        yield from families.values()
        yield oldest
        yield dead


class PlatformCollector(Collector):
    """Workflow runs, LMDB space, the warm pool and running invocations, when scraped."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform

    def collect(self) -> Iterator[Metric]:
        p = self.platform
        runs = GaugeMetricFamily(
            "nimbus_workflow_runs", "Workflow runs kept, by status", labels=["workflow", "status"]
        )
        counts: dict[tuple[str, str], int] = {}
        for run in p.services.runs.all():
            key = (str(run.get("workflow", "")), str(run.get("status", "")))
            counts[key] = counts.get(key, 0) + 1
        for (workflow, status), n in sorted(counts.items()):
            runs.add_metric([workflow, status], n)
        yield runs
        size = GaugeMetricFamily(
            "nimbus_lmdb_map_size_bytes", "LMDB map size (grows when full)", labels=["env"]
        )
        used = GaugeMetricFamily(
            "nimbus_lmdb_used_bytes", "LMDB pages in use, bytes", labels=["env"]
        )
        # LMDB's environments (a PostgreSQL store has no map to fill)
        spaces = p.services.space() if isinstance(p.services, Services) else {}
        for env, (map_size, in_use) in spaces.items():
            size.add_metric([env], map_size)
            used.add_metric([env], in_use)
        yield size
        yield used
        running = p.running()
        warm = set(p.pool.functions())
        in_flight = GaugeMetricFamily(
            "nimbus_in_flight", "Invocations running now in this worker", labels=["function"]
        )
        is_warm = GaugeMetricFamily(
            "nimbus_function_warm",
            "1 when the function is loaded in this worker's warm pool",
            labels=["function"],
        )
        for dep in p.registry.list():
            in_flight.add_metric([dep.name], running.get(dep.name, 0))
            is_warm.add_metric([dep.name], 1 if dep.name in warm else 0)
        yield in_flight
        yield is_warm
        yield GaugeMetricFamily(
            "nimbus_warm_pool_size", "Functions loaded in this worker's warm pool", value=len(warm)
        )


class MetricsApi:
    """Routes under ``/_admin/metrics``."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.scraped = CollectorRegistry()
        self.scraped.register(QueueCollector(platform))
        self.scraped.register(PlatformCollector(platform))

    def routes(self, guard: Any) -> list[Route]:
        return [Route("/metrics", guard(self.metrics), methods=["GET"])]

    async def metrics(self, request: Request) -> Response:
        body = await anyio.to_thread.run_sync(self.text)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def text(self) -> bytes:
        """The exposition of every metric (blocking: reads the services)."""
        return generate_latest(self.platform.telemetry.exposed()) + generate_latest(self.scraped)
