"""The demo generator exercises every command and every rejection path against a real server."""

from __future__ import annotations

from agentflow_process import AgentFlowProcess

from e2e.conftest import client
from services.demo import DemoTraffic

EVERY_COMMAND = {
    "/v1/products", "/v1/products/{id}/restock", "/v1/products/{id}/adjust", "/v1/products/{id}/price",
    "/v1/users", "/v1/orders",
    "/v1/orders/{id}/confirm", "/v1/orders/{id}/cancel", "/v1/orders/{id}/ship", "/v1/orders/{id}/deliver",
    "/v1/orders/{id}/refund", "/v1/payments", "/v1/payments/{id}/complete", "/v1/payments/{id}/fail",
    "/v1/sessions/{id}/events",
}  # fmt: skip
REJECTIONS = {
    "insufficient_stock", "validation_failed", "version_conflict", "refund_exceeds_paid", "order_not_paid",
    "stock_below_reserved",
}  # fmt: skip


def test_demo_exercises_every_command_and_rejection(server: AgentFlowProcess, api_key: str) -> None:
    demo = DemoTraffic(server.base, api_key, rate=0, seed=11)
    try:
        demo.seed_catalog()
        for _ in range(1500):
            demo.step()
            if (set(demo.state.accepted) >= EVERY_COMMAND and set(demo.state.error_codes) >= REJECTIONS
                    and demo.state.returns):
                break
    finally:
        demo.client.close()
    assert EVERY_COMMAND - set(demo.state.accepted) == set()
    assert demo.state.returns > 0  # refunds that bring goods back (StockReturned)
    assert REJECTIONS - set(demo.state.error_codes) == set()
    assert demo.state.outcomes.get("500", 0) == 0
    with client(server, api_key) as api:
        # a write after the demo's: read at its position, the demo's orders are all applied
        marker = api.post("/v1/users", json={"name": "after the demo"})
        assert marker.status_code == 201, marker.text
        params = {"window": "1h", "min_position": marker.json()["position"]}
        count = api.get("/v1/metrics/order_count", params=params)
    assert count.status_code == 200, count.text
    assert count.json()["value"] > 0
