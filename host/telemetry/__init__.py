"""What happened: a record of every invocation, for logs, metrics and billing."""

from host.telemetry.records import InvocationRecord, Telemetry

__all__ = ["InvocationRecord", "Telemetry"]
