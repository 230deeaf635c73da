"""Two API processes (``agentflow up`` on one Postgres) sharing one Redis: a key's budget and an address's
failed-authentication budget hold across both, whichever process a request reaches.

The budgets are sliding one-minute windows on Redis's clock: requests in one fixed window count exactly
(so exactly the limit passes); if the burst happens to straddle a window boundary, the previous window
still weighs almost fully, and the test checks the shared counts instead of an exact number.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_client
from agentflow_process import AgentFlowProcess
from redis_server import RedisServer
from secret_keys import TEST_SECRET_KEYS
from sqlalchemy import make_url

from connectors.database import make_engine

pytestmark = pytest.mark.integration

KEY = "shared-limit-key"
READS, FAILURES = 10, 3


@pytest.fixture(scope="module")
def two_apis(
    pg_cluster: Any, redis: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AgentFlowProcess, AgentFlowProcess]]:
    name = f"limits_{uuid.uuid4().hex[:10]}"  # a database of its own: two runtimes project from it
    admin = make_engine(pg_cluster.url, pool_size=1, max_overflow=0)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    url = make_url(pg_cluster.url).set(database=name).render_as_string(hide_password=False)
    env = {
        "AGENTFLOW_DATABASE_URL": url, "AGENTFLOW_RATE_LIMIT_REDIS_URL": redis.url,
        "AGENTFLOW_RATE_LIMIT_READ_RPM": str(READS), "AGENTFLOW_AUTH_FAILURES_PER_MINUTE": str(FAILURES),
        "AGENTFLOW_SECRET_KEYS": ",".join(TEST_SECRET_KEYS), "AGENTFLOW_ICEBERG": "0",
        "AGENTFLOW_WORKERS": "0", "AGENTFLOW_ALERTS": "0", "AGENTFLOW_LEGACY_SOURCES": "0",
    }  # fmt: skip
    root = tmp_path_factory.mktemp("shared-limits")
    first = AgentFlowProcess(Path(root / "first"), f"{KEY}:tenant-a", env=env)
    second = AgentFlowProcess(Path(root / "second"), f"{KEY}:tenant-a", env=env)
    try:
        first.start()
        second.start()
        yield first, second
    finally:
        second.stop()
        first.stop()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()


def window_counts(redis: RedisServer, prefix: str) -> dict[bytes, int]:
    client = redis_client.Redis.from_url(redis.url)
    try:
        return {k: int(client.get(k) or 0) for k in client.scan_iter(f"agentflow:ratelimit:{prefix}*")}
    finally:
        client.close()


def test_a_key_budget_holds_across_two_processes(
    two_apis: tuple[AgentFlowProcess, AgentFlowProcess], redis: RedisServer
) -> None:
    answers: list[tuple[int, int]] = []  # (process, status)
    for n in itertools.count():
        which = n % 2
        r = httpx.get(f"{two_apis[which].base}/v1/catalog", headers={"X-API-Key": KEY}, timeout=30)
        answers.append((which, r.status_code))
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "rate_limited" and int(r.headers["Retry-After"]) >= 1
            # the other process refuses too: one budget
            other = httpx.get(f"{two_apis[1 - which].base}/v1/catalog", headers={"X-API-Key": KEY},
                              timeout=30)  # fmt: skip
            assert other.status_code == 429 and other.headers["X-RateLimit-Remaining"] == "0"
            break
        assert r.status_code == 200, r.text
        assert int(r.headers["X-RateLimit-Limit"]) == READS
        assert n < 2 * READS, "each process kept a budget of its own"
    passed = [which for which, status in answers if status == 200]
    assert set(passed) == {0, 1}  # both processes served some of them
    counts = window_counts(redis, "read:")
    assert sum(counts.values()) == len(passed)  # every request either process let through, counted once
    if len(counts) == 1:  # within one fixed window: exactly the budget
        assert len(passed) == READS


def test_failed_authentication_is_throttled_across_two_processes(
    two_apis: tuple[AgentFlowProcess, AgentFlowProcess], redis: RedisServer
) -> None:
    codes = []
    for n in range(2 * FAILURES):
        r = httpx.get(f"{two_apis[n % 2].base}/v1/catalog", headers={"X-API-Key": f"bad-{n}"}, timeout=30)
        codes.append(r.status_code)
        if r.status_code == 429:
            assert r.json()["error"]["code"] == "auth_throttled"
            break
    assert codes[-1] == 429 and set(codes[:-1]) == {401}
    counts = window_counts(redis, "auth:")
    assert sum(counts.values()) == len(codes) - 1
    if len(counts) == 1:
        assert len(codes) - 1 == FAILURES
