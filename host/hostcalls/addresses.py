"""Where an outbound request may connect: resolve once, check every address, pin one.

Server-side request forgery is a guest making the host call something only the host
can reach: its own admin API on 127.0.0.1, a cloud metadata service on
169.254.169.254, a database on the private network. So a host name is resolved here
and every address it resolves to is checked: loopback, private, link-local, shared,
unspecified, multicast and reserved addresses are refused unless the allowlist names
that very host (or IP) without a wildcard. The connection then goes to the address
that was checked: ``transport.PinnedBackend`` is the connection pool's network
layer and connects to the pinned address whatever the name would resolve to by then,
which defeats DNS rebinding (a name answering a public address for the check and
127.0.0.1 for the connect).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from host.errors import PermissionDenied, ServiceUnavailable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``resolve(host, port)``: the IP addresses (as text) a name resolves to
Resolver = Callable[[str, int], list[str]]

_SHARED = ipaddress.ip_network("100.64.0.0/10")  # carrier-grade NAT (RFC 6598)


def system_resolve(host: str, port: int) -> list[str]:
    """The addresses of ``host`` from the operating system's resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise ServiceUnavailable(f"cannot resolve host {host!r}: {e}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_internal(address: Address) -> bool:
    """True for an address a function must not reach unless its host is listed exactly."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or (isinstance(address, ipaddress.IPv4Address) and address in _SHARED)
        or (isinstance(address, ipaddress.IPv6Address) and address.is_site_local)
    )


def choose_address(host: str, port: int, explicit: bool, resolve: Resolver) -> str:
    """The address to connect to for ``host``; ``PermissionDenied`` when the name (or
    literal) lands on an internal address and the allowlist does not name it exactly."""
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    found = [str(literal)] if literal is not None else resolve(host, port)
    if not found:
        raise ServiceUnavailable(f"host {host!r} resolved to no address")
    if not explicit:
        for text in found:
            if is_internal(ipaddress.ip_address(text.split("%", 1)[0])):
                raise PermissionDenied(
                    f"host {host!r} resolves to {text}, an internal address; only an "
                    "allowed_outbound_hosts entry naming this host exactly (no wildcard) "
                    "may reach it"
                )
    return found[0]
