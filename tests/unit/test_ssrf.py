"""Outbound destinations against SSRF (connectors/ssrf.py): webhook URLs and legacy-source database hosts.

No real DNS: every hostname case injects a resolver. IP literals are never sent to a resolver (the
``no_dns`` resolver fails the test if one is)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors import ssrf
from connectors.legacy.declaration import SourceSpecError, check_host, parse_source


def no_dns(host: str, port: int) -> Sequence[str]:
    raise AssertionError(f"{host} was sent to DNS")


def resolving(table: dict[str, list[str]]) -> ssrf.Resolver:
    def resolve(host: str, port: int) -> Sequence[str]:
        if host not in table:
            raise OSError(f"[Errno -2] Name or service not known: {host}")
        return table[host]

    return resolve


# every spelling a resolver (inet_aton) or a browser reads as an address -> the address it is
SPELLINGS = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.1", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0x7F.0.0.1", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("127.0.0.1.", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("0.0.0.0", "0.0.0.0"),
    ("0x", "0.0.0.0"),
    ("10.0.258", "10.0.1.2"),
    ("3232235777", "192.168.1.1"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ("0:0:0:0:0:ffff:7f00:1", "::ffff:7f00:1"),
    ("fe80::1%eth0", "fe80::1"),
    ("8.8.8.8", "8.8.8.8"),
    ("134744072", "8.8.8.8"),
]


@pytest.mark.parametrize(("host", "address"), SPELLINGS)
def test_every_ip_spelling_is_read_as_its_address(host: str, address: str) -> None:
    assert ssrf.ip_literal(host) == ipaddress.ip_address(address)


@pytest.mark.parametrize("host", ["example.com", "hooks.example.com.", "127.0.0.1.nip.io", "a1.b2", "1e3"])
def test_names_are_not_addresses(host: str) -> None:
    assert ssrf.ip_literal(host) is None


@pytest.mark.parametrize(
    "host", ["256.0.0.1", "1.2.3.4.5", "09.0.0.1", "0x100.0.0.1", "4294967296", "1.16777216", "example.123",
             "1..2", "[::1", "::ffff:999.0.0.1"],
)  # fmt: skip
def test_number_like_hosts_that_are_no_address_are_refused(host: str) -> None:
    with pytest.raises(ssrf.BlockedDestination, match="not a valid"):
        ssrf.check_host(host, 80, allow_private=True, resolver=no_dns)


# address -> the kind it is refused as by default, and whether the opt-in allows it
POLICY = [
    ("127.0.0.1", "loopback", True),
    ("127.8.9.10", "loopback", True),
    ("::1", "loopback", True),
    ("10.1.2.3", "private", True),
    ("172.16.0.1", "private", True),
    ("192.168.1.1", "private", True),
    ("100.64.0.1", "private", True),  # carrier-grade NAT
    ("fd00::1", "private", True),
    ("fec0::1", "private", True),  # site-local
    ("::ffff:10.0.0.1", "private", True),
    ("2002:c0a8:0101::1", "private", True),  # 6to4 of 192.168.1.1
    ("64:ff9b::7f00:1", "loopback", True),  # NAT64 of 127.0.0.1
    ("::ffff:127.0.0.1", "loopback", True),
    ("169.254.169.254", "link-local", False),  # cloud metadata
    ("fe80::1", "link-local", False),
    ("::ffff:169.254.169.254", "link-local", False),
    ("224.0.0.1", "multicast", False),
    ("ff02::1", "multicast", False),
    ("240.0.0.1", "reserved", False),
    ("255.255.255.255", "reserved", False),
    ("0.0.0.0", "unspecified", False),
    ("::", "unspecified", False),
    ("0.1.2.3", "this network (0.0.0.0/8)", False),
    ("::7f00:1", "reserved", False),  # IPv4-compatible (deprecated)
]


@pytest.mark.parametrize(("address", "kind", "opt_in_allows"), POLICY)
def test_non_public_addresses_are_refused(address: str, kind: str, opt_in_allows: bool) -> None:
    addr = ipaddress.ip_address(address)
    assert ssrf.refusal(addr, allow_private=False) == kind
    assert (ssrf.refusal(addr, allow_private=True) is None) is opt_in_allows


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8",
                                     "2002:0808:0808::1", "64:ff9b::808:808"])  # fmt: skip
def test_public_addresses_are_allowed(address: str) -> None:
    assert ssrf.refusal(ipaddress.ip_address(address), allow_private=False) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/", "http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/", "http://127.1:8080/x",
        "http://[::ffff:127.0.0.1]/", "http://[::1]/", "http://0.0.0.0/", "http://0/", "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data", "http://[fe80::1]/", "http://224.0.0.1/",
        "http://240.0.0.1/", "http://0xa9fea9fe/", "https://192.168.0.1/",
    ],
)  # fmt: skip
def test_webhook_urls_with_non_public_literals_are_refused_without_dns(url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination, match="non-public"):
        ssrf.resolve(url, allow_private=False, resolver=no_dns)


def test_the_opt_in_allows_loopback_and_private_but_never_metadata_or_multicast() -> None:
    assert ssrf.resolve("http://2130706433:9/x", allow_private=True, resolver=no_dns).address == "127.0.0.1"
    assert ssrf.resolve("http://0x7f.1/", allow_private=True, resolver=no_dns).address == "127.0.0.1"
    assert ssrf.resolve("http://10.0.0.1/", allow_private=True, resolver=no_dns).address == "10.0.0.1"
    for url in ("http://169.254.169.254/", "http://[::ffff:169.254.169.254]/", "http://224.0.0.1/",
                "http://0.0.0.0/"):  # fmt: skip
        with pytest.raises(ssrf.BlockedDestination) as refused:
            ssrf.resolve(url, allow_private=True, resolver=no_dns)
        assert "ALLOW_PRIVATE" not in str(refused.value)  # no setting allows these: none is suggested


def test_a_refusal_names_the_opt_in_that_would_allow_it() -> None:
    with pytest.raises(ssrf.BlockedDestination, match="AGENTFLOW_WEBHOOK_ALLOW_PRIVATE=1"):
        ssrf.resolve("http://2130706433/", allow_private=False, resolver=no_dns)
    with pytest.raises(ssrf.BlockedDestination, match=r"loopback 127\.0\.0\.1"):
        ssrf.resolve("http://2130706433/", allow_private=False, resolver=no_dns)


def test_hostnames_are_judged_by_every_address_they_resolve_to() -> None:
    dns = resolving({
        "hooks.example.com": ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"],
        "internal.example.com": ["10.0.0.7"],
        "localhost": ["127.0.0.1", "::1"],
        "mixed.example.com": ["93.184.216.34", "127.0.0.1"],  # one bad address is enough
        "mapped.example.com": ["::ffff:127.0.0.1"],
        "metadata.example.com": ["169.254.169.254"],
        "empty.example.com": [],
    })  # fmt: skip
    target = ssrf.resolve("https://hooks.example.com/in?x=1", allow_private=False, resolver=dns)
    assert (target.host, target.address, target.port, target.path) == (
        "hooks.example.com", "93.184.216.34", 443, "/in?x=1"
    )
    for host in ("internal.example.com", "localhost", "mixed.example.com", "mapped.example.com",
                 "metadata.example.com"):  # fmt: skip
        with pytest.raises(ssrf.BlockedDestination, match=f"{host} resolves to a non-public address"):
            ssrf.resolve(f"http://{host}/", allow_private=False, resolver=dns)
    assert ssrf.resolve("http://localhost:9/", allow_private=True, resolver=dns).address == "127.0.0.1"
    with pytest.raises(ssrf.BlockedDestination, match="link-local"):
        ssrf.resolve("http://metadata.example.com/", allow_private=True, resolver=dns)
    with pytest.raises(ssrf.BlockedDestination, match="has no address"):
        ssrf.resolve("http://empty.example.com/", allow_private=False, resolver=dns)
    with pytest.raises(ssrf.BlockedDestination, match="cannot resolve"):
        ssrf.resolve("http://unknown.example.com/", allow_private=False, resolver=dns)
    assert ssrf.destination_problem("http://internal.example.com/", False, dns) is not None
    assert ssrf.destination_problem("http://hooks.example.com/", False, dns) is None


def test_hosts_are_read_as_the_resolver_would_read_them() -> None:
    # fullwidth digits are NFKC-normalised to an address by IDNA: never a name to look up
    with pytest.raises(ssrf.BlockedDestination, match="non-public"):
        ssrf.check_host("１２７.０.０.１", 80, allow_private=False, resolver=no_dns)
    for host in ("exa mple.com", "a/b", "a@b", "x%2e.com"):
        with pytest.raises(ssrf.BlockedDestination, match="not a valid host name"):
            ssrf.check_host(host, 80, allow_private=True, resolver=no_dns)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/", "http://user:pw@example.com/", "http:///x", "http://example.com:99999/"]
)
def test_webhook_urls_must_be_plain_http(url: str) -> None:
    with pytest.raises(ssrf.BlockedDestination):
        ssrf.resolve(url, allow_private=True, resolver=resolving({"example.com": ["93.184.216.34"]}))


def spellings(n: int) -> st.SearchStrategy[str]:
    """Ways to write the IPv4 address ``n``: dotted with each part decimal, octal or hex, the shortened
    forms (a.b.c, a.b, a) and the IPv4-mapped IPv6 address."""
    b = n.to_bytes(4, "big")

    def write(v: int, style: int) -> str:
        return (str(v), f"0{v:o}", f"0x{v:x}")[style]

    groups = {
        4: list(b),
        3: [b[0], b[1], int.from_bytes(b[2:], "big")],
        2: [b[0], int.from_bytes(b[1:], "big")],
        1: [n],
    }
    dotted = st.sampled_from(sorted(groups)).flatmap(
        lambda k: st.lists(st.integers(0, 2), min_size=k, max_size=k).map(
            lambda styles: ".".join(write(v, s) for v, s in zip(groups[k], styles, strict=True))
        )
    )
    return st.one_of(dotted, st.just(f"[::ffff:{ipaddress.IPv4Address(n)}]"))


NON_PUBLIC = [ipaddress.IPv4Network(n) for n in (
    "127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "0.0.0.0/8",
    "100.64.0.0/10", "224.0.0.0/4", "240.0.0.0/4",
)]  # fmt: skip


@given(st.sampled_from(NON_PUBLIC).flatmap(
    lambda net: st.integers(int(net.network_address), int(net.broadcast_address))
).flatmap(spellings))  # fmt: skip
def test_no_spelling_of_a_non_public_address_gets_through(host: str) -> None:
    url = f"http://{host}:8080/hook"
    with pytest.raises(ssrf.BlockedDestination):
        ssrf.resolve(url, allow_private=False, resolver=no_dns)


@given(st.sampled_from(["8.8.8.8", "93.184.216.34", "1.1.1.1"]).flatmap(
    lambda a: spellings(int(ipaddress.IPv4Address(a))).map(lambda s: (a, s))
))  # fmt: skip
def test_every_spelling_of_a_public_address_connects_to_that_address(case: tuple[str, str]) -> None:
    address, host = case
    target = ssrf.resolve(f"http://{host}/", allow_private=False, resolver=no_dns)
    assert ipaddress.ip_address(target.address) in (
        ipaddress.ip_address(address), ipaddress.ip_address(f"::ffff:{address}")
    )


# -- legacy sources: the database host a declaration names -------------------------------------------


def _declaration(host: str, port: int = 5432) -> dict[str, object]:
    return {
        "name": "shop", "kind": "postgres", "tenant": "t1",
        "connection": {"host": host, "port": port, "database": "shop", "user": "u", "password": "p"},
        "tables": [{"table": "public.orders", "translator": "orders"}],
    }  # fmt: skip


@pytest.mark.parametrize("host", [
    "127.0.0.1", "2130706433", "0177.0.0.1", "0x7f.1", "::ffff:127.0.0.1", "0.0.0.0", "10.1.2.3",
    "169.254.169.254", "fe80::1", "localhost",
])  # fmt: skip
def test_legacy_hosts_are_refused_by_default(host: str) -> None:
    spec = parse_source(_declaration(host))
    with pytest.raises(SourceSpecError, match="connection.host: .*non-public"):
        check_host(spec, allow_private=False, resolver=resolving({"localhost": ["127.0.0.1"]}))


def test_legacy_opt_in_allows_loopback_and_private_hosts_only() -> None:
    dns = resolving({"db.internal": ["10.0.0.5"], "db.example.com": ["93.184.216.34"]})
    for host in ("127.0.0.1", "0x7f.1", "db.internal", "192.168.1.20"):
        assert check_host(parse_source(_declaration(host)), allow_private=True, resolver=dns)
    for host in ("169.254.169.254", "224.0.0.1", "0.0.0.0"):
        with pytest.raises(SourceSpecError, match="non-public"):
            check_host(parse_source(_declaration(host)), allow_private=True, resolver=dns)
    with pytest.raises(SourceSpecError, match="AGENTFLOW_LEGACY_ALLOW_PRIVATE=1"):
        check_host(parse_source(_declaration("db.internal")), allow_private=False, resolver=dns)
    assert check_host(parse_source(_declaration("db.example.com")), allow_private=False, resolver=dns) == [
        "93.184.216.34"
    ]


@pytest.mark.parametrize("host", ["", "postgres://db.example.com", "db.example.com/shop", "u@db", "a b"])
def test_legacy_host_must_be_a_host(host: str) -> None:
    with pytest.raises(SourceSpecError, match="connection.host"):
        parse_source(_declaration(host))
