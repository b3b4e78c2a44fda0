"""Queues and their dead letters: counts, the oldest message's age, a peek, replay.

Replaying sends dead-lettered messages back to their queue with attempts reset (one
message, or all of them; the page asks for confirmation first), through the admin
API's own ``QueuesApi.replay``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from host.gateway.console.context import Context
from host.gateway.console.sessions import Session
from host.services.keys import check_name

PEEK = 50


class QueuePages:
    """``/queues``, ``/queues/{queue}`` and ``/queues/{queue}/replay``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        web = self.ctx.web
        return [
            Route("/queues", web.page(self.list), methods=["GET"]),
            Route("/queues/{queue}", web.page(self.show), methods=["GET"]),
            Route("/queues/{queue}/replay", web.action(self.replay), methods=["POST"]),
        ]

    async def list(self, request: Request, session: Session) -> Response:
        triggered = [t.queue for t in self.ctx.platform.registry.triggers().queue]
        queues = self.ctx.queues.overview(triggered)
        dead_letters = {q["dead_letter"] for q in queues.values()}
        rows = [{"name": n, **q} for n, q in queues.items() if n not in dead_letters]
        return self.ctx.web.render(
            request,
            "queues.html",
            session,
            nav="queues",
            rows=rows,
            now_ms=int(time.time() * 1000),
        )

    def _panel(self, request: Request, session: Session, template: str, **extra: Any) -> Response:
        name = request.path_params["queue"]
        overview = self.ctx.queues.overview([check_name("queue", name)])
        stats = overview[name]
        return self.ctx.web.render(
            request,
            template,
            session,
            nav="queues",
            name=name,
            stats=stats,
            messages=self.ctx.queues.messages(name, PEEK),
            dead=self.ctx.queues.messages(str(stats["dead_letter"]), PEEK),
            now_ms=int(time.time() * 1000),
            **extra,
        )

    async def show(self, request: Request, session: Session) -> Response:
        return self._panel(request, session, "queue.html", notice="")

    async def replay(self, request: Request, session: Session) -> Response:
        name = request.path_params["queue"]
        async with request.form() as form:
            one = form.get("id")
        message_id = one if isinstance(one, str) and one else None
        moved = self.ctx.queues.replay(name, message_id)
        notice = f"replayed {moved['replayed']} message(s) from {moved['from']} to {moved['to']}"
        template = "_queue_panel.html" if request.headers.get("hx-request") else "queue.html"
        return self._panel(request, session, template, notice=notice)
