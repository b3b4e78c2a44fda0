"""What the console's pages read from: the admin API's own accessors, not copies.

Every page module gets one ``Context``: the functions and invocation come from
``AdminApi``, tables, buckets and queues from the admin API's ``TablesApi``,
``BucketsApi`` and ``QueuesApi``, workflow runs from the ``WorkflowRunner``, so the
console shows exactly what ``/_admin`` answers.
"""

from __future__ import annotations

from msgspec import Struct

from host.gateway.admin import AdminApi
from host.gateway.buckets_api import BucketsApi
from host.gateway.console.web import Web
from host.gateway.queues_api import QueuesApi
from host.gateway.tables_api import TablesApi
from host.orchestrator.runner import WorkflowRunner
from host.platform.platform import Platform


class Context(Struct, frozen=True):
    """The console's view of one host process."""

    web: Web
    admin: AdminApi
    tables: TablesApi
    buckets: BucketsApi
    queues: QueuesApi

    @property
    def platform(self) -> Platform:
        return self.admin.platform

    @property
    def workflows(self) -> WorkflowRunner:
        return self.admin.workflows
