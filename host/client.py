"""A small client of the admin API, used by the CLI (and usable from scripts).

The server's URL comes from ``--url`` or ``NIMBUS_URL`` (default
``http://127.0.0.1:8080``); the token from ``--token``, ``NIMBUS_ADMIN_TOKEN`` or the
data dir's ``admin_token`` file, so that on the machine running ``nimbus up`` the CLI
needs no flags.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from host.errors import NimbusError

DEFAULT_URL = "http://127.0.0.1:8080"


class ClientError(NimbusError):
    """The server answered an admin call with an error, or could not be reached."""

    kind = "ClientError"


def resolve_token(token: str | None, data_dir: Path) -> str | None:
    if token:
        return token
    if env := os.environ.get("NIMBUS_ADMIN_TOKEN"):
        return env
    path = data_dir / "admin_token"
    return path.read_text().strip() if path.exists() else None


class AdminClient:
    """The admin API over HTTP; every method returns the decoded JSON body."""

    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60):
        self.url = (url or os.environ.get("NIMBUS_URL") or DEFAULT_URL).rstrip("/")
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url + "/_admin", headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot reach the Nimbus server at {self.url}: {e}") from None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                message = f"{err['kind']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                message = r.text.strip() or r.reason_phrase
            raise ClientError(f"{method} {path} failed with {r.status_code}: {message}")
        if r.status_code == 204 or not r.content:
            return None
        if r.headers.get("content-type", "").startswith("application/json"):
            return r.json()
        return r.content

    def functions(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/functions")["functions"]
        return result

    def function(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/functions/{name}")
        return result

    def deploy(self, name: str, wasm: bytes, config: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/functions/{name}",
            files={"module": (f"{name}.wasm", wasm, "application/wasm")},
            data={"config": json.dumps(config)},
        )
        return result

    def remove(self, name: str) -> None:
        self.request("DELETE", f"/functions/{name}")

    def invoke(self, name: str, payload: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/functions/{name}/invoke", content=json.dumps(payload)
        )
        return result

    def routes(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/routes")["routes"]
        return result

    def invocations(self, function: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if function:
            params["function"] = function
        result: list[dict[str, Any]] = self.request("GET", "/invocations", params=params)[
            "invocations"
        ]
        return result
