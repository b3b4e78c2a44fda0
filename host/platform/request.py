"""What a caller asks of the invoke path: one typed request, with its commit hook.

Every caller of the platform (the gateway, the triggers, the orchestrator, the CLI)
describes an invocation with an ``InvocationRequest``: the function, the event, the
request id, the idempotency ids under which its effects are committed once, the time
limit and the caller's budget. A caller whose own changes must commit together with
the function's effects gives a ``CommitHook``: ``check`` sees the response before the
commit, ``apply`` adds its work inside the commit's transaction (through the typed
unit of work of ``services``, never a transaction handle), and raising
``CommitDeclined`` from either drops the invocation's effects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from msgspec import Struct

from host.services.interface import UnitOfWork


class CommitDeclined(Exception):
    """A commit hook declined the commit (the caller's state moved on): the
    invocation's effects are dropped and the caller is told by this exception."""


class CommitHook(Protocol):
    """A caller's part in an invocation's commit."""

    def check(self, response: dict[str, Any]) -> None:
        """Called with the function's response before the commit (may raise)."""
        ...

    def apply(self, work: UnitOfWork) -> None:
        """The caller's changes, in the transaction that commits the effects."""
        ...


class InvocationRequest(Struct, frozen=True):
    """One invocation, as the caller asks for it."""

    function: str
    #: an ABI envelope without the common fields (``kind``, ``input``, …)
    event: dict[str, Any]
    request_id: str | None = None
    #: the ids whose effects must be applied once (an event id, or one per message)
    idempotency_ids: Sequence[str] = ()
    #: a time limit shorter than the function's own (a workflow step's)
    timeout_s: float | None = None
    #: stop early, record nothing and raise ``OverBudget`` past this (inline runs)
    budget_s: float | None = None
    commit: CommitHook | None = None
    #: run it, keep nothing: its writes are dropped instead of committed (``nimbus invoke``)
    dry_run: bool = False
    #: describe its writes in the result (``InvocationResult.effects``)
    describe_effects: bool = False
