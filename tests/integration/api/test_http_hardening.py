"""The front door (services/api/http_guard.py, docs/security.md "HTTP hardening"): the body limit on
Content-Length and on streamed bodies (413 in the error shape), security headers and X-Request-ID on every
answer, the docs page under its own Content-Security-Policy, CORS off by default and per configured origin,
HSTS only over TLS (or behind a proxy trusted to say so); and webhook destinations that are not public
refused by default, in any spelling (docs/security.md "Outbound requests (SSRF)").

Each test serves the module's container through an app built with the HTTP settings it needs; the runtime
is not started (nothing here reads a projection).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from services.api.app import create_app, openapi_document
from services.api.http_guard import API_CSP, DOCS_CSP
from services.api.openapi import REDOC_ORIGIN
from services.bootstrap import Container
from services.config import DEFAULT_MAX_BODY_BYTES, HttpSettings

from .conftest import A

ORIGIN = "https://app.example.com"


@contextmanager
def serving(
    container: Container, base_url: str = "http://testserver.local", **http: Any
) -> Iterator[TestClient[Any]]:
    settings = replace(container.settings, http=HttpSettings(**http))
    app = create_app(replace(container, settings=settings), manage_runtime=False)
    with TestClient(app, base_url=base_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(app_container: Container) -> Iterator[TestClient[Any]]:
    """The app with the default HTTP settings."""
    with serving(app_container) as c:
        yield c


def batch_body(size: int) -> bytes:
    """An empty batch (answered 200 at once) padded to exactly ``size`` bytes."""
    head, tail = b'{"requests": [], "pad": "', b'"}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def assert_security_headers(r: Any, csp: str = API_CSP) -> None:
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["content-security-policy"] == csp
    assert "frame-ancestors 'none'" in csp
    assert re.fullmatch(r"[A-Za-z0-9._:@+/=-]{1,128}", r.headers["x-request-id"])
    assert "strict-transport-security" not in r.headers  # plain http
    assert "access-control-allow-origin" not in r.headers  # no CORS configured


# -- the body limit ------------------------------------------------------------------------------------


def test_the_default_limit_is_one_mebibyte_on_content_length(client: TestClient[Any]) -> None:
    assert DEFAULT_MAX_BODY_BYTES == 1024 * 1024
    at_limit = client.post("/v1/batch", content=batch_body(DEFAULT_MAX_BODY_BYTES), headers=A)
    assert at_limit.status_code == 200, at_limit.text
    over = client.post("/v1/batch", content=batch_body(DEFAULT_MAX_BODY_BYTES + 1), headers=A)
    assert over.status_code == 413, over.text
    body = over.json()
    assert body == {
        "detail": f"request body is larger than {DEFAULT_MAX_BODY_BYTES} bytes",
        "error": {"code": "body_too_large", "message": body["detail"], "details": {"max_bytes": 1048576}},
        "correlation_id": over.headers["x-request-id"],
    }
    assert_security_headers(over)
    # a command route the same (nothing appended: the body is refused before the command runs)
    order = client.post("/v1/orders", content=b"[" + b" " * DEFAULT_MAX_BODY_BYTES + b"]", headers=A)
    assert order.status_code == 413 and order.json()["error"]["code"] == "body_too_large"


def test_the_limit_is_configured(app_container: Container) -> None:
    with serving(app_container, max_body_bytes=4096) as small:
        assert small.post("/v1/batch", content=batch_body(4096), headers=A).status_code == 200
        over = small.post("/v1/batch", content=batch_body(4097), headers=A)
        assert over.status_code == 413 and over.json()["error"]["details"] == {"max_bytes": 4096}
        # reads without a body are untouched
        assert small.get("/v1/health/live").status_code == 200


def _drive(
    app: Litestar, path: str, chunks: list[bytes], headers: list[tuple[bytes, bytes]]
) -> dict[str, Any]:
    """One request through the app's ASGI interface, its body streamed in ``chunks`` without a
    Content-Length (what a chunked transfer looks like to the app)."""
    pending = list(chunks)
    sent: list[Any] = []

    async def receive() -> Any:
        if pending:
            chunk = pending.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(pending)}
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    async def run() -> None:
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
        }  # fmt: skip
        await app(scope, receive, send)  # type: ignore[arg-type]

    return {"sent": sent, "unread": len(pending), "run": run}


def test_a_streamed_body_is_cut_off_at_the_limit(app_container: Container) -> None:
    with serving(app_container, max_body_bytes=4096) as small:
        app: Litestar = small.app  # type: ignore[assignment]
        chunks = [b'{"requests": [], "pad": "'] + [b"x" * 1024] * 63 + [b'"}']
        call = _drive(app, "/v1/batch", chunks, [(b"x-api-key", A["X-API-Key"].encode())])
        small.blocking_portal.call(call["run"])
        start = next(m for m in call["sent"] if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in call["sent"] if m["type"] == "http.response.body")
        assert start["status"] == 413, body
        assert json.loads(body)["error"]["code"] == "body_too_large"
        assert call["unread"] > 50  # stopped reading right after the limit, not at the end of the body
        headers = dict(start["headers"])
        assert headers[b"x-content-type-options"] == b"nosniff" and headers[b"x-request-id"]
        # a streamed body within the limit goes through
        key = [(b"x-api-key", A["X-API-Key"].encode())]
        fits = _drive(app, "/v1/batch", [b'{"requests": ', b"[]}"], key)
        small.blocking_portal.call(fits["run"])
        assert next(m for m in fits["sent"] if m["type"] == "http.response.start")["status"] == 200


def test_every_route_with_a_body_declares_413() -> None:
    doc = openapi_document()
    with_body = 0
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if "requestBody" in op:
                with_body += 1
                assert "413" in op["responses"], (method, path)
                schema = op["responses"]["413"]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}
    assert with_body > 30


# -- security headers and the request id ----------------------------------------------------------------


def test_security_headers_on_every_answer(client: TestClient[Any]) -> None:
    answers = [
        client.get("/v1/health/live"),  # 200
        client.get("/v1/catalog"),  # 401: no key
        client.get("/v1/catalog", headers=A),  # 200
        client.get("/v1/no-such-route"),  # 404
        client.delete("/v1/health/live"),  # 405
        client.get("/v1/catalog", params={"q": "a\x00b"}, headers=A),  # 422 from the NUL guard
        client.post("/v1/batch", content=batch_body(DEFAULT_MAX_BODY_BYTES + 10), headers=A),  # 413
        client.get("/schema/openapi.json"),
    ]
    assert [r.status_code for r in answers] == [200, 401, 200, 404, 405, 422, 413, 200]
    for r in answers:
        assert_security_headers(r)
    assert len({r.headers["x-request-id"] for r in answers}) == len(answers)  # one per request


def test_the_docs_page_renders_under_a_strict_policy(client: TestClient[Any]) -> None:
    page = client.get("/schema")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert_security_headers(page, DOCS_CSP)
    html = page.text
    assert '<redoc spec-url="/schema/openapi.json"></redoc>' in html  # Redoc loads the schema itself
    scripts = re.findall(r"<script[^>]*>", html)
    assert scripts and all("src=" in s for s in scripts)  # no inline script: none needs 'unsafe-inline'
    for src in re.findall(r'<script src="([^"]+)"', html):
        assert src.startswith(REDOC_ORIGIN + "/")
    script_src = DOCS_CSP.split("script-src ", 1)[1].split(";", 1)[0]
    assert script_src == REDOC_ORIGIN  # no 'unsafe-inline', no 'unsafe-eval' for scripts
    assert "connect-src 'self'" in DOCS_CSP and "worker-src blob:" in DOCS_CSP  # the schema; Redoc's search
    assert client.get("/schema/redoc").headers["content-security-policy"] == DOCS_CSP
    assert client.get("/schema/openapi.yaml").status_code == 200
    assert client.get("/schema/swagger").status_code == 404  # pages with inline scripts are not served


MADE_ID = r"[0-9a-f]{16}-[0-9a-f]+"


def test_the_request_id_is_echoed_when_sane_and_made_up_otherwise(client: TestClient[Any]) -> None:
    made = [client.get("/v1/health/live").headers["x-request-id"] for _ in range(2)]
    # this process's random prefix and a counter: unique, not secret
    assert all(re.fullmatch(MADE_ID, m) for m in made) and made[0] != made[1]
    assert made[0].split("-")[0] == made[1].split("-")[0]
    for sane in ("req-42", "4bf92f3577b34da6a3ce929d0e0e4736", "a.b:c@d+e/f=", "x" * 128):
        assert client.get("/v1/health/live", headers={"X-Request-ID": sane}).headers["x-request-id"] == sane
    for insane in ("two words", "x" * 129, "<script>", "", "id;drop"):
        got = client.get("/v1/health/live", headers={"X-Request-ID": insane}).headers["x-request-id"]
        assert got != insane and re.fullmatch(MADE_ID, got)


def test_errors_carry_the_request_id_as_correlation_id(client: TestClient[Any]) -> None:
    r = client.get("/v1/catalog", headers={"X-Request-ID": "req-7"})
    assert r.status_code == 401 and r.json()["correlation_id"] == "req-7"
    r = client.get("/v1/catalog")
    assert r.json()["correlation_id"] == r.headers["x-request-id"]
    nul = client.get("/v1/catalog", params={"q": "\x00"}, headers={**A, "X-Request-ID": "req-8"})
    assert nul.status_code == 422 and nul.json()["correlation_id"] == "req-8"
    # a caller's X-Correlation-ID (a chain of requests) stays the correlation id; the request id is its own
    r = client.get("/v1/catalog", headers={"X-Request-ID": "req-9", "X-Correlation-ID": "flow-1"})
    assert r.json()["correlation_id"] == "flow-1" and r.headers["x-request-id"] == "req-9"


def test_a_command_without_correlation_id_is_correlated_by_its_request_id(client: TestClient[Any]) -> None:
    r = client.post("/v1/users", json={}, headers={**A, "X-Request-ID": "req-cmd-1"})
    assert r.status_code == 201, r.text
    assert r.headers["x-correlation-id"] == "req-cmd-1" and r.headers["x-request-id"] == "req-cmd-1"


# -- CORS -------------------------------------------------------------------------------------------------


def preflight(client: TestClient[Any], origin: str, path: str = "/v1/orders") -> Any:
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    })  # fmt: skip


def test_cors_is_off_by_default(client: TestClient[Any]) -> None:
    refused = preflight(client, ORIGIN)
    assert "access-control-allow-origin" not in refused.headers
    assert "access-control-allow-methods" not in refused.headers
    got = client.get("/v1/catalog", headers={**A, "Origin": ORIGIN})
    assert got.status_code == 200 and "access-control-allow-origin" not in got.headers
    assert "vary" not in got.headers


def test_cors_for_the_configured_origins(app_container: Container) -> None:
    with serving(app_container, cors_origins=(ORIGIN, "http://localhost:3000")) as c:
        pre = preflight(c, ORIGIN)
        assert pre.status_code == 204, pre.text
        assert pre.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in pre.headers["access-control-allow-methods"]
        allowed = {h.strip().lower() for h in pre.headers["access-control-allow-headers"].split(",")}
        assert {"x-api-key", "content-type", "if-match", "idempotency-key", "x-request-id"} <= allowed
        assert pre.headers["access-control-max-age"] == "600" and pre.headers["vary"] == "Origin"
        assert "access-control-allow-credentials" not in pre.headers
        assert_security_headers_without_cors(pre)

        got = c.get("/v1/catalog", headers={**A, "Origin": "http://localhost:3000"})
        assert got.status_code == 200
        assert got.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "X-Request-ID" in got.headers["access-control-expose-headers"]
        assert got.headers["vary"] == "Origin"
        # an error answer to an allowed origin is readable too
        unauthorized = c.get("/v1/catalog", headers={"Origin": ORIGIN})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == ORIGIN

        for other in ("https://evil.example.com", "https://app.example.com:8443", "http://app.example.com"):
            assert "access-control-allow-origin" not in preflight(c, other).headers
            other_get = c.get("/v1/catalog", headers={**A, "Origin": other})
            assert "access-control-allow-origin" not in other_get.headers
            assert other_get.headers["vary"] == "Origin"


def assert_security_headers_without_cors(r: Any) -> None:
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    assert r.headers["content-security-policy"] == API_CSP and r.headers["x-request-id"]


def test_cors_for_any_origin_and_with_credentials(app_container: Container) -> None:
    with serving(app_container, cors_origins=("*",)) as c:
        pre = preflight(c, ORIGIN)
        assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"
        assert "vary" not in pre.headers and "access-control-allow-credentials" not in pre.headers
        assert c.get("/v1/health/live", headers={"Origin": "https://x.example"}).headers[
            "access-control-allow-origin"
        ] == "*"
    with serving(app_container, cors_origins=(ORIGIN,), cors_credentials=True) as c:
        assert preflight(c, ORIGIN).headers["access-control-allow-credentials"] == "true"
        got = c.get("/v1/health/live", headers={"Origin": ORIGIN})
        assert got.headers["access-control-allow-credentials"] == "true"
        assert got.headers["access-control-allow-origin"] == ORIGIN


# -- HSTS -------------------------------------------------------------------------------------------------


def test_hsts_only_over_tls_or_behind_a_trusted_proxy(
    app_container: Container, client: TestClient[Any]
) -> None:
    hsts = "strict-transport-security"
    assert hsts not in client.get("/v1/health/live").headers
    # a caller cannot turn it on by saying so, unless the operator trusts the proxy in front
    assert hsts not in client.get("/v1/health/live", headers={"X-Forwarded-Proto": "https"}).headers
    with serving(app_container, base_url="https://testserver.local") as tls:
        assert tls.get("/v1/health/live").headers[hsts] == "max-age=31536000"
    with serving(app_container, trust_forwarded_proto=True) as proxied:
        assert proxied.get("/v1/health/live", headers={"X-Forwarded-Proto": "https"}).headers[hsts]
        assert proxied.get("/v1/health/live", headers={"X-Forwarded-Proto": "HTTPS, http"}).headers[hsts]
        assert hsts not in proxied.get("/v1/health/live", headers={"X-Forwarded-Proto": "http"}).headers
        assert hsts not in proxied.get("/v1/health/live").headers


# -- outbound destinations through the API (connectors/ssrf.py; the default: no opt-in) --------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://2130706433/", "http://0177.0.0.1/", "http://0x7f.1/",
    "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "http://10.0.0.1/", "http://169.254.169.254/",
])  # fmt: skip
def test_webhook_destinations_are_refused_by_default(client: TestClient[Any], url: str) -> None:
    r = client.post("/v1/webhooks", json={"url": url}, headers=A)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid_destination" and "non-public" in r.json()["detail"]
