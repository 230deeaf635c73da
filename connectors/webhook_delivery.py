"""One signed HTTP attempt (SSRF-checked, Standard Webhooks signature), and the per-endpoint drain loop
the ``deliver_endpoint`` actor runs (services/webhooks/actors.py).

Drain: take the endpoint's lease, then send its open deliveries in id order (position order for
events). A failed head delivery is rescheduled (retry schedule, or the receiver's Retry-After for
429/503) and blocks the endpoint until it succeeds or is exhausted, so order holds. 410 disables the
endpoint. Every attempt is written to ``webhook_attempts``; a delivery found ``delivering`` by the next
lease holder was interrupted (its worker died) and is logged and retried like a failure. The schedule
itself is readmodels.webhooks.retry_delay; the settings are services.config.WebhookSettings (any object
with the attributes of :class:`SenderSettings` and :class:`DrainSettings`).
"""

from __future__ import annotations

import contextlib
import email.utils
import http.client
import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import psycopg

from connectors import ssrf, tracing
from connectors import webhook_signing as signing
from connectors.prometheus_metrics import WEBHOOK_ATTEMPT_SECONDS, WEBHOOK_EXHAUSTED
from connectors.webhook_store import OpenDelivery, WebhookStore
from readmodels.webhooks import Endpoint, retry_delay

log = logging.getLogger("agentflow.webhooks")

MAX_RESPONSE_BYTES = 64 * 1024


class SenderSettings(Protocol):
    @property
    def timeout_s(self) -> float: ...  # per attempt: connect + send + response
    @property
    def allow_private(self) -> bool: ...  # loopback/private destinations (connectors/ssrf.py)
    @property
    def response_excerpt_chars(self) -> int: ...


class DrainSettings(SenderSettings, Protocol):
    @property
    def schedule(self) -> Sequence[float]: ...  # the delay before attempt 1, 2, 3 ...
    @property
    def max_retry_after_s(self) -> float: ...
    @property
    def lease_s(self) -> float: ...
    @property
    def drain_batch(self) -> int: ...


@dataclass(frozen=True)
class AttemptResult:
    outcome: str  # 'succeeded' | 'failed' | 'gone' | 'timeout' | 'error' | 'blocked'
    status_code: int | None
    latency_ms: float
    error: str | None = None
    excerpt: str | None = None
    retry_after_s: float | None = None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - (now if now is not None else time.time()))


