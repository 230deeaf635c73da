"""AGENTFLOW_RATE_LIMIT_RPM limits each API key separately; health stays exempt."""

from __future__ import annotations

from pathlib import Path

import httpx

from services.child_process import AgentFlowProcess


def test_rate_limit_per_key(tmp_path: Path) -> None:
    proc = AgentFlowProcess(
        tmp_path / "af", "rk1:t1,rk2:t2", ("--no-iceberg",), env={"AGENTFLOW_RATE_LIMIT_RPM": "5"}
    )
    proc.start()
    try:
        with httpx.Client(base_url=proc.base, timeout=10) as c:
            codes = [c.get("/v1/catalog", headers={"X-API-Key": "rk1"}).status_code for _ in range(7)]
            assert codes[:5] == [200] * 5
            limited = c.get("/v1/catalog", headers={"X-API-Key": "rk1"})
            assert limited.status_code == 429
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.json()["error"]["code"] == "rate_limited"
            assert c.get("/v1/catalog", headers={"X-API-Key": "rk2"}).status_code == 200
            assert c.get("/v1/health").status_code == 200
    finally:
        proc.stop()
