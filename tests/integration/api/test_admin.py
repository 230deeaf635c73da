"""The admin endpoints over HTTP, in process: read-model rebuilds (operator keys only), the Kafka range
replay (409 in the embedded deployment) and legacy sources (with their reconcile loop running, no source
declared). Read/write keys are valid but not admin keys: 403; admin keys cannot rebuild: 403."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from waiting import eventually
from webhook_helpers import append_order

from services.bootstrap import Container, build

from .conftest import A_ADMIN, KEYS, OPS, A, B, in_process_settings

REBUILD_FIELDS = {
    "name", "state", "phase", "started_at", "finished_at", "target_position", "position", "events", "error",
    "elapsed_seconds", "events_per_second", "percent",
}  # fmt: skip


@pytest.fixture(scope="module")
def app_container(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    settings = in_process_settings(Path(tmp_path_factory.mktemp("api-admin")), legacy_sources_enabled=True)
    container = build(settings, database, KEYS)
    container.clickhouse.drop_all()
    container.clickhouse.ensure_schema()
    try:
        yield container
    finally:
        container.close()


def test_only_admin_keys(client: TestClient[Any]) -> None:
    for path in ("/v1/admin/projections/clickhouse/rebuild", "/v1/admin/projections/all/rebuild"):
        for method in ("POST", "GET"):
            r = client.request(method, path, headers=A_ADMIN)
            assert r.status_code == 403 and r.json()["error"]["details"]["required_scope"] == "operator", path
    for method, path in (
        ("POST", "/v1/admin/projections/clickhouse/rebuild"),
        ("GET", "/v1/admin/projections/clickhouse/rebuild"),
        ("POST", "/v1/admin/replay/kafka"),
        ("GET", "/v1/admin/sources"),
        ("GET", "/v1/admin/sources/shop"),
        ("POST", "/v1/admin/sources"),
        ("DELETE", "/v1/admin/sources/shop"),
    ):
        body = {"json": {}} if method == "POST" else {}
        for key in (A, B):
            forbidden = client.request(method, path, headers=key, **body)  # type: ignore[arg-type]
            assert forbidden.status_code == 403 and forbidden.json()["error"]["code"] == "forbidden", path
        assert client.request(method, path, **body).status_code == 401, path  # type: ignore[arg-type]


def test_rebuild_the_serving_read_model(client: TestClient[Any], app_container: Container) -> None:
    for _ in range(3):
        append_order(app_container.store, "tenant-a")
    unknown = client.post("/v1/admin/projections/nope/rebuild", headers=OPS)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    lake = client.post("/v1/admin/projections/iceberg/rebuild", headers=OPS)  # the lake is off here
    assert lake.status_code == 409 and lake.json()["error"]["code"] == "not_projected_here"
    assert client.get("/v1/admin/projections/iceberg/rebuild", headers=OPS).status_code == 409

    started = client.post("/v1/admin/projections/clickhouse/rebuild", headers=OPS)
    assert started.status_code == 202, started.text
    [progress] = started.json()["rebuilds"]
    assert set(progress) == REBUILD_FIELDS and progress["name"] == "clickhouse"

    def done() -> dict[str, Any] | None:
        r = client.get("/v1/admin/projections/all/rebuild", headers=OPS)
        assert r.status_code == 200, r.text
        [p] = r.json()["rebuilds"]
        assert p["state"] != "failed", p
        return p if p["state"] == "done" else None

    finished = eventually(done, 120, what="the rebuild finished")
    assert finished["percent"] == 100.0 and finished["events"] >= 3 and set(finished) == REBUILD_FIELDS


def test_kafka_replay_needs_kafka(client: TestClient[Any]) -> None:
    r = client.post("/v1/admin/replay/kafka", json={"from_position": 1, "to_position": 2}, headers=A_ADMIN)
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_kafka"


def test_kafka_replay_of_another_tenant_is_an_operators(client: TestClient[Any]) -> None:
    body = {"from_position": 1, "to_position": 2, "tenant_id": "tenant-b"}
    r = client.post("/v1/admin/replay/kafka", json=body, headers=A_ADMIN)
    assert r.status_code == 403 and r.json()["error"]["code"] == "cross_tenant", r.text
    r = client.post("/v1/admin/replay/kafka", json=body, headers=OPS)
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_kafka", r.text


def test_legacy_sources(client: TestClient[Any]) -> None:
    assert client.get("/v1/admin/sources", headers=A_ADMIN).json() == {"sources": []}
    missing = client.get("/v1/admin/sources/shop", headers=A_ADMIN)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    gone = client.delete("/v1/admin/sources/shop", headers=A_ADMIN)
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"
    bad = client.post("/v1/admin/sources", json={"name": "shop", "kind": "oracle"}, headers=A_ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_source", bad.text
    assert client.post("/v1/admin/sources", content=b"not json", headers=A_ADMIN).status_code == 422
    assert client.get("/v1/admin/sources", headers=A_ADMIN).json() == {"sources": []}  # nothing half-added
