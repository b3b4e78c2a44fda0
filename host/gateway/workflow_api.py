"""The admin API of workflows: start a run, list and show runs, cancel one."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from host.common.jsonable import jsonable
from host.errors import InvalidRequest
from host.gateway.json_body import parse_json
from host.orchestrator.engine import Orchestrator
from host.orchestrator.runner import WorkflowRunner


class WorkflowApi:
    """Routes under ``/_admin/workflows`` and ``/_admin/runs``."""

    def __init__(self, runner: WorkflowRunner) -> None:
        self.runner = runner

    def routes(self, guard: Any) -> list[Route]:
        return [
            Route("/workflows", guard(self.workflows), methods=["GET"]),
            Route("/workflows/{name}/runs", guard(self.start), methods=["POST"]),
            Route("/runs", guard(self.runs), methods=["GET"]),
            Route("/runs/{run_id}", guard(self.show), methods=["GET"]),
            Route("/runs/{run_id}/cancel", guard(self.cancel), methods=["POST"]),
        ]

    def _engine(self) -> Orchestrator:
        return self.runner.engine()

    async def workflows(self, request: Request) -> Response:
        wfs = self._engine().workflows
        return JSONResponse(
            {
                "workflows": [
                    {"name": w.name, "start": w.start, "steps": sorted(w.steps)}
                    for w in wfs.values()
                ]
            }
        )

    async def start(self, request: Request) -> Response:
        raw = await request.body()
        body = parse_json(raw, "the run's JSON body {'input': …}") if raw else {}
        if not isinstance(body, dict):
            raise InvalidRequest("expected a JSON object {'input': …, 'idempotency_key': …}")
        engine = self._engine()
        name = request.path_params["name"]
        run = await anyio.to_thread.run_sync(
            lambda: engine.start(name, body.get("input"), body.get("idempotency_key"))
        )
        return JSONResponse(jsonable(_summary(run)), status_code=201)

    async def runs(self, request: Request) -> Response:
        q = request.query_params
        runs = self._engine().runs(q.get("workflow"), q.get("status"), int(q.get("limit", "100")))
        return JSONResponse({"runs": [jsonable(_summary(r)) for r in runs]})

    async def show(self, request: Request) -> Response:
        return JSONResponse(jsonable(self._engine().get(request.path_params["run_id"])))

    async def cancel(self, request: Request) -> Response:
        run = self._engine().cancel(request.path_params["run_id"])
        return JSONResponse(jsonable(_summary(run)))


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "workflow", "status", "current", "started_ms", "ended_ms", "error", "output")
    return {k: run.get(k) for k in keys}
