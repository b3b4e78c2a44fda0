"""Which outside hosts a function may call: ``allowed_outbound_hosts`` in nimbus.toml.

Like Spin's setting of the same name, nothing is reachable by default and each entry
names a scheme, a host and optionally a port::

    allowed_outbound_hosts = [
        "https://payments.example.com",     # https on port 443 only
        "https://*.example.com",            # any subdomain (not example.com itself)
        "http://127.0.0.1:9000",            # an IP literal, one port
        "http://localhost:*",               # any port
    ]

A port left out means the scheme's default (80 for http, 443 for https). An entry that
names a host exactly (not a ``*.`` wildcard) is what lets a call reach a loopback,
private or link-local address: the SSRF check (``host/hostcalls/addresses.py``) refuses
those for any other entry. ``SECRET_NAME`` is the rule for the names in ``secrets``.
"""

from __future__ import annotations

import ipaddress
import re

from msgspec import Struct

DEFAULT_PORTS = {"http": 80, "https": 443}
#: one DNS label (letters, digits, '-'), and a host as dot-separated labels
_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
#: a secret's name, as granted in ``secrets = [...]`` and set by ``nimbus secrets set``
SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class AllowedHost(Struct, frozen=True):
    """One entry of the allowlist: ``scheme://host[:port]``."""

    scheme: str
    #: lower-case name or IP literal (IPv6 without brackets), or ``*.suffix``
    host: str
    #: None: any port; otherwise the only port allowed
    port: int | None

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or (self.port is not None and port != self.port):
            return False
        if self.wildcard:
            return host.endswith(self.host[1:]) and len(host) > len(self.host) - 1
        return host == self.host

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{'*' if self.port is None else self.port}"


def parse_allowed_host(text: str) -> AllowedHost:
    """An ``AllowedHost`` from ``scheme://host[:port]``; ``ValueError`` saying what is wrong."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in DEFAULT_PORTS:
        raise ValueError(
            f"{text!r} needs a scheme, http:// or https:// (e.g. 'https://api.example.com')"
        )
    rest = rest.removesuffix("/")
    if not rest or any(c in rest for c in "/?#@ "):
        raise ValueError(f"{text!r} must be scheme://host[:port], without a path or user")
    host, port_text = _split_port(rest, text)
    host = host.lower()
    if port_text is None:
        port: int | None = DEFAULT_PORTS[scheme]
    elif port_text == "*":
        port = None
    elif port_text.isdigit() and 0 < int(port_text) < 65536:
        port = int(port_text)
    else:
        raise ValueError(f"{text!r}: the port must be 1-65535 or '*', got {port_text!r}")
    name = host[2:] if host.startswith("*.") else host
    if not _is_ip(host) and not all(_LABEL.match(label) for label in name.split(".")):
        raise ValueError(
            f"{text!r}: {host!r} is not a host name or IP address ('*.' may only start a name)"
        )
    return AllowedHost(scheme, host, port)


def _split_port(rest: str, text: str) -> tuple[str, str | None]:
    if rest.startswith("["):  # [v6]:port
        end = rest.find("]")
        if end < 0 or not _is_ip(rest[1:end]):
            raise ValueError(f"{text!r}: a bracketed host must be an IPv6 address")
        tail = rest[end + 1 :]
        if tail and not tail.startswith(":"):
            raise ValueError(f"{text!r}: expected ':port' after the IPv6 address")
        return rest[1:end], tail[1:] if tail else None
    host, colon, port = rest.partition(":")
    return host, port if colon else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class OutboundPolicy(Struct, frozen=True):
    """A function's allowlist, asked once per outbound request (and per redirect)."""

    entries: tuple[AllowedHost, ...] = ()

    def match(self, scheme: str, host: str, port: int) -> AllowedHost | None:
        """The entry that allows ``scheme://host:port``, preferring an exact one."""
        found = [e for e in self.entries if e.matches(scheme, host, port)]
        exact = [e for e in found if not e.wildcard]
        best = exact or found
        return best[0] if best else None

    @classmethod
    def parse(cls, texts: tuple[str, ...] | list[str]) -> OutboundPolicy:
        return cls(tuple(parse_allowed_host(t) for t in texts))
