"""Health, liveness and readiness over HTTP, in process (no key needed), and the admin parts that do not
run in this process answering 409."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar.testing import TestClient

from .conftest import A_ADMIN

COMPONENT_FIELDS = {"name", "status", "message", "metrics", "source"}


def test_health_summary(client: TestClient[Any]) -> None:
    r = client.get("/v1/health")
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"status", "checked_at", "components"} and body["status"] in ("healthy", "degraded")
    assert body["checked_at"].endswith("Z") and datetime.fromisoformat(body["checked_at"])
    by_name = {c["name"]: c for c in body["components"]}
    assert {"event_store", "read_models", "projector", "freshness"} <= set(by_name)
    for c in body["components"]:
        assert set(c) == COMPONENT_FIELDS and isinstance(c["message"], str) and isinstance(c["source"], str)
        assert c["status"] in ("healthy", "degraded", "unhealthy")
    assert by_name["event_store"]["status"] == "healthy" and by_name["read_models"]["status"] == "healthy"
    assert "head_position" in by_name["event_store"]["metrics"]
    freshness = by_name["freshness"]["metrics"]
    assert {"last_event_age_seconds", "lag_seconds", "as_of_position"} <= set(freshness)


def test_liveness_and_readiness(client: TestClient[Any]) -> None:
    assert client.get("/v1/health/live").json() == {"status": "alive"}
    ready = client.get("/v1/health/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert [c["name"] for c in ready.json()["components"]] == ["event_store", "read_models"]


def test_parts_that_do_not_run_here_answer_409(client: TestClient[Any]) -> None:
    r = client.get("/v1/admin/sources", headers=A_ADMIN)  # legacy sources are off in this process
    assert r.status_code == 409 and r.json()["error"]["code"] == "sources_disabled"
    r = client.post("/v1/admin/replay/kafka", json={"from_position": 1, "to_position": 2}, headers=A_ADMIN)
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_kafka"
