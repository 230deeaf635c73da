"""Alert evaluation shared by two serving processes (two ``agentflow up`` on one Postgres), their alert
workers on one Redis broker, then on dramatiq-postgres: a rule is flipped between firing and resolved
while both processes' requests and the leader's sweeps (every 0.2 s) race to evaluate it. Every
transition is recorded once and in sequence, and notified once (deduplicated by ``webhook-id``, as a
receiver does). Then the leading process is killed with SIGKILL: the other one's scheduler takes
over, and an event alone (no request) fires the rule again. Both processes beat into
``/v1/health``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentflow_process import AgentFlowProcess
from redis_server import RedisServer
from secret_keys import TEST_SECRET_KEYS
from sqlalchemy import make_url
from sqlalchemy.engine import Engine
from waiting import eventually
from webhook_receiver import Receiver

from connectors.database import make_engine

pytestmark = pytest.mark.integration

KEY = "fleet-key"
LOW, HIGH = 0, 1000  # thresholds: the order count (>= 1) is above LOW and never above HIGH
FLIPS = 6


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class Fleet:
    def __init__(self, first: AgentFlowProcess, second: AgentFlowProcess, admin: Engine, db: str) -> None:
        self.first, self.second, self.admin, self.db = first, second, admin, db

    def api(self, srv: AgentFlowProcess) -> httpx.Client:
        return httpx.Client(base_url=srv.base, headers={"X-API-Key": KEY}, timeout=30.0)

    def scheduler_sessions(self) -> int:
        """Sessions holding (or just trying) the alert-scheduler lock in this test's database."""
        with self.admin.connect() as conn:
            return int(
                conn.exec_driver_sql(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = %(d)s AND application_name = 'agentflow-alert-scheduler'",
                    {"d": self.db},
                ).scalar_one()
            )


@pytest.fixture(params=["redis", "postgres"])
def fleet(
    request: pytest.FixtureRequest,
    pg_cluster: Any,
    redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Fleet]:
    db = f"alerts_{uuid.uuid4().hex[:10]}"  # a database of its own: two runtimes project from it
    admin = make_engine(pg_cluster.url, pool_size=1, max_overflow=0)
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {db}")
    url = make_url(pg_cluster.url).set(database=db).render_as_string(hide_password=False)
    env = {
        "AGENTFLOW_DATABASE_URL": url, "AGENTFLOW_SECRET_KEYS": ",".join(TEST_SECRET_KEYS),
        "AGENTFLOW_ICEBERG": "0", "AGENTFLOW_LEGACY_SOURCES": "0", "AGENTFLOW_ALERT_SWEEP_S": "0.2",
        "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "1", "AGENTFLOW_WEBHOOK_RETRY_SCHEDULE": "0,0.5,0.5,0.5,0.5",
        "AGENTFLOW_WEBHOOK_TIMEOUT_S": "15", "AGENTFLOW_RATE_LIMIT_RPM": "0",
    }  # fmt: skip
    if request.param == "redis":
        env["AGENTFLOW_REDIS_URL"] = redis.url
    root = tmp_path_factory.mktemp(f"alert-fleet-{request.param}")
    first = AgentFlowProcess(Path(root / "first"), f"{KEY}:tenant-a", env=env)
    second = AgentFlowProcess(Path(root / "second"), f"{KEY}:tenant-a", env=env)
    f = Fleet(first, second, admin, db)
    try:
        first.start()
        # the first process leads the schedule before the second one starts
        eventually(lambda: f.scheduler_sessions() == 1, what="the first process leading the alert schedule")
        second.start()
        yield f
    finally:
        for srv in (second, first):
            if srv.proc is not None:
                print(srv.tail(3000))
            srv.stop()
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql(f"DROP DATABASE {db} WITH (FORCE)")
        admin.dispose()


def place_order(api: httpx.Client, user: str, product: str) -> int:
    r = api.post(
        "/v1/orders",
        json={"user_id": user, "currency": "USD", "channel": "web",
              "lines": [{"product_id": product, "quantity": 1, "unit_price": "10.00"}]},
    )  # fmt: skip
    assert r.status_code == 201, r.text
    return int(r.json()["position"])


def state_of(api: httpx.Client, alert_id: str, state: str) -> dict[str, Any] | None:
    got = api.get(f"/v1/alerts/{alert_id}").json()
    return got if got["state"] == state else None


