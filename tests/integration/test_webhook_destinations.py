"""One webhook attempt against the SSRF rules (connectors/webhook_delivery.py Sender, connectors/ssrf.py):
redirects are never followed, a hostname is checked as it resolves (an injected resolver, no DNS) and the
connection goes to the checked address. A real receiver on 127.0.0.1; no Postgres, no broker."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
from webhook_receiver import Receiver, Reply

from connectors import ssrf
from connectors import webhook_signing as signing
from connectors.webhook_delivery import AttemptResult, Sender
from services.config import WebhookSettings

pytestmark = pytest.mark.integration

LOCAL = WebhookSettings(timeout_s=10.0, allow_private=True)  # the receiver is on 127.0.0.1: explicit opt-in


@pytest.fixture()
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


def send(sender: Sender, url: str) -> AttemptResult:
    return sender.send(url, [signing.generate_secret()], "msg_test", b'{"type": "webhook.test"}')


def test_redirects_are_never_followed(receiver: Receiver) -> None:
    receiver.script("/metadata", Reply(302, headers={"Location": "http://169.254.169.254/latest/meta-data"}))
    receiver.script("/moved", Reply(307, headers={"Location": receiver.base + "/landing"}))
    receiver.script("/permanent", Reply(301, headers={"Location": "http://[::1]/"}))
    sender = Sender(LOCAL)
    try:
        errors = {}
        for path, status in (("/metadata", 302), ("/moved", 307), ("/permanent", 301)):
            result = send(sender, receiver.base + path)
            assert result.outcome == "failed" and result.status_code == status, result
            errors[path] = result.error or ""
            assert "redirects are not followed" in errors[path]
            assert len(receiver.at(path)) == 1
        assert "Location: http://169.254.169.254/latest/meta-data" in errors["/metadata"]
        assert receiver.at("/landing") == []
    finally:
        sender.close()


def resolver(table: dict[str, list[str]]) -> ssrf.Resolver:
    def resolve(host: str, port: int) -> Sequence[str]:
        return table[host]

    return resolve


def test_a_hostname_is_checked_as_it_resolves_and_the_checked_address_is_dialled(receiver: Receiver) -> None:
    port = int(receiver.base.rsplit(":", 1)[1])
    dns = resolver({"hooks.internal.test": ["127.0.0.1"], "public.test": ["93.184.216.34"]})
    # by default a name resolving to loopback is refused before anything is sent
    strict = Sender(WebhookSettings(timeout_s=10.0), resolver=dns)
    try:
        blocked = send(strict, f"http://hooks.internal.test:{port}/in")
        assert blocked.outcome == "blocked" and "non-public" in (blocked.error or "")
        assert "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE=1" in (blocked.error or "")
        for host in ("2130706433", "0x7f.1", "[::ffff:127.0.0.1]"):
            assert send(strict, f"http://{host}:{port}/in").outcome == "blocked"
    finally:
        strict.close()
    assert receiver.at("/in") == []
    # with the opt-in the attempt goes to the address the name was checked at, Host naming the name
    local = Sender(LOCAL, resolver=dns)
    try:
        ok = send(local, f"http://hooks.internal.test:{port}/in")
        assert ok.outcome == "succeeded", ok
        [rec] = receiver.at("/in")
        assert rec.headers["host"] == f"hooks.internal.test:{port}"
        # a decimal spelling of loopback is the same address
        assert send(local, f"http://2130706433:{port}/in").outcome == "succeeded"
    finally:
        local.close()
