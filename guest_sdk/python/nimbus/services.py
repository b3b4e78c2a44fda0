"""Managed services: tables, blobs, queues and the event bus (see guest_sdk/ABI.md).

Each call goes to the host as one operation with a msgpack request; an error status
raises the matching exception here. Writes are staged and committed with the
invocation: if ``handle`` raises, nothing is kept.
"""

from __future__ import annotations

from typing import Any

import msgpack

from nimbus.host import call


class ServiceError(Exception):
    """A service said no; the subclass says why."""


class PermissionDenied(ServiceError):
    pass


class Invalid(ServiceError):
    pass


class Conflict(ServiceError):
    pass


class TooLarge(ServiceError):
    pass


class Unavailable(ServiceError):
    pass


class Timeout(ServiceError):
    """An outbound request took longer than its ``timeout_ms``."""


class LimitExceeded(ServiceError):
    """A per-invocation count is used up (32 outbound requests)."""


_ERRORS = {
    1: PermissionDenied,
    2: Invalid,
    3: Conflict,
    4: TooLarge,
    5: Unavailable,
    6: Timeout,
    7: LimitExceeded,
}


def _op(name: str, /, **request: Any) -> Any:
    req = {k: v for k, v in request.items() if v is not None}
    status, value = msgpack.unpackb(
        call(name, msgpack.packb(req, use_bin_type=True)), raw=False, strict_map_key=False
    )
    if status:
        raise _ERRORS.get(status, Unavailable)(value)
    return value


def _key(key: str | bytes) -> bytes:
    return key.encode() if isinstance(key, str) else key


class tables:
    """Key-value tables: ``get`` returns ``(value, version)`` or None."""

    @staticmethod
    def get(table: str, key: str | bytes) -> tuple[Any, int] | None:
        found = _op("kv_get", table=table, key=_key(key))
        return None if found is None else (found["value"], found["version"])

    @staticmethod
    def put(
        table: str,
        key: str | bytes,
        value: Any,
        if_absent: bool = False,
        if_version: int | None = None,
    ) -> int:
        """Store ``value``; its new version. ``Conflict`` when a condition fails."""
        return int(
            _op(
                "kv_put",
                table=table,
                key=_key(key),
                value=value,
                if_absent=if_absent or None,
                if_version=if_version,
            )["version"]
        )

    @staticmethod
    def delete(table: str, key: str | bytes, if_version: int | None = None) -> bool:
        return bool(_op("kv_delete", table=table, key=_key(key), if_version=if_version)["deleted"])

    @staticmethod
    def scan(
        table: str, prefix: str | bytes = b"", limit: int = 100, cursor: bytes | None = None
    ) -> tuple[list[tuple[bytes, Any, int]], bytes | None]:
        page = _op("kv_scan", table=table, prefix=_key(prefix) or None, limit=limit, cursor=cursor)
        return [tuple(i) for i in page["items"]], page["cursor"]

    @staticmethod
    def query(
        table: str,
        index: str,
        *,
        eq: int | str | bytes | None = None,
        start: int | str | bytes | None = None,
        end: int | str | bytes | None = None,
        limit: int = 100,
        cursor: bytes | None = None,
        reverse: bool = False,
    ) -> tuple[list[tuple[bytes, Any, int]], bytes | None]:
        """One page of ``(key, value, version)`` ordered by the ``index`` field (declared
        under ``[tables.NAME] indexes`` in nimbus.toml), then by key: those whose field
        equals ``eq``, or lies in ``[start, end)``; ``reverse`` from the end down. Pass
        the returned cursor for the next page (None: this was the last)."""
        page = _op(
            "kv_query",
            table=table,
            index=index,
            eq=eq,
            start=start,
            end=end,
            limit=limit,
            cursor=cursor,
            reverse=reverse or None,
        )
        return [tuple(i) for i in page["items"]], page["cursor"]


class blobs:
    @staticmethod
    def put(
        bucket: str,
        key: str | bytes,
        data: bytes,
        content_type: str = "application/octet-stream",
        metadata: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        return dict(
            _op(
                "blob_put",
                bucket=bucket,
                key=_key(key),
                data=data,
                content_type=content_type,
                metadata=metadata,
            )
        )

    @staticmethod
    def get(
        bucket: str, key: str | bytes, start: int | None = None, end: int | None = None
    ) -> dict[str, Any] | None:
        return _op("blob_get", bucket=bucket, key=_key(key), start=start, end=end)

    @staticmethod
    def head(bucket: str, key: str | bytes) -> dict[str, Any] | None:
        return _op("blob_head", bucket=bucket, key=_key(key))

    @staticmethod
    def delete(bucket: str, key: str | bytes) -> bool:
        return bool(_op("blob_delete", bucket=bucket, key=_key(key))["deleted"])

    @staticmethod
    def list(
        bucket: str, prefix: str | bytes = b"", limit: int = 100, cursor: bytes | None = None
    ) -> tuple[list[dict[str, Any]], bytes | None]:
        page = _op("blob_list", bucket=bucket, prefix=_key(prefix), limit=limit, cursor=cursor)
        return page["items"], page["cursor"]


class queues:
    @staticmethod
    def send(queue: str, body: Any, delay_ms: int = 0) -> str:
        return str(_op("queue_send", queue=queue, body=body, delay_ms=delay_ms)["id"])


class events:
    @staticmethod
    def publish(topic: str, payload: Any) -> str:
        return str(_op("event_publish", topic=topic, payload=payload)["id"])
