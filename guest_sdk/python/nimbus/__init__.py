"""The Nimbus SDK for Python functions.

A Python function is a ``handler.py`` that defines ``handle``::

    import nimbus

    def handle(event: nimbus.Event) -> nimbus.Response:
        name = event.params.get("name", "world")
        nimbus.log.info("saying hello")
        return nimbus.Response.text(f"hello, {name}\\n")

``handle`` may also return a dict (the ABI's response map), bytes or str (a 200 body),
or any other value (the ``output`` of an invoke or a workflow step). Raising an
exception fails the invocation: nothing it wrote is committed, and triggers retry it.
"""

from nimbus import http, log, secrets
from nimbus.events import (
    Auth,
    AuthorizerEvent,
    BusEvent,
    Event,
    HttpEvent,
    InvokeEvent,
    Message,
    QueueEvent,
    ScheduleEvent,
    StorageEvent,
    WorkflowEvent,
)
from nimbus.response import Response
from nimbus.services import (
    Conflict,
    Invalid,
    LimitExceeded,
    PermissionDenied,
    ServiceError,
    Timeout,
    TooLarge,
    Unavailable,
    blobs,
    events,
    queues,
    tables,
)
from nimbus.host import now_ns, random_bytes

__all__ = [
    "Auth",
    "AuthorizerEvent",
    "BusEvent",
    "Conflict",
    "Event",
    "HttpEvent",
    "Invalid",
    "InvokeEvent",
    "LimitExceeded",
    "Message",
    "PermissionDenied",
    "QueueEvent",
    "Response",
    "ScheduleEvent",
    "ServiceError",
    "StorageEvent",
    "Timeout",
    "TooLarge",
    "Unavailable",
    "WorkflowEvent",
    "blobs",
    "events",
    "http",
    "log",
    "now_ns",
    "queues",
    "random_bytes",
    "secrets",
    "tables",
]
