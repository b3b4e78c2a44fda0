"""Serving the gateway with Uvicorn, in one process or several sharing one data dir."""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from host.gateway.app import create_app
from host.platform.platform import Platform

DATA_DIR_ENV = "NIMBUS_DATA_DIR"


def app_from_env() -> Starlette:
    """Uvicorn's app factory: every worker process opens the data dir on its own and
    runs the triggers beside the gateway."""
    from host.orchestrator.runner import WorkflowRunner
    from host.triggers.manager import TriggerManager

    platform = Platform(Path(os.environ[DATA_DIR_ENV]))
    workflows = WorkflowRunner(platform)
    triggers = TriggerManager(platform, start_workflow=workflows.start_run)
    return create_app(platform, background=[triggers, workflows], workflows=workflows)


def serve(data_dir: Path, host: str, port: int, workers: int = 1, log_level: str = "info") -> None:
    os.environ[DATA_DIR_ENV] = str(data_dir.resolve())
    uvicorn.run(
        "host.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=False,
    )
