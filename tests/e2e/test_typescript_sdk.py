"""The TypeScript SDK (sdk/typescript) against a real ``agentflow up``: builds it with ``tsc`` (after
``npm ci`` from the committed lockfile when node_modules is missing) and runs its ``node --test`` suite
with the server's URL and key in the environment, plus a second server with small rate-limit budgets.
The dead letters it replays and dismisses are seeded here (invalid events written straight into the
server's Postgres, as in test_deadletter_replay). The suite also checks that src/schema.d.ts is what
openapi-typescript makes of docs/openapi.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agentflow_process import PROJECT_ROOT, AgentFlowProcess
from waiting import eventually

from e2e.conftest import KEY_A, client, limited_server
from e2e.test_deadletter_replay import _insert_bad, _pg_url

pytestmark = pytest.mark.timeout(900)

SDK = PROJECT_ROOT / "sdk" / "typescript"
LIMITED_KEY = "ts-limited-key"
READ_RPM, WRITE_RPM = 60, 10


def _run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=SDK, env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip


@pytest.fixture(scope="module")
def built() -> Path:
    npm = shutil.which("npm")
    assert npm, "Node 20+ with npm is needed for the TypeScript SDK (apt-get install nodejs npm)"
    if not (SDK / "node_modules" / ".package-lock.json").is_file():
        done = _run([npm, "ci", "--no-audit", "--no-fund"])
        assert done.returncode == 0, done.stdout + done.stderr
    done = _run([npm, "run", "build"])
    assert done.returncode == 0, done.stdout + done.stderr
    return SDK


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentFlowProcess]:
    data_dir = tmp_path_factory.mktemp("agentflow-ts-limits")
    with limited_server(data_dir, f"{LIMITED_KEY}:tenant-l", READ_RPM, WRITE_RPM) as srv:
        yield srv


def _seed_dead_letters(server: AgentFlowProcess) -> list[dict[str, Any]]:
    """Two invalid OrderPlaced events: a total that is not the sum of its lines (replayed corrected by the
    TS test) and an unknown currency (dismissed); returned once both are listed as failed."""
    with client(server, KEY_A) as api:
        pid = api.post("/v1/products", json={"name": "TS mug", "category": "kitchen", "price": "7.50",
                                             "currency": "USD"}).json()["product_id"]  # fmt: skip
        user = api.post("/v1/users", json={"name": "TS dead letters"}).json()["user_id"]
        line = {"product_id": pid, "quantity": 2, "unit_price_minor": 750}
        good = {"order_id": "ORD-TSDL-1", "user_id": user, "currency": "USD", "channel": "web",
                "lines": [line], "total_minor": 1500}  # fmt: skip
        url = _pg_url(server)
        mismatch = _insert_bad(url, "ORD-TSDL-1", {**good, "total_minor": 999_999})
        currency = _insert_bad(url, "ORD-TSDL-2", {**good, "order_id": "ORD-TSDL-2", "currency": "XXX"})
        seeded = [
            {"position": mismatch, "order_id": "ORD-TSDL-1", "total": 15.0},
            {"position": currency, "order_id": "ORD-TSDL-2", "total": 15.0},
        ]

        def listed() -> bool:
            params = {"status": "failed", "event_type": "OrderPlaced", "limit": 100}
            r = api.get("/v1/deadletter", params=params)
            positions = {d["position"] for d in r.json()["data"]}
            return all(s["position"] in positions for s in seeded)

        eventually(listed, timeout=120, what="the seeded events among the dead letters")
    return seeded


def test_typescript_sdk_against_a_live_server(
    server: AgentFlowProcess, limited: AgentFlowProcess, built: Path
) -> None:
    env = {
        "AF_URL": server.base, "AF_KEY": KEY_A, "AF_DEADLETTERS": json.dumps(_seed_dead_letters(server)),
        "AF_LIMITED_URL": limited.base, "AF_LIMITED_KEY": LIMITED_KEY,
        "AF_LIMITED_READ_RPM": str(READ_RPM), "AF_LIMITED_WRITE_RPM": str(WRITE_RPM),
    }  # fmt: skip
    tests = sorted(str(p.relative_to(SDK)) for p in (SDK / "dist" / "test").glob("*.test.js"))
    assert "dist/test/sdk.test.js" in tests, tests
    done = _run(["node", "--test", "--enable-source-maps", "--test-reporter=spec", *tests], env, 600)
    report = done.stdout + done.stderr
    print(report)  # each node test and its duration (pytest -s / -rP)
    assert done.returncode == 0, report + "\n--- server log ---\n" + server.tail(3000)
    for line in ("# fail 0", "# skipped 0", "# cancelled 0"):
        assert line in report.replace("ℹ", "#"), report
