"""Who is calling: what an authentication policy found, passed to the function as ``auth``."""

from __future__ import annotations

from typing import Any

from msgspec import Struct, field


class Identity(Struct, frozen=True):
    """The caller of a route with an authentication policy (see ABI.md, ``http``)."""

    #: "api_key", "jwt" or "authorizer"
    kind: str
    subject: str
    claims: dict[str, Any] = field(default_factory=dict)
    key_id: str | None = None

    def to_event(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "subject": self.subject,
            "claims": self.claims,
            "key_id": self.key_id,
        }
