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
from typing import Any, cast

import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from host.gateway.app import Gateway, create_app
from host.gateway.asgi import Answer, Direct
from host.orchestrator.runner import WorkflowRunner
from host.platform.platform import Platform
from host.telemetry.logformat import logging_config
from host.telemetry.records import MULTIPROC_ENV
from host.triggers.manager import TriggerManager

DATA_DIR_ENV = "NIMBUS_DATA_DIR"
#: a request body this large goes to the app the ASGI way (streamed, refused as soon as
#: it passes its cap), not held whole for a direct answer
DIRECT_BODY_BYTES = 64 * 1024
#: requests of one read answered directly, at most: pipelined requests past it go the
#: ASGI way, one task each, so one connection cannot hold the event loop for the
#: hundreds of requests a read can carry
DIRECT_PER_READ = 8


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
    """Uvicorn's httptools protocol, writing through ``OneWriteTransport``, that
    answers a function route running inline without an asyncio task.

    Uvicorn makes a task per request and hands the app the request through ``await``s;
    a function that runs inline on the event loop anyway needs none of it (without it
    one worker serves ~13% more). Such a request is held until its body is whole (at most
    ``DIRECT_BODY_BYTES``), its answer asked of the app's ``direct``
    (``host/gateway/asgi.py``, ``Direct``) and written here, with the headers Uvicorn
    would write. Every other request, and one ``direct`` declines before running
    anything, goes to the app the ASGI way, as before.

    Its keep-alive timer is armed once per idle spell, not once per request: Uvicorn
    cancels its timer when a request comes and makes a new one when the answer is
    written (~2 µs a request with uvloop); here a request only notes that the
    connection is busy, and a timer that fires on a connection busy again since, or
    idle for less than the timeout, ends or waits out the rest of it."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(OneWriteTransport(transport))  # type: ignore[arg-type]
        self._direct = _direct_of(self.app)
        self._held: tuple[RequestResponseCycle, ASGI3Application] | None = None
        self._direct_left = 0
        #: when the connection last went idle (``loop.time()``); None while busy
        self._idle_since: float | None = None

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # busy: a timer armed before finds it so

    def on_response_complete(self) -> None:
        # Uvicorn's, but for the keep-alive timer (see the class docstring)
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self.flow.resume_reading()
        if self.pipeline:
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
            return
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self._keep_alive_after(self.timeout_keep_alive)

    def _keep_alive_after(self, delay: float) -> None:
        self.timeout_keep_alive_task = self.loop.call_later(delay, self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        idle_since = self._idle_since
        if idle_since is None:
            return  # busy: the answer's completion arms the timer again
        left = idle_since + self.timeout_keep_alive - self.loop.time()
        if left > 0:
            self._keep_alive_after(left)
        else:
            self.timeout_keep_alive_handler()

    def data_received(self, data: bytes) -> None:
        self._direct_left = DIRECT_PER_READ
        super().data_received(data)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        if (
            self._direct is not None
            and self._direct_left > 0
            and app is self.app  # not Uvicorn's answer to a request over its limit
            and cycle is self.cycle
            and cycle.more_body
            and not cycle.waiting_for_100_continue  # the client waits for a ``receive``
        ):
            self._held = (cycle, app)
            return
        super()._start_asgi_task(cycle, app)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        held = self._held
        if held is not None and len(held[0].body) >= DIRECT_BODY_BYTES:
            self._held = None  # a large body: streamed to the app under its cap
            super()._start_asgi_task(*held)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        held, self._held = self._held, None
        if held is None or self._direct is None:
            return
        cycle, app = held
        self._direct_left -= 1
        answer: Answer | ASGIApp | None = None
        if not self.flow.write_paused:  # a client that is not reading: the ASGI way
            try:
                answer = self._direct(cast(Scope, cycle.scope), bytes(cycle.body))
            except Exception as err:  # ours, not the function's: a 500, logged by Uvicorn
                answer = _raising(err)
        if answer is None:
            super()._start_asgi_task(cycle, app)
        elif isinstance(answer, tuple):
            self._write(cycle, *answer)
        else:
            super()._start_asgi_task(cycle, cast(ASGI3Application, answer))

    def _write(
        self,
        cycle: RequestResponseCycle,
        status: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
    ) -> None:
        """``answer`` written (and its access log line) as ``RequestResponseCycle.send``
        would write it."""
        scope = cycle.scope
        if self.access_log:
            self.access_logger.info(
                '%s - "%s %s HTTP/%s" %d',
                get_client_addr(scope),
                scope["method"],
                get_path_with_query_string(scope),
                scope["http_version"],
                status,
            )
        content = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            content += (name, b": ", value, b"\r\n")
        if not cycle.keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", body)
        self.transport.write(b"".join(content))
        cycle.response_started = cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()


def _direct_of(app: Any) -> Direct | None:
    """The ``direct`` of the app Uvicorn serves, under its middleware (each holds the
    app it wraps as ``app``)."""
    for _ in range(8):
        direct = getattr(app, "direct", None)
        if callable(direct):
            return cast(Direct, direct)
        app = getattr(app, "app", None)
    return None


def _raising(err: Exception) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        raise err

    return app