def test_two_serving_processes_evaluate_each_transition_once(fleet: Fleet, receiver: Receiver) -> None:
    path = f"/fleet-{uuid.uuid4().hex[:8]}"
    with fleet.api(fleet.first) as one, fleet.api(fleet.second) as two:
        # both processes' worker threads beat, each consuming the alerts queue
        def beating() -> dict[str, Any] | None:
            health = one.get("/v1/health").json()
            workers = next(c for c in health["components"] if c["name"] == "workers")
            beats = workers["metrics"]["workers"]
            return beats if len(beats) == 2 and all("alerts" in b["queues"] for b in beats.values()) else None

        beats = eventually(beating, what="two worker processes in /v1/health")
        assert sorted(b["pid"] for b in beats.values()) == sorted(
            p.proc.pid for p in (fleet.first, fleet.second) if p.proc is not None
        )

        ep = one.post("/v1/webhooks", json={"url": receiver.base + path, "event_types": ["alert.*"]})
        assert ep.status_code == 201, ep.text
        user = one.post("/v1/users", json={"name": "Ada", "region": "eu-central"})
        assert user.status_code == 201, user.text
        product = one.post(
            "/v1/products", json={"name": "Pen", "category": "office", "price": "10.00", "currency": "USD"}
        )
        assert product.status_code == 201, product.text
        user_id, product_id = user.json()["user_id"], product.json()["product_id"]
        assert one.post(f"/v1/products/{product_id}/restock", json={"quantity": 10}).status_code in (200, 201)
        place_order(one, user_id, product_id)
        # both read models hold the order before the rule exists (a rule measured on either sees 1)
        for api in (one, two):
            eventually(lambda api=api: api.get("/v1/metrics/order_count?window=1h").json()["value"] == 1)
        rule = one.post(
            "/v1/alerts",
            json={"name": "any order", "metric": "order_count", "window": "1h", "condition": "above",
                  "threshold": LOW, "endpoint_id": ep.json()["id"]},
        )  # fmt: skip
        assert rule.status_code == 201, rule.text
        alert_id = rule.json()["id"]
        eventually(lambda: state_of(one, alert_id, "firing"), what="the rule firing")

        # flips through either process, while the leader sweeps the rule five times a second
        for i in range(FLIPS):
            api = (two, one)[i % 2]
            threshold, state = (HIGH, "resolved") if i % 2 == 0 else (LOW, "firing")
            r = api.patch(f"/v1/alerts/{alert_id}", json={"threshold": threshold})
            assert r.status_code == 200, r.text
            eventually(lambda s=state: state_of(one, alert_id, s), what=f"flip {i}: {state}")

        # the leader dies mid-run; the survivor's scheduler takes over: an event alone fires the rule
        fleet.first.stop(kill=True)
        r = two.patch(f"/v1/alerts/{alert_id}", json={"threshold": 1})
        assert r.status_code == 200, r.text
        eventually(lambda: state_of(two, alert_id, "resolved"), what="resolved at threshold 1")
        place_order(two, user_id, product_id)  # 2 > 1, and no rule update asks for an evaluation
        eventually(lambda: state_of(two, alert_id, "firing"), what="fired by the event, after failover")
        eventually(lambda: fleet.scheduler_sessions() == 1, what="one scheduler leading again")

        history = two.get(f"/v1/alerts/{alert_id}/history", params={"limit": 500}).json()["data"]

    transitions = FLIPS + 3  # the first firing, the flips, resolved at 1, fired by the event
    chain = sorted(history, key=lambda h: h["seq"])
    assert [h["seq"] for h in chain] == list(range(1, transitions + 1))
    expected = [("inactive", "firing")] + [
        ("firing", "resolved") if i % 2 == 0 else ("resolved", "firing") for i in range(transitions - 1)
    ]
    assert [(h["from_state"], h["to_state"]) for h in chain] == expected
    assert all(len(h["notifications"]) == 1 for h in chain)
    sent = [h["notifications"][0] for h in chain]
    assert len(set(sent)) == transitions

    # every notification arrived, each transition once (a delivery cut short by the kill may repeat
    # with the same webhook-id: receivers deduplicate on it)
    def distinct() -> dict[str, Any] | None:
        got = {r.headers["webhook-id"]: r.json() for r in receiver.at(path)}
        return got if len(got) >= transitions else None

    got = eventually(distinct, what=f"{transitions} distinct notifications")
    assert set(got) == set(sent)
    assert sorted(b["data"]["seq"] for b in got.values()) == list(range(1, transitions + 1))
