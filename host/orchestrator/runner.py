"""Durable multi-step workflows: definitions, the run store and the engine.

``WorkflowRunner`` is what a host process runs in the background: it loads the
deployed workflow definitions (and reloads them when a deployment changes them) and
drives their runs on a thread. A server makes one before it serves, so the engine and
the workflow definitions' modules are imported when it is first used (the background
start-up, a workflow route, the admin API), not on the way to a first response.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from host.platform.platform import Platform

if TYPE_CHECKING:
    from host.manifest.workflows import Workflow
    from host.orchestrator.engine import Orchestrator

log = logging.getLogger("nimbus.workflows")


def load_workflows(platform: Platform) -> dict[str, Workflow]:
    """The deployed workflows (validated against the deployed functions)."""
    from host.manifest.workflows import parse_workflows

    raw = platform.registry.app_config("workflows")
    functions = {d.name for d in platform.registry.list()}
    return parse_workflows(raw, functions, where="deployed workflows")


class WorkflowRunner:
    """The engine thread of one host process."""

    def __init__(self, platform: Platform) -> None:
        self.platform = platform
        self._orchestrator: Orchestrator | None = None
        self._making = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._generation = -1

    @property
    def orchestrator(self) -> Orchestrator:
        """The engine, made on first use."""
        if self._orchestrator is None:
            with self._making:
                if self._orchestrator is None:
                    from host.orchestrator.engine import Orchestrator

                    self._orchestrator = Orchestrator(self.platform, {})
        return self._orchestrator

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
        from host.services.reclaim import reclaim_steps

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
