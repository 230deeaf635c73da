"""Read-your-writes through the read cache under concurrent writers and readers (real `agentflow up`).

Every read carries ``min_position`` = the position of an order just accepted; it must count every
order accepted (response received) before the read started whose position is <= that one, even
while other threads keep invalidating, recomputing and caching the same metric and entities. A read
the server answers 503 (not applied within its bound) is asked again by the client (the protocol), so
only a wrong value is a failure, never a slow one.
"""

from __future__ import annotations

import threading
from typing import Any

from agentflow_process import AgentFlowProcess

from e2e.conftest import KEY_A as KEY
from e2e.conftest import client


def test_min_position_reads_never_miss_applied_orders(server: AgentFlowProcess) -> None:
    with client(server, KEY) as api:
        pid = api.post(
            "/v1/products", json={"name": "RYW", "category": "ryw", "price": "1.00", "currency": "USD"}
        ).json()["product_id"]
        restocked = api.post(f"/v1/products/{pid}/restock", json={"quantity": 100_000})
        restocked.raise_for_status()
        params = {"window": "1h", "min_position": restocked.json()["position"]}
        base = api.get("/v1/metrics/order_count", params=params).json()["value"]

    lock = threading.Lock()
    accepted: list[int] = []  # positions of accepted orders (all tenant-a orders of this test)
    user_orders: dict[str, list[int]] = {}
    failures: list[str] = []
    stop = threading.Event()

    def writer(w: int) -> None:
        with client(server, KEY) as api:
            user = api.post("/v1/users", json={"name": f"W{w}"}).json()["user_id"]
            for i in range(12):
                r = api.post(
                    "/v1/orders",
                    json={
                        "user_id": user,
                        "currency": "USD",
                        "lines": [{"product_id": pid, "quantity": 1, "unit_price": "1.00"}],
                    },
                )
                if r.status_code != 201:
                    failures.append(f"order: {r.status_code} {r.text}")
                    return
                position = r.json()["position"]
                with lock:
                    accepted.append(position)
                    user_orders.setdefault(user, []).append(position)
                    known = [p for p in accepted if p <= position]
                    mine = [p for p in user_orders[user] if p <= position]
                params: dict[str, Any] = {"window": "1h", "min_position": position}
                m = api.get("/v1/metrics/order_count", params=params)
                if m.status_code != 200 or m.json()["value"] < base + len(known):
                    failures.append(f"order_count at {position}: {m.text} < {base + len(known)}")
                if i % 3 == 0:
                    e = api.get(f"/v1/entity/user/{user}", params={"min_position": position})
                    if e.status_code != 200 or e.json()["data"]["total_orders"] < len(mine):
                        failures.append(f"user {user} at {position}: {e.text} < {len(mine)}")

    def reader() -> None:  # keeps the cache busy: refreshes and single flights race the writers
        with client(server, KEY) as api:
            while not stop.is_set():
                api.get("/v1/metrics/order_count", params={"window": "1h"})
                for user in list(user_orders):
                    api.get(f"/v1/entity/user/{user}")

    writers = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in [*readers, *writers]:
        t.start()
    try:
        for t in writers:
            t.join(300)  # bounds a hang
    finally:
        stop.set()
        for t in readers:
            t.join(60)
    assert not [t for t in [*writers, *readers] if t.is_alive()], "a client thread hung"
    assert not failures, failures[:5]
    assert len(accepted) == 48
