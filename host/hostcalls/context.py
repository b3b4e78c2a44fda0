"""What a running invocation may do with the managed services: its grants and effects.

The platform makes one ``ServiceAccess`` per invocation and puts it in the
invocation's ``services`` slot; the service imports go through it, so every call is
checked against the function's grants before it reaches the staged effects. A denial
is an error *in the guest* (status ``permission_denied``), logged with the request id.
"""

from __future__ import annotations

import logging

from host.common.tracecontext import current_traceparent
from host.errors import PermissionDenied, TooLarge
from host.manifest.grants import Grants
from host.runtime.invocation import Invocation
from host.services.effects import Effects

log = logging.getLogger("nimbus.grants")

#: what one invocation may stage by default (one largest blob plus 16 MiB)
MAX_STAGED_BYTES = 80 * 1024 * 1024
#: write operations one invocation may stage by default
MAX_STAGED_OPS = 1000

_NOUNS = {"tables": "table", "buckets": "bucket", "queues": "queue", "topics": "topic"}


class ServiceAccess:
    """One invocation's grant-checked view of the services."""

    def __init__(
        self,
        effects: Effects,
        grants: Grants,
        inv: Invocation,
        max_staged_bytes: int = MAX_STAGED_BYTES,
        max_staged_ops: int = MAX_STAGED_OPS,
    ) -> None:
        self.effects = effects
        self.grants = grants
        self.inv = inv
        self._allowed: set[tuple[str, str, bool]] = set()
        self.max_staged_bytes = max_staged_bytes
        self.max_staged_ops = max_staged_ops
        self.staged_bytes = 0
        self.staged_ops = 0

    def traceparent(self) -> str | None:
        """With tracing on, this host call's span as a ``traceparent``: what it writes
        (an event, a message, a storage event) carries it to the invocations it starts."""
        return current_traceparent() if self.inv.spans is not None else None

    def charge(self, size: int) -> None:
        """Count one write of ``size`` bytes against the invocation's staging budget;
        ``TooLarge`` (status ``too_large`` in the guest) once it would pass it."""
        if self.staged_ops + 1 > self.max_staged_ops:
            raise TooLarge(
                f"function {self.inv.function} staged {self.staged_ops} writes, its budget "
                "per invocation (max_staged_ops in nimbus.toml)"
            )
        if self.staged_bytes + size > self.max_staged_bytes:
            raise TooLarge(
                f"function {self.inv.function} would stage {self.staged_bytes + size} bytes; "
                f"its budget per invocation is {self.max_staged_bytes} (max_staged in "
                "nimbus.toml)"
            )
        self.staged_ops += 1
        self.staged_bytes += size

    def check(self, kind: str, name: str, write: bool) -> None:
        """Raise ``PermissionDenied`` unless the manifest grants this access."""
        if (kind, name, write) in self._allowed:
            return
        if self.grants.allows(kind, name, write):
            self._allowed.add((kind, name, write))
            return
        mode = "read-write" if write else "read"
        message = (
            f"function {self.inv.function} has no {mode} grant for {_NOUNS[kind]} {name!r}; "
            f"add it under [functions.{self.inv.function}.grants] {kind} in nimbus.toml"
        )
        log.warning("[%s] denied: %s", self.inv.request_id, message)
        self.inv.log(2, f"permission denied: {message}")
        raise PermissionDenied(message)
