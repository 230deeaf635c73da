"""Dead letters and read-model rebuild through HTTP on a real embedded `agentflow up`.

An invalid event is written straight into the server's Postgres (its URL is in the server's log),
shows up in GET /v1/deadletter with its reason, is replayed with a corrected payload and moves the
metric (read at the replay's position); another is dismissed; stats count them. Then
`agentflow projections rebuild clickhouse` rebuilds the serving read model while the API keeps
answering, and every metric is identical before and after. The tests share one server in any order:
counts are compared with the values read at the start of the test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from typing import Any

import httpx
import pytest
from agentflow_process import PROJECT_ROOT, AgentFlowProcess
from sqlalchemy import text
from waiting import eventually

from connectors.database import make_engine
from e2e.conftest import KEY_A, client

pytestmark = pytest.mark.timeout(600)

METRICS = ("order_count", "revenue", "avg_order_value")


def _pg_url(server: AgentFlowProcess) -> str:
    found = re.search(r"Postgres ready at (\S+)", server.log.read_text(errors="replace"))
    assert found, "the server did not log its Postgres URL"
    return found.group(1)


def _read(api: httpx.Client, path: str, position: int, **params: Any) -> dict[str, Any]:
    r = api.get(path, params={"min_position": position, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _metrics(api: httpx.Client, position: int) -> dict[str, Any]:
    return {m: _read(api, f"/v1/metrics/{m}", position, window="1h")["value"] for m in METRICS}


def _place(api: httpx.Client, user: str, pid: str, qty: int) -> int:
    lines = [{"product_id": pid, "quantity": qty, "unit_price": "7.50"}]
    r = api.post("/v1/orders", json={"user_id": user, "currency": "USD", "lines": lines})
    assert r.status_code == 201, r.text
    return int(r.json()["position"])


def _insert_bad(url: str, order_id: str, data: dict[str, Any]) -> int:
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_current_xact_id()"))  # the store's rule: xid before position
            pos = conn.execute(
                text(
                    "INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_type, "
                    "schema_version, data) VALUES ('tenant-a', 'order', :sid, 1, 'OrderPlaced', 2, "
                    "CAST(:data AS jsonb)) RETURNING position"
                ),
                {"sid": order_id, "data": json.dumps(data)},
            ).scalar_one()
    finally:
        engine.dispose()
    return int(pos)


def _letter_at(api: httpx.Client, position: int) -> dict[str, Any]:
    r = api.get("/v1/deadletter", params={"status": "failed", "event_type": "OrderPlaced", "limit": 100})
    assert r.status_code == 200, r.text
    found = [d for d in r.json()["data"] if d["position"] == position]
    assert len(found) == 1, r.json()
    return found[0]


def test_dead_letter_corrected_replayed_and_visible_in_the_metric(
    api: httpx.Client, api_b: httpx.Client, server: AgentFlowProcess
) -> None:
    start = api.get("/v1/deadletter/stats").json()
    start_stats = start["by_status"]
    start_dismissed = [
        d["id"] for d in api.get("/v1/deadletter", params={"status": "dismissed"}).json()["data"]
    ]
    pid = api.post("/v1/products", json={"name": "Mug", "category": "kitchen", "price": "7.50",
                                         "currency": "USD"}).json()["product_id"]  # fmt: skip
    assert api.post(f"/v1/products/{pid}/restock", json={"quantity": 1000}).status_code == 200
    user = api.post("/v1/users", json={"name": "Ada"}).json()["user_id"]
    before = _metrics(api, _place(api, user, pid, 1))

    url = _pg_url(server)
    line = {"product_id": pid, "quantity": 2, "unit_price_minor": 750}
    good = {"order_id": "ORD-DL-1", "user_id": user, "currency": "USD", "channel": "web", "lines": [line],
            "total_minor": 1500}  # fmt: skip
    bad_pos = _insert_bad(url, "ORD-DL-1", {**good, "total_minor": 999_999})
    other_pos = _insert_bad(url, "ORD-DL-2", {**good, "order_id": "ORD-DL-2", "currency": "XXX"})
    after = _place(api, user, pid, 1)
    assert after > other_pos
    mid = _metrics(api, after)
    assert mid["order_count"] == before["order_count"] + 1  # the bad events moved nothing
    assert mid["revenue"] == pytest.approx(before["revenue"] + 7.5)

    letter = _letter_at(api, bad_pos)
    assert letter["stage"] == "validate" and letter["pipeline"] == "embedded"
    assert "sum of lines" in letter["reason"] and letter["reason_class"] == "total_mismatch"
    assert api.get(f"/v1/deadletter/{letter['id']}").json()["record"]["data"]["total_minor"] == 999_999
    assert api_b.get(f"/v1/deadletter/{letter['id']}").status_code == 404  # tenant-scoped
    assert all(d["id"] != letter["id"] for d in api_b.get("/v1/deadletter").json()["data"])
    stats = api.get("/v1/deadletter/stats").json()
    assert stats["by_status"]["failed"] == start_stats.get("failed", 0) + 2
    mismatches = start["by_reason_class"].get("total_mismatch", 0)
    assert stats["by_reason_class"]["total_mismatch"] == mismatches + 1

    # still invalid -> 422, nothing appended, still failed
    r = api.post(f"/v1/deadletter/{letter['id']}/replay", json={"data": {**good, "total_minor": 1}})
    assert r.status_code == 422, r.text
    assert api.get(f"/v1/deadletter/{letter['id']}").json()["status"] == "failed"

    r = api.post(f"/v1/deadletter/{letter['id']}/replay", json={"data": good})
    assert r.status_code == 200, r.text
    replayed = r.json()
    assert replayed["status"] == "replayed" and replayed["appended"] is True
    position = replayed["position"]
    assert position > after and replayed["replay_position"] == position
    now = _metrics(api, position)
    assert now["order_count"] == mid["order_count"] + 1
    assert now["revenue"] == pytest.approx(mid["revenue"] + 15.0)
    order = api.get("/v1/entity/order/ORD-DL-1", params={"min_position": position})
    assert order.status_code == 200, order.text

    again = api.post(f"/v1/deadletter/{letter['id']}/replay", json={"data": good})
    assert again.status_code == 200 and again.json()["appended"] is False
    assert again.json()["position"] == position
    assert _metrics(api, position)["order_count"] == now["order_count"]

    other = _letter_at(api, other_pos)
    assert other["reason_class"] == "currency"
    r = api.post(f"/v1/deadletter/{other['id']}/dismiss", json={"note": "test data"})
    assert r.status_code == 200 and r.json()["status"] == "dismissed", r.text
    assert api.post(f"/v1/deadletter/{other['id']}/replay", json={}).status_code == 409
    listed = api.get("/v1/deadletter", params={"status": "dismissed"}).json()["data"]
    assert sorted(d["id"] for d in listed) == sorted([*start_dismissed, other["id"]])
    stats = api.get("/v1/deadletter/stats").json()["by_status"]
    assert stats["replayed"] == start_stats.get("replayed", 0) + 1
    assert stats["dismissed"] == start_stats.get("dismissed", 0) + 1


def test_rebuild_clickhouse_keeps_serving_and_changes_no_metric(
    api: httpx.Client, server: AgentFlowProcess
) -> None:
    pid = api.post("/v1/products", json={"name": "Pot", "category": "kitchen", "price": "7.50",
                                         "currency": "USD"}).json()["product_id"]  # fmt: skip
    assert api.post(f"/v1/products/{pid}/restock", json={"quantity": 1000}).status_code == 200
    user = api.post("/v1/users", json={"name": "Lin"}).json()["user_id"]
    position = 0
    for q in range(1, 21):
        position = _place(api, user, pid, q % 3 + 1)
    before = _metrics(api, position)
    entity = _read(api, f"/v1/entity/user/{user}", position)["data"]

    errors: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        with client(server, KEY_A) as c:
            while not stop.is_set():
                for m in METRICS:
                    r = c.get(f"/v1/metrics/{m}", params={"window": "1h"})
                    if r.status_code != 200:
                        errors.append(f"{m}: {r.status_code} {r.text[:200]}")
                    elif r.json()["value"] != before[m]:
                        errors.append(f"{m}: {r.json()['value']} != {before[m]} during the rebuild")
                    reads += 1

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        eventually(lambda: reads > 0 or errors, what="the reader answered before the rebuild")
        done = subprocess.run(
            [sys.executable, "-m", "services.cli", "projections", "rebuild", "clickhouse",
             "--url", server.base, "--api-key", KEY_A, "--interval", "0.3"],
            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "events/s" in done.stdout and "clickhouse rebuilt" in done.stdout, done.stdout
    assert not errors, errors[:5]
    assert reads > 0
    progress = api.get("/v1/admin/projections/clickhouse/rebuild").json()["rebuilds"][0]
    assert progress["state"] == "done" and progress["percent"] == 100.0 and progress["events"] > 0
    assert _metrics(api, position) == before
    assert _read(api, f"/v1/entity/user/{user}", position)["data"] == entity
    # the projector goes on writing into the swapped-in tables
    later = _place(api, user, pid, 1)
    assert _metrics(api, later)["order_count"] == before["order_count"] + 1
