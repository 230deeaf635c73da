"""AGENTFLOW_RATE_LIMIT_RPM limits each API key separately; health stays exempt.

The limiter's buckets refill with time (one token per 60/RPM seconds, covered by the unit tests with a
manual clock). Here the server runs with its test-only frozen limiter clock, so no token comes back
while the test counts requests however slow the machine is: exactly RPM requests pass, the next one
is refused with the wait for one token.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx

from services.child_process import AgentFlowProcess
from services.rate_limit import FROZEN_CLOCK_ENV

RPM = 5


def test_rate_limit_per_key(tmp_path: Path) -> None:
    proc = AgentFlowProcess(
        tmp_path / "af",
        "rk1:t1,rk2:t2",
        ("--no-iceberg",),
        env={"AGENTFLOW_RATE_LIMIT_RPM": str(RPM), FROZEN_CLOCK_ENV: "1"},
    )
    proc.start()
    try:
        with httpx.Client(base_url=proc.base, timeout=30) as c:
            codes = [c.get("/v1/catalog", headers={"X-API-Key": "rk1"}).status_code for _ in range(RPM)]
            assert codes == [200] * RPM  # a full bucket: a burst of RPM
            for _ in range(2):  # the RPM+1-th and every later request, until a token comes back
                limited = c.get("/v1/catalog", headers={"X-API-Key": "rk1"})
                assert limited.status_code == 429, limited.text
                assert limited.json()["error"]["code"] == "rate_limited"
                # an empty bucket waits for one whole token: 60/RPM seconds
                assert limited.headers["Retry-After"] == str(math.ceil(60 / RPM))
                assert limited.json()["error"]["details"]["retry_after_seconds"] == 60 / RPM
            assert c.get("/v1/catalog", headers={"X-API-Key": "rk2"}).status_code == 200
            assert c.get("/v1/health").status_code == 200
            assert c.get("/v1/catalog", headers={"X-API-Key": "rk1"}).status_code == 429
    finally:
        proc.stop()
