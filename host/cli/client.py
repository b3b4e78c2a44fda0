"""A small client of the admin API, used by the CLI (and usable from scripts).

The server's URL comes from ``--url`` or ``NIMBUS_URL`` (default
``http://127.0.0.1:8080``); the token from ``--token``, ``NIMBUS_ADMIN_TOKEN`` or the
data dir's ``admin_token`` file, so that on the machine running ``nimbus up`` the CLI
needs no flags.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

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

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The raw response of an admin call; ``ClientError`` for any error status."""
        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise ClientError(
                f"cannot reach the Nimbus server at {self.url}: {e}; start one (`make up`, "
                "`nimbus dev`) or point at yours with --url or NIMBUS_URL"
            ) from None
        if r.status_code >= 400:
            try:
                err = r.json()["error"]
                message = f"{err['kind']}: {err['message']}"
            except (ValueError, KeyError, TypeError):
                message = r.text.strip() or r.reason_phrase
            raise ClientError(f"{method} {path} failed with {r.status_code}: {message}")
        return r

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """An admin call's decoded JSON body (None for an empty one)."""
        r = self.send(method, path, **kwargs)
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

    def follow(self, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Invocation records as the server keeps them, from now on, until the server
        closes the stream (``GET /_admin/logs/stream``, server-sent events)."""
        timeout = httpx.Timeout(10.0, read=60.0)  # the server says something every 15 s
        try:
            with self._http.stream("GET", "/logs/stream", params=params, timeout=timeout) as r:
                if r.status_code >= 400:
                    r.read()
                    raise ClientError(f"GET /logs/stream failed with {r.status_code}: {r.text}")
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        record: dict[str, Any] = json.loads(line[6:])
                        yield record
        except httpx.HTTPError as e:
            raise ClientError(f"the log stream from {self.url} ended: {e}") from None

    # --- managed services (debugging) ------------------------------------------------

    def kv_get(self, table: str, key: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/tables/{table}/keys/{quote(key)}")
        return result

    def kv_put(self, table: str, key: str, value: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT", f"/tables/{table}/keys/{quote(key)}", content=json.dumps(value)
        )
        return result

    def kv_delete(self, table: str, key: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("DELETE", f"/tables/{table}/keys/{quote(key)}")
        return result

    def kv_scan(self, table: str, prefix: str, limit: int, cursor: str | None) -> dict[str, Any]:
        params: dict[str, Any] = {"prefix": prefix, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        result: dict[str, Any] = self.request("GET", f"/tables/{table}/keys", params=params)
        return result

    def kv_indexes(self, table: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/tables/{table}/indexes")
        return result

    def kv_query(
        self,
        table: str,
        index: str,
        bounds: dict[str, str | None],
        limit: int,
        cursor: str | None,
        reverse: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"index": index, "limit": limit}
        params.update({k: v for k, v in bounds.items() if v is not None})
        if cursor:
            params["cursor"] = cursor
        if reverse:
            params["reverse"] = "true"
        result: dict[str, Any] = self.request("GET", f"/tables/{table}/query", params=params)
        return result

    def blob_put(self, bucket: str, key: str, data: bytes, content_type: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "PUT",
            f"/buckets/{bucket}/objects/{quote(key)}",
            content=data,
            headers={"content-type": content_type},
        )
        return result

    def blob_get(self, bucket: str, key: str) -> bytes:
        return self.send("GET", f"/buckets/{bucket}/objects/{quote(key)}").content

    def blob_list(self, bucket: str, prefix: str, limit: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"/buckets/{bucket}/objects", params={"prefix": prefix, "limit": limit}
        )
        return result

    def queue_send(self, queue: str, body: Any, delay_ms: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST",
            f"/queues/{queue}/messages",
            content=json.dumps(body),
            params={"delay_ms": delay_ms},
        )
        return result

    def queue_peek(self, queue: str, limit: int) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request(
            "GET", f"/queues/{queue}/messages", params={"limit": limit}
        )["messages"]
        return result

    def queue_stats(self) -> dict[str, dict[str, int]]:
        result: dict[str, dict[str, int]] = self.request("GET", "/queues")["queues"]
        return result

    # --- triggers ----------------------------------------------------------------------

    def dlq(self, queue: str, limit: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "GET", f"/queues/{queue}/dlq", params={"limit": limit}
        )
        return result

    def dlq_replay(self, queue: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/queues/{queue}/dlq/replay")
        return result

    def publish(self, topic: str, payload: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.request(
            "POST", f"/events/{topic}", content=json.dumps(payload)
        )
        return result

    def schedules(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.request("GET", "/schedules")["schedules"]
        return result

    def schedule_run(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/schedules/{quote(name, safe='')}/run")
        return result

    # --- workflows ---------------------------------------------------------------------

    def wf_start(self, name: str, input: Any, key: str | None) -> dict[str, Any]:
        body = {"input": input, "idempotency_key": key}
        result: dict[str, Any] = self.request(
            "POST", f"/workflows/{name}/runs", content=json.dumps(body)
        )
        return result

    def wf_runs(self, workflow: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"limit": limit}
        if workflow:
            params["workflow"] = workflow
        if status:
            params["status"] = status
        result: list[dict[str, Any]] = self.request("GET", "/runs", params=params)["runs"]
        return result

    def wf_run(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", f"/runs/{run_id}")
        return result

    def wf_cancel(self, run_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", f"/runs/{run_id}/cancel")
        return result
