"""The front door every HTTP answer passes (docs/security.md, "HTTP hardening").

``HttpGuard`` is the app's one bare ASGI wrapper (no middleware stack; each wrapper layer costs every
request a coroutine frame and every ``send`` another, so the per-request concerns share this one and its
one ``send`` wrapper, which is a plain function handing back the server's own awaitable). It composes:

- the NUL guard (services/api/text_guard.py): a NUL in the path or query string is answered 422 here,
  one in a JSON body is raised from ``receive`` as the route reads it;
- the measurement (services/slo.py): each request's method, route template (Litestar leaves the matched
  one in the scope), latency class, answered status and duration, for the SLOs and for Prometheus;
- the access log line (services/logs.py): every answer but a 2xx, and AGENTFLOW_ACCESS_LOG_SAMPLE of those;
- the headers below: per request it reads a few request headers in one pass and adds a precomputed
  header list to the answer's ``http.response.start``:

- security headers on every answer: ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY``,
  ``Referrer-Policy: no-referrer`` and a Content-Security-Policy: ``default-src 'none'`` for the API
  (JSON is never a document), the docs page's own policy for ``/schema`` (what Redoc needs, nothing else);
- the caller's ``X-RateLimit-*`` headers, when authentication left them in the request's state;
- ``X-Request-ID``: the caller's own if it is sane (1-128 characters of ``A-Z a-z 0-9 . _ : @ + / = -``),
  else a new one; it is also the ``correlation_id`` of error bodies when no ``X-Correlation-ID`` was sent;
- ``Strict-Transport-Security`` when the request came over TLS, or, with
  ``AGENTFLOW_TRUST_FORWARDED_PROTO=1``, when the proxy in front says ``X-Forwarded-Proto: https``;
- CORS, only for the origins ``AGENTFLOW_CORS_ORIGINS`` lists (off by default): a preflight from such an
  origin is answered here (204, before authentication: a preflight carries no key); any other answer to
  it gets ``Access-Control-Allow-Origin`` and the headers a script may read.

The body limit (``AGENTFLOW_MAX_BODY_BYTES``) is Litestar's ``request_max_body_size``: enforced on the
announced Content-Length before anything is read and on the bytes actually streamed (a chunked body),
only for routes that read a body; the 413 is answered in the error shape (services/api/errors.py).

A CORS preflight is answered before the NUL guard and is not measured; every other answer (the NUL
guard's own 422 too) gets the headers and is measured.
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Awaitable
from random import random
from time import perf_counter
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from readmodels.slo import SloTracker
from services.api.openapi import REDOC_ORIGIN
from services.api.text_guard import BODY_METHODS, nul_checked, nul_in_url, refuse_nul
from services.config import ConfigError, HttpSettings
from services.logs import REQUEST_SCOPE, log_access
from services.slo import RequestMeasure, route_class

Headers = list[tuple[bytes, bytes]]

# the scope-state entry where authentication leaves the caller's X-RateLimit-* headers (dependencies.py)
RATE_LIMIT_HEADERS = "ratelimit_headers"

_SANE_ID = re.compile(rb"[A-Za-z0-9._:@+/=-]{1,128}")

# the docs page (services/api/openapi.py DocsPage): Redoc from its CDN, the schema from /schema/openapi.json,
# its search in a blob: worker, styles it injects itself
API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
DOCS_CSP = (
    f"default-src 'none'; script-src {REDOC_ORIGIN}; style-src 'unsafe-inline'; img-src 'self' data:; "
    "font-src data:; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'"
)
HSTS = (b"strict-transport-security", b"max-age=31536000")
_COMMON: Headers = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
# request headers the API reads, and response headers a script may read
CORS_ALLOW_HEADERS = (
    "Content-Type, X-API-Key, If-Match, Idempotency-Key, X-Request-ID, X-Correlation-ID, X-Causation-ID, "
    "X-Actor, Last-Event-ID"
)
CORS_EXPOSE_HEADERS = (
    "ETag, Retry-After, X-Request-ID, X-Correlation-ID, Idempotent-Replayed, X-RateLimit-Limit, "
    "X-RateLimit-Remaining, X-RateLimit-Reset"
)
CORS_MAX_AGE_S = 600


# a request id needs to be unique, not secret: this process's random prefix and a counter (os.urandom per
# request was a tenth of the event loop's time under load)
_ID_PREFIX = os.urandom(8).hex().encode() + b"-"
_ID_COUNTER = itertools.count(1)


def new_request_id() -> bytes:
    return _ID_PREFIX + b"%x" % next(_ID_COUNTER)


def sane_request_id(value: bytes | None) -> bytes:
    """The caller's request id if it is one we can echo, else a new one."""
    return value if value is not None and _SANE_ID.fullmatch(value) else new_request_id()


