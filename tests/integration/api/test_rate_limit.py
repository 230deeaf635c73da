"""AGENTFLOW_RATE_LIMIT_RPM limits each API key separately; health stays exempt.

The limiter's buckets refill with time (one token per 60/RPM seconds: tests/unit/test_rate_limit.py
drives a manual clock). Here its clock stands still, so no token comes back while the test counts
requests however slow the machine is: exactly RPM requests pass, the next one is refused with the wait
for one token.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from services.bootstrap import Container
from services.rate_limit import RateLimiter

from .conftest import A, B

RPM = 5


@pytest.fixture()
def limited(app_container: Container) -> Iterator[None]:
    app_container.rate_limiter = RateLimiter(RPM, clock=lambda: 0.0)
    try:
        yield
    finally:
        app_container.rate_limiter = None


def test_rate_limit_per_key(client: TestClient[Any], limited: None) -> None:
    codes = [client.get("/v1/catalog", headers=A).status_code for _ in range(RPM)]
    assert codes == [200] * RPM  # a full bucket: a burst of RPM
    for _ in range(2):  # the RPM+1-th and every later request, until a token comes back
        refused = client.get("/v1/catalog", headers=A)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        # an empty bucket waits for one whole token: 60/RPM seconds
        assert refused.headers["Retry-After"] == str(math.ceil(60 / RPM))
        assert refused.json()["error"]["details"]["retry_after_seconds"] == 60 / RPM
    assert client.get("/v1/catalog", headers=B).status_code == 200
    assert client.get("/v1/health").status_code == 200
    assert client.get("/v1/catalog", headers=A).status_code == 429
