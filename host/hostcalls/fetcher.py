"""The host's outbound HTTP client: one pool, allowlist and SSRF checks on every hop.

A ``Fetcher`` is built once per process (the platform owns it) and used from the
worker thread a guest runs on: httpx's sync client waits on sockets with the GIL
released, so a guest blocked on the network holds neither the event loop nor other
guests. Each request (and each redirect it follows, when asked to) is checked against
the function's allowlist, resolved and checked for internal addresses, and sent to
the address that was checked (``addresses.PinnedBackend``). The body is read in
chunks and cut at the cap before it is all in memory; every socket operation ends by
the deadline the caller gives.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from msgspec import Struct, field

from host.errors import (
    FunctionTimeout,
    InvalidArgument,
    OutboundTimeout,
    PermissionDenied,
    ServiceUnavailable,
    TooLarge,
)
from host.hostcalls.addresses import Resolver, choose_address, system_resolve
from host.manifest.outbound import DEFAULT_PORTS, OutboundPolicy

if TYPE_CHECKING:
    import httpx

    from host.hostcalls.transport import PinnedBackend

MAX_REDIRECTS = 5
_REDIRECTS = (301, 302, 303, 307, 308)
#: request headers dropped when a redirect leaves the origin
_CREDENTIALS = ("authorization", "cookie", "proxy-authorization")


class FetchRequest(Struct):
    """One outbound request as the guest asked for it."""

    method: str
    url: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    follow_redirects: bool = False


class FetchResponse(Struct):
    """What came back: status, headers (names lower case) and the whole body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    url: str


class Fetcher:
    """Outbound HTTP for every invocation of one process."""

    def __init__(self, resolve: Resolver = system_resolve) -> None:
        self._resolve = resolve
        self._lock = threading.Lock()
        self._http: httpx.Client | None = None
        self._backend: PinnedBackend | None = None

    @property
    def _client(self) -> httpx.Client:
        """The client, built on first use (its TLS context costs milliseconds, which
        a process whose functions never call out should not pay)."""
        if self._http is None:
            with self._lock:
                if self._http is None:
                    from host.hostcalls.transport import PinnedBackend, make_client

                    self._backend = PinnedBackend()
                    self._http = make_client(self._backend)
        return self._http

    def close(self) -> None:
        with self._lock:
            if self._http is not None:
                self._http.close()

    def fetch(
        self,
        req: FetchRequest,
        policy: OutboundPolicy,
        function: str,
        max_bytes: int,
        deadline: float,
        hard_deadline: float,
    ) -> FetchResponse:
        """Send ``req`` for ``function``; ``deadline`` (``time.monotonic()``) ends the
        request with ``OutboundTimeout``, ``hard_deadline`` (the invocation's) with
        ``FunctionTimeout``."""
        import httpx

        method, url, headers, body = req.method, req.url, list(req.headers), req.body
        for _ in range(MAX_REDIRECTS + 1):
            response = self._send(
                method,
                url,
                headers,
                body,
                policy,
                function,
                max_bytes,
                min(deadline, hard_deadline),
                hard_deadline,
            )
            location = dict(response.headers).get("location")
            if not (req.follow_redirects and response.status in _REDIRECTS and location):
                return response
            try:
                target = httpx.URL(url).join(location)
            except (httpx.InvalidURL, ValueError, TypeError):
                raise ServiceUnavailable(f"{url} redirected to an invalid location") from None
            if response.status == 303 or (response.status in (301, 302) and method == "POST"):
                method, body = "GET", b""
                headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            if _origin(target) != _origin(httpx.URL(url)):
                headers = [(k, v) for k, v in headers if k.lower() not in _CREDENTIALS]
            url = str(target)
        raise ServiceUnavailable(f"{req.url} redirected more than {MAX_REDIRECTS} times")

    def _send(
        self,
        method: str,
        url: str,
        headers: list[tuple[str, str]],
        body: bytes,
        policy: OutboundPolicy,
        function: str,
        max_bytes: int,
        deadline: float,
        hard_deadline: float,
    ) -> FetchResponse:
        import httpcore
        import httpx

        client = self._client
        backend = self._backend
        assert backend is not None, "built with the client"
        host, port, explicit = self._check(url, policy, function)
        address = choose_address(host, port, explicit, self._resolve)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _timeout(url, hard_deadline)
        try:
            request = client.build_request(
                method, url, headers=headers, content=body or None, timeout=remaining
            )
        except (httpx.InvalidURL, ValueError, TypeError) as e:
            raise InvalidArgument(f"cannot build a request to {url!r}: {e}") from None
        backend.pin(host, port, address, deadline)
        try:
            response = client.send(request, stream=True)
            try:
                return _read(response, url, max_bytes)
            finally:
                response.close()
        except httpx.TimeoutException:
            raise _timeout(url, hard_deadline) from None
        except (httpx.HTTPError, httpcore.ProtocolError, OSError, ValueError) as e:
            # whatever the server (or a guest's odd header) makes the client raise is a
            # failed request, never a crash of the invocation
            raise ServiceUnavailable(f"request to {url} failed: {type(e).__name__}: {e}") from None
        finally:
            backend.unpin()

    def _check(self, url: str, policy: OutboundPolicy, function: str) -> tuple[str, int, bool]:
        """The host and port of ``url``, and whether the allowlist names the host
        exactly; ``PermissionDenied`` naming the host when it is not allowed."""
        import httpx

        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as e:
            raise InvalidArgument(f"'url' is not a URL: {e}") from None
        scheme, host = parsed.scheme, parsed.host
        if scheme not in DEFAULT_PORTS or not host:
            raise InvalidArgument(f"'url' must be an absolute http:// or https:// URL, got {url!r}")
        port = parsed.port or DEFAULT_PORTS[scheme]
        entry = policy.match(scheme, host, port)
        if entry is None:
            shown = f"{scheme}://{host}" + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")
            raise PermissionDenied(
                f"function {function} may not reach {shown}: it is not in its "
                f'allowed_outbound_hosts; add "{shown}" to [functions.{function}] '
                "allowed_outbound_hosts in nimbus.toml"
            )
        return host, port, not entry.wildcard


def _read(response: httpx.Response, url: str, max_bytes: int) -> FetchResponse:
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(
            f"the response of {url} declares {declared} bytes; the cap is {max_bytes} "
            "(max_outbound_response in nimbus.toml)"
        )
    chunks, total = [], 0
    for chunk in response.iter_bytes():
        total += len(chunk)
        if total > max_bytes:
            raise TooLarge(
                f"the response of {url} passed the cap of {max_bytes} bytes and was cut "
                "(max_outbound_response in nimbus.toml)"
            )
        chunks.append(chunk)
    return FetchResponse(
        response.status_code, list(response.headers.multi_items()), b"".join(chunks), url
    )


def _timeout(url: str, hard_deadline: float) -> Exception:
    if time.monotonic() >= hard_deadline - 0.002:
        return FunctionTimeout(
            f"the invocation's time limit passed while it waited for {url}; it was stopped"
        )
    return OutboundTimeout(f"request to {url} took longer than its timeout_ms")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host, url.port
