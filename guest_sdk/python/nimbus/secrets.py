"""Secrets the manifest grants (``secrets = ["NAME"]``), set with ``nimbus secrets set``.

``nimbus.secrets.get("PAYMENT_API_KEY")`` is the value as text, read when called (a
rotated secret is seen by the next invocation), or None when granted but not set;
``PermissionDenied`` when the function is not granted it.
"""

from __future__ import annotations

from nimbus.services import _op


def get(name: str) -> str | None:
    value = _op("secret_get", name=name)
    return None if value is None else bytes(value).decode("utf-8")