class _PinnedHTTP(http.client.HTTPConnection):
    """HTTP/1.1 keep-alive connection to the SSRF-checked address; Host header is the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPS(http.client.HTTPSConnection):
    """TLS to the checked address with SNI and certificate check against the URL's host."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class Sender:
    """Sends attempts over per-thread keep-alive connections (stdlib http.client: a fraction of
    httpx's CPU per request), always to the address the SSRF check approved. No redirects: http.client
    never follows one, and a 3xx answer is a failed attempt (retried like any other failure)."""

    def __init__(self, settings: SenderSettings, resolver: ssrf.Resolver | None = None) -> None:
        self.settings = settings
        self.resolver = resolver  # None: the system's (tests inject one)
        self._local = threading.local()

    def _conns(self) -> dict[tuple[str, str, int, str], http.client.HTTPConnection]:
        conns: dict[tuple[str, str, int, str], http.client.HTTPConnection] | None = getattr(
            self._local, "conns", None
        )
        if conns is None:
            conns = self._local.conns = {}
        return conns

    def send(
        self, url: str, secrets: list[str], msg_id: str, body: bytes, traceparent: str | None = None
    ) -> AttemptResult:
        """One signed POST of ``body`` (a ``webhook.deliver`` span when tracing is on, in the trace of
        the command that appended the event when ``traceparent`` is its)."""
        parent = tracing.event_context({tracing.TRACEPARENT: traceparent}) if traceparent else None
        with tracing.span("webhook.deliver", {"agentflow.webhook_id": msg_id}, parent) as span:
            result = self._send(url, secrets, msg_id, body)
            if span is not None:
                span.set_attribute("agentflow.outcome", result.outcome)
                if result.status_code is not None:
                    span.set_attribute("http.response.status_code", result.status_code)
            return result

    def _send(self, url: str, secrets: list[str], msg_id: str, body: bytes) -> AttemptResult:
        started = time.perf_counter()

        def ms() -> float:
            return (time.perf_counter() - started) * 1000

        try:
            target = ssrf.resolve(url, self.settings.allow_private, self.resolver)
        except ssrf.BlockedDestination as exc:
            return AttemptResult("blocked", None, ms(), error=str(exc))
        timeout = self.settings.timeout_s
        key = (target.scheme, target.host, target.port, target.address)
        conns = self._conns()
        headers = signing.headers_for(secrets, msg_id, int(time.time()), body)
        for tries in (1, 2):
            conn = conns.get(key)
            reused = conn is not None
            if conn is None:
                cls = _PinnedHTTPS if target.scheme == "https" else _PinnedHTTP
                conn = conns[key] = cls(target.host, target.port, target.address, timeout)
            try:
                conn.request("POST", target.path, body=body, headers=headers)
                resp = conn.getresponse()
                raw = resp.read(MAX_RESPONSE_BYTES)
                if resp.will_close or not resp.isclosed():  # not reusable (or body left unread)
                    conns.pop(key, None)
                    conn.close()
                break
            except _STALE as exc:
                conns.pop(key, None)
                conn.close()
                if reused and tries == 1:
                    continue  # the receiver closed an idle keep-alive connection: reconnect once
                return AttemptResult("error", None, ms(), error=f"{type(exc).__name__}: {exc}"[:500])
            except TimeoutError as exc:
                conns.pop(key, None)
                conn.close()
                return AttemptResult(
                    "timeout", None, ms(), error=f"timed out after {timeout:g}s ({exc})"[:500]
                )
            except (OSError, http.client.HTTPException) as exc:
                conns.pop(key, None)
                conn.close()
                return AttemptResult("error", None, ms(), error=f"{type(exc).__name__}: {exc}"[:500])
        latency = ms()
        excerpt = raw[: self.settings.response_excerpt_chars].decode("utf-8", errors="replace")
        code = resp.status
        if 200 <= code < 300:
            return AttemptResult("succeeded", code, latency, excerpt=excerpt)
        if code == 410:
            return AttemptResult("gone", code, latency, error="410 Gone: endpoint disabled", excerpt=excerpt)
        retry_after = parse_retry_after(resp.getheader("retry-after")) if code in (429, 503) else None
        error = f"HTTP {code}"
        if 300 <= code < 400:  # never followed: the Location could be any address (SSRF), and unchecked
            error += f" (redirects are not followed; Location: {resp.getheader('location') or '-'})"[:400]
        return AttemptResult(
            "failed", code, latency, error=error, excerpt=excerpt, retry_after_s=retry_after
        )

    def close(self) -> None:
        for conn in self._conns().values():
            conn.close()


@dataclass
class DrainResult:
    delivered: int = 0
    retry_in_s: float | None = None  # the head waits this long: send a delayed drain
    requeue: bool = False  # batch budget used up with work left: send a drain now
    leased: bool = True


