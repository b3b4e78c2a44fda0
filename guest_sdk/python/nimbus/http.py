"""Outbound HTTP to the hosts the manifest allows (``allowed_outbound_hosts``)::

    r = nimbus.http.fetch("https://payments.example.com/charge", method="POST",
                          headers={"authorization": "Bearer " + key}, json={"amount": 42})
    r.status, r.headers["content-type"], r.json()

Every request carries an ``Idempotency-Key`` that is the same when the same event is
delivered again (guest_sdk/ABI.md, "Outbound HTTP"). Errors raise: ``PermissionDenied``
(the host is not allowed, or resolves to an internal address: the message names it),
``TooLarge`` (body over the cap), ``Timeout`` (``timeout_ms`` passed), ``LimitExceeded``
(32 requests per invocation), ``Unavailable`` (the network).
"""

from __future__ import annotations

import json as _json
from dataclasses import dataclass
from typing import Any

from nimbus.services import _op


@dataclass
class HttpResponse:
    """What came back: status, headers (lower-case names) and the body."""

    status: int
    headers: dict[str, str]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return _json.loads(self.body)


def fetch(
    url: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: bytes | str | None = None,
    json: Any = None,
    timeout_ms: int | None = None,
    follow_redirects: bool = False,
) -> HttpResponse:
    """Send one request; ``json`` sets the body and ``content-type`` at once."""
    headers = dict(headers or {})
    if json is not None:
        body = _json.dumps(json).encode()
        headers.setdefault("content-type", "application/json")
    reply = _op(
        "http_fetch",
        method=method,
        url=url,
        headers=headers,
        body=body.encode() if isinstance(body, str) else body,
        timeout_ms=timeout_ms,
        follow_redirects=follow_redirects or None,
    )
    return HttpResponse(int(reply["status"]), dict(reply["headers"]), bytes(reply["body"]))
