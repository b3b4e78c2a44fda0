"""The functions: a list with how each runs now, a page per function, and invoking
one with a JSON event from its page."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.common.ids import new_id
from host.errors import InvalidRequest, NimbusError
from host.gateway.console import stats
from host.gateway.console.context import Context
from host.gateway.console.sessions import Session
from host.gateway.errors import status_for
from host.platform.registry import Deployment


class FunctionPages:
    """``/functions``, ``/functions/{name}`` and ``/functions/{name}/invoke``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        web = self.ctx.web
        return [
            Route("/functions", web.page(self.list), methods=["GET"]),
            Route("/functions/{name}", web.page(self.show), methods=["GET"]),
            Route("/functions/{name}/invoke", web.action(self.invoke), methods=["POST"]),
        ]

    def _triggers(self) -> dict[str, list[str]]:
        t = self.ctx.platform.registry.triggers()
        out: dict[str, list[str]] = {}
        for q in t.queue:
            out.setdefault(q.function, []).append(f"queue {q.queue}")
        for s in t.schedule:
            out.setdefault(s.function, []).append(f"cron {s.cron}")
        for b in t.storage:
            out.setdefault(b.function, []).append(f"bucket {b.bucket}")
        for e in t.event:
            out.setdefault(e.function, []).append(f"event {e.topic}")
        return out

    def _row(self, d: dict[str, Any], dep: Deployment, warm: set[str]) -> dict[str, Any]:
        p = self.ctx.platform
        return {
            **d,
            "language": _language(d["config"]),
            "size": p.registry.wasm_size(dep),
            "warm": dep.key in warm,
            "in_flight": p.in_flight(dep.name),
        }

    async def list(self, request: Request, session: Session) -> Response:
        p = self.ctx.platform
        warm = set(p.pool.keys())
        deps = {d.name: d for d in p.registry.list()}
        triggers = self._triggers()
        now = int(time.time() * 1000)
        shared = await anyio.to_thread.run_sync(
            lambda: p.services.activity.rows(now - stats.WINDOW_MS)
        )
        summaries = stats.by_function(stats.window(shared, now))
        rows = [
            {
                **self._row(d, deps[d["name"]], warm),
                "triggers": triggers.get(d["name"], []),
                "summary": summaries.get(d["name"]),
            }
            for d in self.ctx.admin.functions()
        ]
        return self.ctx.web.render(request, "functions.html", session, nav="functions", rows=rows)

    async def show(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        p = self.ctx.platform
        described = self.ctx.admin.function(name)
        dep = p.registry.get(name)
        records = p.telemetry.recent(name, 1 << 30)  # this worker's: the latest calls
        now = int(time.time() * 1000)
        shared = await anyio.to_thread.run_sync(
            lambda: p.services.activity.rows(now - stats.WINDOW_MS, name)
        )
        recent = stats.window(shared, now)
        return self.ctx.web.render(
            request,
            "function.html",
            session,
            nav="functions",
            fn=self._row(described, dep, set(p.pool.keys())),
            triggers=self._triggers().get(name, []),
            summary=stats.summarise(recent),
            histogram=stats.histogram(recent),
            invocations=list(reversed(records[-25:])),
            errors=[r for r in reversed(records) if r.outcome != "ok"][:10],
            sample=json.dumps({"name": "console"}),
        )

    async def invoke(self, request: Request, session: Session) -> Response:
        name = request.path_params["name"]
        async with request.form() as form:
            raw = form.get("event")
        text = raw if isinstance(raw, str) else ""
        request_id = new_id("req")
        try:
            try:
                value = json.loads(text) if text.strip() else None
            except json.JSONDecodeError as e:
                raise InvalidRequest(f"the event is not valid JSON: {e}") from None
            result = await self.ctx.admin.invoke_value(name, value, request_id)
        except NimbusError as err:
            record = next(
                (
                    r
                    for r in self.ctx.platform.telemetry.recent(name, 50)
                    if r.request_id == request_id
                ),
                None,
            )
            return self.ctx.web.render(
                request,
                "_invoke_result.html",
                session,
                status_code=200,
                ok=False,
                status=status_for(err),
                kind=err.kind,
                message=str(err),
                request_id=request_id,
                logs=[{"level": lv, "message": m} for lv, m in (record.logs if record else [])],
            )
        return self.ctx.web.render(
            request, "_invoke_result.html", session, ok=True, result=result, request_id=request_id
        )


def _language(config: dict[str, Any]) -> str:
    """The source language, from the function directory's files (a prebuilt module
    says only that it is WebAssembly)."""
    from pathlib import Path

    source = config.get("source")
    if not source:
        return "wasm"
    src = Path(source)
    for pattern, language in (("*.zig", "zig"), ("*.c", "c"), ("*.py", "python")):
        if src.is_dir() and any(src.glob(pattern)):
            return language
    return "wasm"
