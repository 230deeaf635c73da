"""Destination checks against SSRF: only public (global unicast) addresses unless the operator
allows loopback and private ones (``AGENTFLOW_WEBHOOK_ALLOW_PRIVATE=1``; link-local, multicast and
unspecified addresses stay blocked). Checked when a subscription is created
and again before every attempt, against the address the request is then sent to (no DNS rebinding
between the check and the connection)."""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class BlockedDestination(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (Host header, TLS SNI)
    port: int
    address: str  # the checked IP the connection goes to
    path: str  # path + query


def parse_url(url: str) -> tuple[str, str, int, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise BlockedDestination("webhook URLs must be http:// or https://")
    if not parts.hostname:
        raise BlockedDestination("webhook URL has no host")
    if parts.username or parts.password:
        raise BlockedDestination("webhook URL must not carry credentials")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError as exc:
        raise BlockedDestination(f"invalid port in webhook URL: {exc}") from exc
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, parts.hostname, port, path


def address_allowed(ip: str, allow_private: bool) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if addr.is_multicast or addr.is_unspecified or addr.is_link_local:
        return False  # link-local (cloud metadata at 169.254.169.254) is never a webhook destination
    if allow_private:
        return True
    return addr.is_global and not (
        addr.is_loopback or addr.is_link_local or addr.is_private or addr.is_reserved
    )


def resolve(url: str, allow_private: bool) -> Target:
    """Resolve the URL's host; raise BlockedDestination unless every address is allowed."""
    scheme, host, port, path = parse_url(url)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise BlockedDestination(f"cannot resolve {host}: {exc}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise BlockedDestination(f"{host} has no address")
    bad = [a for a in addresses if not address_allowed(a, allow_private)]
    if bad:
        raise BlockedDestination(
            f"{host} resolves to a non-public address ({bad[0]}); "
            "set AGENTFLOW_WEBHOOK_ALLOW_PRIVATE=1 to allow private destinations"
        )
    return Target(scheme, host, port, addresses[0], path)


def destination_problem(url: str, allow_private: bool) -> str | None:
    """Why ``url`` may not be a webhook destination (None: it may). Resolves its host."""
    try:
        resolve(url, allow_private)
    except BlockedDestination as exc:
        return str(exc)
    return None
