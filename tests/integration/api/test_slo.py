"""GET /v1/slo in process: the objectives over the app's own measurements (the latency recorder wraps
the app the composition root built)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import ok, product


def _slos(client: TestClient[Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    body = ok(client.get("/v1/slo", headers=A))
    return body, {s["name"]: s for s in body["slos"]}


def test_slo_reports_what_the_app_measured(client: TestClient[Any]) -> None:
    _, pos = product(client, A, "Sloth")
    before, slos0 = _slos(client)
    for _ in range(3):
        ok(client.get("/v1/metrics/order_count", params={"window": "1h", "min_position": pos}, headers=B))
    product(client, A, "Slower")
    rejected = client.post("/v1/products", json={"name": ""}, headers=A)
    assert rejected.status_code == 422
    body, slos = _slos(client)
    # a request is counted as its answer leaves: the first /v1/slo and the 3 reads since
    reads = slos["api_read_latency"]["events"]["total"] - slos0["api_read_latency"]["events"]["total"]
    assert reads == 4
    commands = (
        slos["api_command_latency"]["events"]["total"] - slos0["api_command_latency"]["events"]["total"]
    )
    assert commands == 3  # register, restock, and the rejected one
    rates, rates0 = body["error_rates_1h"], before["error_rates_1h"]
    assert rates["command_rejections"] == rates0["command_rejections"] + 1
    assert rates["server_errors"] == rates0["server_errors"] == 0 and rates["server_error_rate"] == 0.0
    assert {
        "api_read_latency",
        "api_command_latency",
        "api_query_latency",
        "freshness",
        "api_availability",
    } <= set(slos)
    read = slos["api_read_latency"]
    assert read["threshold"] == 100.0 and read["threshold_unit"] == "ms" and read["target"] == 0.99
    assert read["percentiles"]["p50"] is not None and read["sli"] == "latency:read"
    assert slos["freshness"]["events"]["total"] >= 2 and slos["freshness"]["threshold_unit"] == "s"
    assert "percentiles" not in slos["api_availability"]
    for s in body["slos"]:
        assert 0.0 <= s["error_budget_remaining"] <= 1.0 and 0.0 <= s["current"] <= 1.0
        assert s["status"] in ("healthy", "at_risk", "breached") and set(s["burn_rates"]) == {"1h", "6h"}
        assert s["window_days"] == 1 and s["window_hours"] == 24
        assert s["events"]["good"] + s["events"]["bad"] == s["events"]["total"]
    assert body["as_of_position"] >= pos and body["freshness_now_seconds"] >= 0
    assert body["measured_since"].endswith("Z") and body["computed_at"].endswith("Z")
    assert client.get("/v1/slo").status_code == 401
