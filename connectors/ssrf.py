"""Outbound destinations against SSRF (docs/security.md, "Outbound requests (SSRF)"): webhook URLs and the
database hosts legacy sources declare.

Only public (global unicast) addresses by default. The operator's opt-in (``AGENTFLOW_WEBHOOK_ALLOW_PRIVATE``
for webhooks, ``AGENTFLOW_LEGACY_ALLOW_PRIVATE`` for legacy sources) adds loopback and private ones
(10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7, ...); link-local (cloud metadata at 169.254.169.254),
multicast, reserved, unspecified (0.0.0.0, ::) and 0.0.0.0/8 stay refused whatever the setting.

A host is checked as the resolver would read it: an IP literal in any spelling ``inet_aton`` or a browser
accepts -- dotted, shortened (127.1), decimal (2130706433), octal (0177.0.0.1), hex (0x7f.1) -- is taken as
that address and never sent to DNS; an IPv6 address embedding an IPv4 one (::ffff:127.0.0.1, 6to4
2002::/16, NAT64 64:ff9b::/96) is judged by the IPv4 address; a name is resolved (``resolver``, injectable
for tests) and refused when *any* of its addresses is. Webhooks are checked when a subscription is
created and again before every attempt, and the attempt connects to the address that was checked (no DNS
rebinding between the check and the connection); deliveries never follow redirects
(connectors/webhook_delivery.py).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as strings (socket.getaddrinfo by default)
Resolver = Callable[[str, int], Sequence[str]]

WEBHOOK_OPT_IN = "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE"
LEGACY_OPT_IN = "AGENTFLOW_LEGACY_ALLOW_PRIVATE"

_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
# one part of an IPv4 spelling: hex (0x..), octal (0..) or decimal
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")
_NAME = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")
# refused whatever the opt-in says
_ALWAYS = frozenset(("unspecified", "this network (0.0.0.0/8)", "link-local", "multicast", "reserved"))


class BlockedDestination(ValueError):
    pass


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (Host header, TLS SNI)
    port: int
    address: str  # the checked IP the connection goes to
    path: str  # path + query


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _part(text: str) -> int:
    if text[:2].lower() == "0x":
        return int(text[2:] or "0", 16)
    if len(text) > 1 and text[0] == "0":
        return int(text, 8)  # ValueError for 08, 09: no address
    return int(text)


def ip_literal(host: str) -> IPAddress | None:
    """The address ``host`` spells (any spelling a resolver or browser takes as an address), or None for a
    name. BlockedDestination for a number-like host that is no address (256.1.1.1, 1.2.3.4.5, 09.1.1.1)."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if ":" in h:
        try:
            return ipaddress.IPv6Address(h.split("%", 1)[0])
        except ValueError:
            raise BlockedDestination(f"{host!r} is not a valid address") from None
    parts = (h[:-1] if h.endswith(".") else h).split(".")
    if not all(_NUMBER.fullmatch(p) for p in parts):
        if _NUMBER.fullmatch(parts[-1]):  # a host ending in a number is an address or nothing (WHATWG URL)
            raise BlockedDestination(f"{host!r} is not a valid address")
        return None
    try:
        values = [_part(p) for p in parts]
    except ValueError:
        raise BlockedDestination(f"{host!r} is not a valid address") from None
    *head, last = values
    if len(values) > 4 or any(v > 255 for v in head) or last >= 1 << (8 * (5 - len(values))):
        raise BlockedDestination(f"{host!r} is not a valid address")
    number = sum(v << (24 - 8 * i) for i, v in enumerate(head)) + last
    return ipaddress.IPv4Address(number)


def _embedded_ipv4(addr: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    if addr.sixtofour is not None:
        return addr.sixtofour
    if addr in _NAT64:
        return ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
    return None


def refusal(addr: IPAddress, allow_private: bool) -> str | None:
    """Why a connection to ``addr`` is refused (the kind of address), or None when it may go there."""
    if isinstance(addr, ipaddress.IPv6Address):
        inner = _embedded_ipv4(addr)
        if inner is not None:
            return refusal(inner, allow_private)
        if addr.teredo is not None and (why := refusal(addr.teredo[1], allow_private)) is not None:
            return why  # a Teredo address reaches its client's IPv4 address
        if addr.is_site_local:  # fec0::/10, deprecated private space
            return None if allow_private else "private"
    if addr.is_unspecified:
        return "unspecified"
    if isinstance(addr, ipaddress.IPv4Address) and addr in _THIS_NETWORK:
        return "this network (0.0.0.0/8)"
    if addr.is_loopback:
        return None if allow_private else "loopback"
    if addr.is_link_local:
        return "link-local"
    if addr.is_multicast:
        return "multicast"
    if addr.is_reserved:
        return "reserved"
    if addr.is_global:
        return None
    return None if allow_private else "private"


def address_allowed(ip: str, allow_private: bool) -> bool:
    return refusal(ipaddress.ip_address(ip.split("%", 1)[0]), allow_private) is None


def _refused(host: str, addr: IPAddress, why: str, literal: bool, opt_in: str) -> BlockedDestination:
    where = f"{host} is a non-public address" if literal else f"{host} resolves to a non-public address"
    hint = "" if why in _ALWAYS else f"; set {opt_in}=1 to allow loopback and private destinations"
    shown = "" if literal and str(addr) == host else f" {addr}"
    return BlockedDestination(f"{where} ({why}{shown}){hint}")


def check_host(
    host: str, port: int, allow_private: bool, resolver: Resolver | None = None, opt_in: str = WEBHOOK_OPT_IN
) -> list[str]:
    """The addresses ``host`` is reached at, every one allowed; BlockedDestination naming the first refused
    one (``opt_in``: the setting that would allow loopback and private ones)."""
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")  # as a resolver sees it (NFKC: fullwidth digits)
        except UnicodeError:
            raise BlockedDestination(f"{host!r} is not a valid host name") from None
    literal = ip_literal(host)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        if not _NAME.fullmatch(host):
            raise BlockedDestination(f"{host!r} is not a valid host name")
        try:
            found = (resolver or system_resolver)(host, port)
        except (OSError, UnicodeError) as exc:
            raise BlockedDestination(f"cannot resolve {host}: {exc}") from exc
        try:
            addresses = list(dict.fromkeys(ipaddress.ip_address(a.split("%", 1)[0]) for a in found))
        except ValueError as exc:
            raise BlockedDestination(f"cannot resolve {host}: {exc}") from exc
        if not addresses:
            raise BlockedDestination(f"{host} has no address")
    for addr in addresses:
        why = refusal(addr, allow_private)
        if why is not None:
            raise _refused(host, addr, why, literal is not None, opt_in)
    # an IPv4-mapped address is dialled as the IPv4 address it is (works without IPv6 too)
    return [str(getattr(a, "ipv4_mapped", None) or a) for a in addresses]


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


def resolve(url: str, allow_private: bool, resolver: Resolver | None = None) -> Target:
    """Check the URL and resolve its host; BlockedDestination unless every address is allowed."""
    scheme, host, port, path = parse_url(url)
    addresses = check_host(host, port, allow_private, resolver, WEBHOOK_OPT_IN)
    return Target(scheme, host, port, addresses[0], path)


def destination_problem(url: str, allow_private: bool, resolver: Resolver | None = None) -> str | None:
    """Why ``url`` may not be a webhook destination (None: it may). Resolves its host."""
    try:
        resolve(url, allow_private, resolver)
    except BlockedDestination as exc:
        return str(exc)
    return None
