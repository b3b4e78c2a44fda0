"""Workflow runs: counts by status, a filtered list, and a run's page with its graph,
each step's attempts (input, output, error, the delay before a retry), and cancel."""

from __future__ import annotations

from collections import Counter

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from host.gateway.console.context import Context
from host.gateway.console.graph import build_graph
from host.gateway.console.sessions import Session

STATUSES = ("running", "succeeded", "failed", "cancelled")


class WorkflowPages:
    """``/workflows``, ``/runs/{run_id}`` and ``/runs/{run_id}/cancel``."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        web = self.ctx.web
        return [
            Route("/workflows", web.page(self.list), methods=["GET"]),
            Route("/runs/{run_id}", web.page(self.show), methods=["GET"]),
            Route("/runs/{run_id}/cancel", web.action(self.cancel), methods=["POST"]),
        ]

    async def list(self, request: Request, session: Session) -> Response:
        engine = self.ctx.workflows.engine()
        q = request.query_params
        workflow = q.get("workflow") or None
        status = q.get("status") or None
        every = engine.runs(workflow, None, 1 << 30)
        counts = Counter(r["status"] for r in every)
        runs = [r for r in every if status is None or r["status"] == status][:200]
        return self.ctx.web.render(
            request,
            "workflows.html",
            session,
            nav="workflows",
            workflows=sorted(engine.workflows.values(), key=lambda w: w.name),
            runs=runs,
            counts=counts,
            statuses=STATUSES,
            workflow=workflow or "",
            status=status or "",
        )

    async def show(self, request: Request, session: Session) -> Response:
        engine = self.ctx.workflows.engine()
        run = engine.get(request.path_params["run_id"])
        wf = engine.workflows.get(run["workflow"])
        graph = build_graph(wf, run) if wf is not None else None
        return self.ctx.web.render(
            request,
            "run.html",
            session,
            nav="workflows",
            run=run,
            graph=graph,
            history=run.get("history", []),
        )

    async def cancel(self, request: Request, session: Session) -> Response:
        engine = self.ctx.workflows.engine()
        run_id = request.path_params["run_id"]
        engine.cancel(run_id)
        return RedirectResponse(f"{self.ctx.web.prefix}/runs/{run_id}", status_code=303)
