"""The response a handler returns (or the dict/bytes/str/value it returns instead)."""

from __future__ import annotations

import json as _json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    output: Any = None

    @classmethod
    def text(cls, body: str, status: int = 200) -> Response:
        return cls(status, {"content-type": "text/plain; charset=utf-8"}, body.encode())

    @classmethod
    def json(cls, value: Any, status: int = 200) -> Response:
        return cls(status, {"content-type": "application/json"}, _json.dumps(value).encode())

    @classmethod
    def bytes(cls, body: bytes, content_type: str, status: int = 200) -> Response:
        return cls(status, {"content-type": content_type}, body)

    @classmethod
    def authorize(cls, allow: bool, subject: str = "", context: dict[str, Any] | None = None) -> Response:
        """An authorizer's answer; ``context`` reaches the function as ``auth.claims``."""
        return cls(output={"allow": allow, "subject": subject, "context": context or {}})

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, "headers": self.headers}
        if self.body is not None:
            out["body"] = self.body
        if self.output is not None:
            out["output"] = self.output
        return out


def to_map(result: Any) -> dict[str, Any]:
    """Whatever ``handle`` returned, as the ABI's response map."""
    if isinstance(result, Response):
        return result.to_map()
    if isinstance(result, dict) and ({"status", "body", "output", "error"} & set(result)):
        return result
    if isinstance(result, bytes):
        return {"status": 200, "body": result}
    if isinstance(result, str):
        return {"status": 200, "headers": {"content-type": "text/plain; charset=utf-8"}, "body": result.encode()}
    return {"status": 200, "output": result}
