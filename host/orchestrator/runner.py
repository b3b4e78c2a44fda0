"""Durable multi-step workflows: definitions, the run store and the engine.

``WorkflowRunner`` is what a host process runs in the background: it loads the
deployed workflow definitions (and reloads them when a deployment changes them) and
drives their runs on a thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from host.manifest.workflows import Workflow, parse_workflows
from host.orchestrator.engine import Orchestrator
from host.platform.platform import Platform
from host.services.reclaim import reclaim_steps

log = logging.getLogger("nimbus.workflows")


def load_workflows(platform: Platform) -> dict[str, Workflow]:
    """The deployed workflows (validated against the deployed functions)."""
    raw = platform.registry.app_config("workflows")
    functions = {d.name for d in platform.registry.list()}
    return parse_workflows(raw, functions, where="deployed workflows")


class WorkflowRunner:
    """The engine thread of one host process."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self.orchestrator = Orchestrator(platform, {})
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = -1

    def engine(self) -> Orchestrator:
        """The orchestrator with the workflows deployed now (reloaded on change)."""
        generation = self.platform.registry.generation()
        if generation != self._generation:
            self.orchestrator.workflows = load_workflows(self.platform)
            self._generation = generation
        return self.orchestrator

    def start_run(self, workflow: str, input: Any, key: str | None) -> dict[str, Any]:
        return self.engine().start(workflow, input, key)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="nimbus-workflows", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _loop(self) -> None:
        generation = -1
        inner = threading.Event()
        worker: threading.Thread | None = None
        while not self._stop.is_set():
            try:  # a dead host's running steps: retried now, not after their lease
                reclaim_steps(
                    self.platform.services, self.platform.hosts, self.orchestrator.clock.now_ms()
                )
            except Exception:
                log.exception("taking back dead hosts' step leases failed")
            current = self.platform.registry.generation()
            if current != generation:
                generation = current
                try:
                    self.orchestrator.workflows = load_workflows(self.platform)
                except Exception:
                    log.exception("the deployed workflows do not load")
                if worker is None:
                    worker = threading.Thread(
                        target=self.orchestrator.run, args=(inner,), daemon=True
                    )
                    worker.start()
            self._stop.wait(1.0)
        inner.set()
        if worker is not None:
            worker.join(timeout=15)