class Drainer:
    """Runs one endpoint's drain. ``schedule(endpoint_id, delay_s)`` enqueues the follow-up message."""

    def __init__(
        self,
        store: WebhookStore,
        settings: DrainSettings,
        sender: Sender | None = None,
        on_delivered: Callable[[str, OpenDelivery, AttemptResult], None] | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.sender = sender or Sender(settings)
        self.on_delivered = on_delivered

    def _retry_delay(self, attempt: int, result: AttemptResult | None) -> float | None:
        """Seconds until the next attempt, or None when ``attempt`` was the last one."""
        retry_after = result.retry_after_s if result is not None else None
        return retry_delay(self.settings.schedule, attempt, retry_after, self.settings.max_retry_after_s)

    def drain(self, endpoint_id: str) -> DrainResult:
        with self.store.session() as pg:
            return self._drain(pg, endpoint_id)

    def _drain(self, pg: psycopg.Connection[Any], endpoint_id: str) -> DrainResult:
        s = self.settings
        st = self.store
        owner = uuid.uuid4().hex
        ep = st.acquire(pg, endpoint_id, owner, s.lease_s)
        if ep is None:
            return DrainResult(leased=False)
        out = DrainResult()
        try:
            while True:
                budget = s.drain_batch - out.delivered
                if budget <= 0:
                    st.release(pg, endpoint_id, owner, force=True)
                    out.requeue = True
                    return out
                batch = st.open_deliveries(pg, endpoint_id, min(budget, 50))
                wait: float | None = None
                lost = False
                for d in batch:
                    if d.wait_s > 0:
                        wait = d.wait_s
                        break
                    step = self._one(pg, ep, owner, d)
                    if step == "lost":
                        lost = True
                        break
                    if step == "gone":
                        st.release(pg, endpoint_id, owner, force=True)
                        return out
                    if isinstance(step, float):  # rescheduled: the endpoint waits for its head
                        wait = step
                        break
                    out.delivered += 1
                if lost:  # another drainer holds the endpoint now (our lease expired)
                    return out
                if (wait is not None or len(batch) < min(budget, 50)) and st.release(pg, endpoint_id, owner):
                    out.retry_in_s = wait
                    return out
                # released nothing: new due work arrived (or the batch was full); keep going
        except BaseException:
            with contextlib.suppress(Exception):
                st.release(pg, endpoint_id, owner, force=True)
            raise

    def _one(
        self, pg: psycopg.Connection[Any], ep: Endpoint, owner: str, d: OpenDelivery
    ) -> str | float | None:
        """Deliver one due delivery: None = finished (succeeded/exhausted), float = retry in that many
        seconds, 'gone' = endpoint disabled, 'lost' = lease lost."""
        s = self.settings
        st = self.store
        if d.status == "delivering":
            # the previous lease holder died mid-attempt: log it and treat it as a failed attempt
            delay = self._retry_delay(d.attempts, None)
            st.finish_attempt(
                pg, d.id, "exhausted" if delay is None else "pending", "interrupted", datetime.now(UTC), None,
                error="worker lost during the attempt (lease expired)", delay_s=delay,
            )  # fmt: skip
            if delay is not None and delay > 0:
                return delay
            if delay is None:
                WEBHOOK_EXHAUSTED.inc()
                return None
        attempt = st.start_attempt(pg, ep.id, owner, d.id, s.lease_s)
        if attempt is None:
            return "lost"
        started = datetime.now(UTC)
        result = self.sender.send(ep.url, ep.signing_secrets(), d.message_id, d.body.encode(), d.traceparent)
        WEBHOOK_ATTEMPT_SECONDS.labels(result.outcome).observe(result.latency_ms / 1000.0)
        if result.outcome == "succeeded":
            st.finish_attempt(
                pg, d.id, "succeeded", "succeeded", started, result.latency_ms, result.status_code,
                excerpt=result.excerpt,
            )  # fmt: skip
            if self.on_delivered is not None:
                self.on_delivered(ep.id, d, result)
            return None
        if result.outcome == "gone":
            st.finish_attempt(
                pg, d.id, "failed", "gone", started, result.latency_ms, result.status_code, result.error,
                result.excerpt,
            )  # fmt: skip
            st.disable(pg, ep.id, "receiver answered 410 Gone")
            log.warning("webhook endpoint %s disabled: 410 Gone", ep.id)
            return "gone"
        delay = self._retry_delay(attempt, result)
        st.finish_attempt(
            pg, d.id, "exhausted" if delay is None else "pending", result.outcome, started, result.latency_ms,
            result.status_code, result.error, result.excerpt, delay,
        )  # fmt: skip
        if delay is None:
            WEBHOOK_EXHAUSTED.inc()
            log.warning("webhook delivery %s to %s exhausted after %d attempts", d.message_id, ep.id, attempt)
            return None
        return max(delay, 0.001)
