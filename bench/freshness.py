"""Freshness: command accepted → a read reflects it (read-your-write via min_position)."""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.machine import percentile


def measure_freshness(base: str, key: str, commands: int = 250) -> dict[str, Any]:
    with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=30.0) as api:
        pid = api.post("/v1/products", json={"name": "Fresh", "category": "bench", "price": "1.00",
                                             "currency": "USD"}).json()["product_id"]
        api.post(f"/v1/products/{pid}/restock", json={"quantity": 1_000_000}).raise_for_status()
        user = api.post("/v1/users", json={"name": "Bench"}).json()["user_id"]
        samples: list[float] = []
        for _ in range(commands):
            line = {"product_id": pid, "quantity": 1, "unit_price": "1.00"}
            r = api.post("/v1/orders", json={"user_id": user, "currency": "USD", "lines": [line]})
            r.raise_for_status()
            accepted = time.perf_counter()
            position = r.json()["position"]
            # read-your-write: the server answers once the read model has applied the position
            m = api.get("/v1/metrics/order_count", params={"window": "5m", "min_position": position})
            m.raise_for_status()
            samples.append((time.perf_counter() - accepted) * 1000)
            assert m.json()["meta"]["as_of_position"] >= position
        return {
            "commands": commands,
            "min_position_ms_p50": round(percentile(samples, 50), 2),
            "min_position_ms_p95": round(percentile(samples, 95), 2),
            "min_position_ms_p99": round(percentile(samples, 99), 2),
        }
