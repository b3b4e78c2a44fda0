"""Process assembly: platform + triggers + workflows + gateway, served with Uvicorn.

``Platform`` wires the parts below it (runtime, hostcalls, services, registry,
telemetry); this module is the one place that builds the parts above it and hands
them to each other: the workflow runner, the trigger manager (which starts runs and
knows the schedules) and the gateway. It runs in one process or several sharing one
data dir.
"""

from __future__ import annotations

import asyncio
import gc
import os
import shutil
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from host.gateway.app import Gateway, create_app
from host.orchestrator.runner import WorkflowRunner
from host.platform.platform import Platform
from host.telemetry.logformat import logging_config
from host.telemetry.records import MULTIPROC_ENV
from host.triggers.manager import TriggerManager

DATA_DIR_ENV = "NIMBUS_DATA_DIR"


def app_from_env() -> Gateway:
    """Uvicorn's app factory: every worker process opens the data dir on its own and
    runs the triggers beside the gateway."""
    return assemble(Platform(Path(os.environ[DATA_DIR_ENV])))


def assemble(platform: Platform, admin_token: str | None = None) -> Gateway:
    """The serving app of ``platform``: workflows, triggers and gateway, wired."""
    workflows = WorkflowRunner(platform)
    triggers = TriggerManager(platform, start_workflow=workflows.start_run)
    return create_app(
        platform, workflows, triggers, admin_token=admin_token, background=[triggers, workflows]
    )


def serve(
    data_dir: Path,
    host: str,
    port: int,
    workers: int = 1,
    log_format: str = "text",
    log_level: str = "warning",
) -> None:
    """Serve ``data_dir``; Nimbus's log lines at ``log_level`` and up, and Uvicorn's,
    on stderr as text or JSON lines (``log_format``)."""
    if not gc.isenabled():  # ``nimbus serve`` imported the server with it off (entry.py):
        gc.freeze()  # what the imports made lives as long as the process; never scanned
        gc.enable()
    os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    if workers > 1:  # each worker counts in a shared folder; a scrape sums them all
        metrics = data_dir.resolve() / "metrics"
        shutil.rmtree(metrics, ignore_errors=True)  # a new server starts from zero
        metrics.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(metrics)
    uvicorn.run(
        "host.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=logging_config(log_format, log_level),
        access_log=False,
        http=OneWriteHttp,
        ws="none",  # no route is a WebSocket: Uvicorn need not import a library for them
    )


class OneWriteTransport:
    """A connection's transport whose writes in one turn of the event loop go out as
    one ``write`` at its end: Uvicorn writes a response's head and its body
    separately, two system calls and two segments on the wire for every small
    response; joined, one of each."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: Any) -> None:
        self._transport = transport
        self._loop = asyncio.get_running_loop()
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(data)

    def _flush(self) -> None:
        held = self._held
        if held:
            self._held = []
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class OneWriteHttp(HttpToolsProtocol):
    """Uvicorn's httptools protocol, writing through ``OneWriteTransport``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(OneWriteTransport(transport))  # type: ignore[arg-type]