class HttpGuard:
    __slots__ = (
        "_any_origin", "_api", "_cors", "_docs", "_docs_paths", "_origins", "_preflight", "_sample",
        "_simple", "_trust_proto", "_vary", "app", "measure", "tracker",
    )  # fmt: skip

    def __init__(
        self, app: ASGIApp, settings: HttpSettings, docs_paths: frozenset[str], tracker: SloTracker
    ) -> None:
        if "*" in settings.cors_origins and settings.cors_credentials:  # HttpSettings refuses it too
            raise ConfigError("AGENTFLOW_CORS_ORIGINS=* cannot be combined with AGENTFLOW_CORS_CREDENTIALS=1")
        self.app = app
        self.tracker = tracker
        self.measure = RequestMeasure(tracker)
        self._api: Headers = [*_COMMON, (b"content-security-policy", API_CSP.encode())]
        self._docs: Headers = [*_COMMON, (b"content-security-policy", DOCS_CSP.encode())]
        self._docs_paths = docs_paths
        self._trust_proto = settings.trust_forwarded_proto
        self._sample = settings.access_log_sample
        self._cors = bool(settings.cors_origins)
        self._any_origin = settings.cors_origins == ("*",)
        self._origins = frozenset(o.encode() for o in settings.cors_origins)
        # answers differ by Origin (allowed ones get Access-Control-Allow-Origin): caches must key on it
        self._vary: Headers = [(b"vary", b"Origin")] if self._cors and not self._any_origin else []
        credentials: Headers = (
            [(b"access-control-allow-credentials", b"true")] if settings.cors_credentials else []
        )
        self._simple: Headers = [
            (b"access-control-expose-headers", CORS_EXPOSE_HEADERS.encode()), *credentials
        ]
        self._preflight: Headers = [
            (b"access-control-allow-methods", CORS_METHODS.encode()),
            (b"access-control-allow-headers", CORS_ALLOW_HEADERS.encode()),
            (b"access-control-max-age", str(CORS_MAX_AGE_S).encode()),
            *credentials,
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = origin = proto = None
        preflight = False
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value
            elif name == b"origin":
                origin = value
            elif name == b"x-forwarded-proto":
                proto = value
            elif name == b"access-control-request-method":
                preflight = True
        request_id = sane_request_id(rid)
        state: dict[str, Any] = scope.setdefault("state", {})  # type: ignore[typeddict-item,assignment]
        state["request_id"] = request_id.decode()
        headers = self._docs if scope["path"] in self._docs_paths else self._api
        headers = [*headers, (b"x-request-id", request_id)]
        if scope.get("scheme") == "https" or (
            self._trust_proto and proto is not None and proto.split(b",", 1)[0].strip().lower() == b"https"
        ):
            headers.append(HSTS)
        if self._cors:
            headers += self._vary
            if origin is not None and (self._any_origin or origin in self._origins):
                allow = (b"access-control-allow-origin", b"*" if self._any_origin else origin)
                if preflight and scope["method"] == "OPTIONS":  # type: ignore[typeddict-item]
                    await self._answer_preflight(send, [*headers, allow, *self._preflight])
                    return
                headers += (allow, *self._simple)

        status = 500  # unless the app answers

        def send_guarded(message: Message) -> Awaitable[None]:
            # not a coroutine: the server's own awaitable is handed back (no frame per send)
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                limits = state.get(RATE_LIMIT_HEADERS, ())
                message["headers"] = [*message.get("headers", ()), *headers, *limits]
            return send(message)

        method: str = scope["method"]  # type: ignore[typeddict-item]
        cls = route_class(method, scope["path"])
        started = perf_counter()
        request_scope = REQUEST_SCOPE.set(scope)  # log lines of this request carry its ids (services/logs.py)
        try:
            fields = nul_in_url(scope)
            if fields:
                await refuse_nul(scope, send_guarded, fields)
            else:
                if method in BODY_METHODS:
                    receive = nul_checked(receive)
                await self.app(scope, receive, send_guarded)
        finally:
            if cls is not None:  # streams and health probes are not measured
                self.measure.record(method, scope.get("path_template"), cls, status, perf_counter() - started)
            # the access line: every answer but a 2xx, and a sampled share of those (decided before any work)
            if status // 100 != 2 or (self._sample and random() < self._sample):
                log_access(scope, status, perf_counter() - started)
            REQUEST_SCOPE.reset(request_scope)

    @staticmethod
    async def _answer_preflight(send: Send, headers: Headers) -> None:
        headers = [*headers, (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
