"""The network layer under the outbound HTTP client: pinned addresses, one deadline.

``PinnedBackend`` is httpcore's network backend for the pool the fetcher uses: it
connects only to the address ``addresses.choose_address`` checked for the host
(whatever the name resolves to by then: DNS rebinding cannot move a connection), and
clamps every socket operation's timeout (connect, TLS handshake, read, write) to the
request's deadline, so no request outlives its invocation. ``make_client`` builds the
httpx client over it. Imported on the first outbound request only: httpx and its TLS
context cost a process that never calls out nothing.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx


class _Call(threading.local):
    """The request this thread is sending: its pinned addresses and its deadline."""

    def __init__(self) -> None:
        self.pins: dict[tuple[str, int], str] = {}
        self.deadline: float | None = None


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's network layer that connects only to addresses pinned by ``pin``.

    httpx's sync client opens connections in the calling thread, so the pins and the
    deadline of the request are thread-local. A connection asked for a host that was
    not pinned (nothing checked it) is refused.
    """

    def __init__(self) -> None:
        self._inner = httpcore.SyncBackend()
        self._call = _Call()

    def pin(self, host: str, port: int, address: str, deadline: float) -> None:
        self._call.pins = {(host, port): address}
        self._call.deadline = deadline

    def unpin(self) -> None:
        self._call.pins = {}
        self._call.deadline = None

    def clamp(self, timeout: float | None) -> float:
        """``timeout`` cut to what is left before this thread's request deadline."""
        deadline = self._call.deadline
        if deadline is None:
            return timeout if timeout is not None else 30.0
        left = max(deadline - time.monotonic(), 0.001)
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        address = self._call.pins.get((host, port))
        if address is None:
            raise httpcore.ConnectError(f"no checked address for {host}:{port}")
        stream = self._inner.connect_tcp(
            address, port, self.clamp(timeout), local_address, socket_options
        )
        return _DeadlineStream(stream, self)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("outbound requests never use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, backend: PinnedBackend) -> None:
        self._inner, self._backend = inner, backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.clamp(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(ssl_context, server_hostname, self._backend.clamp(timeout))
        return _DeadlineStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedTransport(httpx.HTTPTransport):
    """httpx's transport over a pool whose network layer is a ``PinnedBackend``."""

    def __init__(self, backend: PinnedBackend) -> None:
        super().__init__(trust_env=False)
        # the pool httpx built, rebuilt with the pinning network layer (httpx has no
        # public knob for it; everything else — TLS context, limits — is the same)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=100,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=backend,
        )


def make_client(backend: PinnedBackend) -> httpx.Client:
    """The outbound client: no proxies from the environment, no redirects of its own."""
    return httpx.Client(
        transport=_PinnedTransport(backend), trust_env=False, follow_redirects=False, timeout=None
    )
