"""Per-key budgets and the failed-authentication throttle, over the app's routes in process.

The budgets count on a clock that stands still (a window that starts at 600 s), so no request slides out
while the test counts however slow the machine is: exactly the budget passes, then 429. The sliding of
the window itself is tests/unit/test_rate_limits.py's; two API processes sharing one Redis are
tests/integration/test_rate_limits_shared.py's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient
from prometheus_client import REGISTRY

from connectors.rate_windows import MemoryWindows
from services.bootstrap import Container
from services.config import DEFAULT_READ_RPM, DEFAULT_WRITE_RPM
from services.rate_limits import RateLimits

from .conftest import A_ADMIN, A, B

READS, WRITES, FAILURES = 5, 3, 4
NOW = 600.0  # the start of a window
USER = {"name": "limited", "region": "eu-central"}


@pytest.fixture()
def limited(app_container: Container) -> Iterator[None]:
    before = app_container.rate_limits
    app_container.rate_limits = RateLimits(MemoryWindows(lambda: NOW), read_rpm=READS, write_rpm=WRITES,
                                           auth_failures=FAILURES)  # fmt: skip
    try:
        yield
    finally:
        app_container.rate_limits = before


def limits(r: Any) -> tuple[int, int, int]:
    h = r.headers
    return int(h["X-RateLimit-Limit"]), int(h["X-RateLimit-Remaining"]), int(h["X-RateLimit-Reset"])


def test_the_defaults_are_on(client: TestClient[Any], app_container: Container) -> None:
    assert app_container.rate_limits.limits == {"read": DEFAULT_READ_RPM, "write": DEFAULT_WRITE_RPM}
    r = client.get("/v1/catalog", headers=A)
    assert r.status_code == 200 and int(r.headers["X-RateLimit-Limit"]) == DEFAULT_READ_RPM


def test_every_answer_counts_down_then_429(client: TestClient[Any], limited: None) -> None:
    answers = [client.get("/v1/catalog", headers=A) for _ in range(READS - 1)]
    answers.append(client.get("/v1/entity/order/no-such-order", headers=A))  # a 404 spends and says so too
    assert [r.status_code for r in answers] == [200] * (READS - 1) + [404]
    # remaining counts down; the budget is whole again two windows on (NOW's requests slide out by then)
    assert [limits(r) for r in answers] == [(READS, READS - n, int(NOW) + 120) for n in range(1, READS + 1)]
    for _ in range(2):  # refused until the window slides, and a refusal spends nothing
        refused = client.get("/v1/catalog", headers=A)
        assert refused.status_code == 429, refused.text
        error = refused.json()["error"]
        assert error["code"] == "rate_limited" and error["details"]["budget"] == "read"
        # the rest of this window, then until (READS-1)/READS of it slid out of the next one
        wait = 60 + (60 - (READS - 1) * 60 / READS)
        assert error["details"]["retry_after_seconds"] == wait
        assert refused.headers["Retry-After"] == str(int(wait))
        assert limits(refused) == (READS, 0, int(NOW) + 120)
    assert client.get("/v1/catalog", headers=B).status_code == 200  # another key, another budget
    health = client.get("/v1/health")
    assert health.status_code == 200 and "X-RateLimit-Limit" not in health.headers  # probes spend nothing


def test_commands_spend_the_write_budget_not_the_read_one(client: TestClient[Any], limited: None) -> None:
    codes = [client.post("/v1/users", json=USER, headers=A).status_code for _ in range(WRITES + 1)]
    assert codes == [201] * WRITES + [429]
    r = client.post("/v1/users", json=USER, headers=A)
    assert r.json()["error"]["details"]["budget"] == "write" and limits(r)[0] == WRITES
    # admin routes spend the write budget too; reads still have theirs
    assert client.get("/v1/admin/keys", headers=A_ADMIN).status_code == 200  # another key: A_ADMIN's own
    read = client.get("/v1/catalog", headers=A)
    assert read.status_code == 200 and limits(read) == (READS, READS - 1, int(NOW) + 120)


def failures(reason: str) -> float:
    return REGISTRY.get_sample_value("agentflow_auth_failures_total", {"reason": reason}) or 0.0


def test_refused_keys_are_throttled_per_address_and_counted(client: TestClient[Any], limited: None) -> None:
    before = {reason: failures(reason) for reason in ("missing", "invalid", "throttled")}
    codes = [client.get("/v1/catalog", headers={"X-API-Key": f"wrong-{i}"}).status_code
             for i in range(FAILURES - 1)]  # fmt: skip
    codes.append(client.get("/v1/catalog").status_code)  # no key at all counts too
    assert codes == [401] * FAILURES
    refused = client.get("/v1/catalog", headers={"X-API-Key": "wrong-again"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "auth_throttled"
    assert int(refused.headers["Retry-After"]) >= 1
    # a well-formed stored key is not even looked up from this address now
    stored_shape = "af_0123456789ab_" + "x" * 43
    assert client.get("/v1/catalog", headers={"X-API-Key": stored_shape}).status_code == 429
    # a key this process knows is still served from the same address
    assert client.get("/v1/catalog", headers=A).status_code == 200
    assert failures("invalid") - before["invalid"] == FAILURES - 1
    assert failures("missing") - before["missing"] == 1
    assert failures("throttled") - before["throttled"] == 2
