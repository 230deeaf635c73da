"""The distributed deployment end to end, every engine real:

Postgres -> Debezium on Kafka Connect -> Kafka (KRaft) -> Flink job (mini-cluster) -> serving loader ->
ClickHouse (chdb in the API process) -> the API; and Flink -> Iceberg (JDBC catalog in Postgres).

The embedded suite's scenarios (exactness and tenant isolation, the order lifecycle, idempotency
and If-Match, inventory, metric and entity ``as_of``) run unchanged against this path (imported
below, with the ``server`` fixture overridden), then: an invalid event written straight into the store
is dead-lettered and moves nothing, and Flink and Kafka Connect are killed and restarted mid-stream
without losing or double-counting anything. The first run on a fresh machine fetches ~400 MB of jars
and the PyFlink venv.

The tests run in any order on one tenant: each compares tenant-wide values with those read at its
start, and the lake test writes the orders it looks for. Nothing waits for time to pass: reads at a
position ask again until the pipeline has applied it (its latency is a benchmark figure), and the
kill test moves on when the writer has placed more orders or Flink has completed a new checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from agentflow_process import AgentFlowProcess
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec
from redis_server import RedisServer
from secret_keys import TEST_SECRET_KEYS
from sqlalchemy import text
from waiting import eventually

from connectors.database import make_engine
from connectors.postgres_cluster import PostgresCluster
from e2e.conftest import KEY_A, KEY_B, client
from e2e.test_embedded_end_to_end import (  # noqa: F401  (collected here against this server)
    test_commands_move_metrics_and_entities_exactly,
    test_entity_as_of_folds_the_store_up_to_that_instant,
    test_errors_idempotency_and_if_match,
    test_order_lifecycle_payment_and_refund,
)
from e2e.test_inventory import test_shipping_returns_and_adjustments_move_stock  # noqa: F401
from e2e.test_prometheus_metrics import scrape
from e2e.test_time_travel import (  # noqa: F401
    test_metric_as_of_is_the_value_before_a_later_cancellation_and_refund,
)
from migrations import run_migrations
from services.distributed.flink_job import latest_checkpoint
from services.distributed.stack import DistributedStack

pytestmark = pytest.mark.timeout(1800)

LAG = "agentflow_kafka_consumer_lag_messages"
PATIENCE_S = 300.0  # bounds a hang of the pipeline (a restarted Flink catches up), not a latency


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(tmp_path_factory.mktemp("dist-pg") / "pg", settings={"shared_buffers": "128MB"})
    cluster.start()
    run_migrations(cluster.url)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def stack(postgres: PostgresCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DistributedStack]:
    if shutil.which("java") is None:
        pytest.fail("java is required for the distributed deployment (Kafka, Connect, Flink)")
    s = DistributedStack(tmp_path_factory.mktemp("dist-stack"), postgres.url, say=print)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def _api_process(
    stack: DistributedStack, postgres: PostgresCluster, redis: RedisServer, data_dir: Path, **env: str
) -> AgentFlowProcess:
    """An API process of the distributed deployment on the module's stack. Every API process's alert
    workers and rate-limit budgets share the module's Redis; the read budget is far above what the
    tests' polling reads."""
    args = ("--distributed", "--external", "--kafka-bootstrap", stack.bootstrap,
            "--database-url", postgres.url)  # fmt: skip
    env = {
        "AGENTFLOW_REDIS_URL": redis.url, "AGENTFLOW_RATE_LIMIT_READ_RPM": "600000",
        "AGENTFLOW_SECRET_KEYS": ",".join(TEST_SECRET_KEYS), "AGENTFLOW_WEBHOOK_ALLOW_PRIVATE": "1", **env,
    }  # fmt: skip
    return AgentFlowProcess(data_dir, f"{KEY_A}:tenant-a,{KEY_B}:tenant-b", extra_args=args, env=env)


@pytest.fixture(scope="module")
def server(
    stack: DistributedStack, postgres: PostgresCluster, redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentFlowProcess]:  # fmt: skip
    with _api_process(stack, postgres, redis, tmp_path_factory.mktemp("dist-api")).running() as srv:
        yield srv


@pytest.fixture(scope="module")
def second_server(
    server: AgentFlowProcess, stack: DistributedStack, postgres: PostgresCluster, redis: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[AgentFlowProcess]:  # fmt: skip
    """A second API host: read models of its own, fed by a loader group of its own."""
    second = _api_process(stack, postgres, redis, tmp_path_factory.mktemp("dist-api-2"),
                          AGENTFLOW_LOADER_GROUP="agentflow-serving-loader-second-host")  # fmt: skip
    with second.running() as srv:
        yield srv


@pytest.fixture()
def api(server: AgentFlowProcess) -> Iterator[httpx.Client]:
    with client(server, KEY_A, patience=PATIENCE_S) as c:
        yield c


@pytest.fixture()
def api_b(server: AgentFlowProcess) -> Iterator[httpx.Client]:
    with client(server, KEY_B, patience=PATIENCE_S) as c:
        yield c


def _read(api: httpx.Client, path: str, position: int, **params: Any) -> dict[str, Any]:
    """GET at ``min_position`` (the client asks again while the pipeline has not applied it)."""
    r = api.get(path, params={"min_position": position, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _place(api: httpx.Client, user: str, pid: str, qty: int, price: str) -> dict[str, Any]:
    r = api.post(
        "/v1/orders",
        json={
            "user_id": user,
            "currency": "USD",
            "lines": [{"product_id": pid, "quantity": qty, "unit_price": price}],
        },
    )
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def _shop(api: httpx.Client, stock: int = 100_000) -> tuple[str, str]:
    pid = api.post(
        "/v1/products", json={"name": "Mug", "category": "kitchen", "price": "7.50", "currency": "USD"}
    )
    assert pid.status_code == 201, pid.text
    product = pid.json()["product_id"]
    assert api.post(f"/v1/products/{product}/restock", json={"quantity": stock}).status_code == 200
    user = api.post("/v1/users", json={"name": "Grace"}).json()["user_id"]
    return product, user


def test_invalid_event_is_dead_lettered_and_moves_no_metric(
    api: httpx.Client, postgres: PostgresCluster
) -> None:
    product, user = _shop(api)
    pos = _place(api, user, product, 2, "7.50")["position"]
    before = {
        m: _read(api, f"/v1/metrics/{m}", pos, window="1h")["value"] for m in ("order_count", "revenue")
    }

    # an OrderPlaced whose total is not the sum of its lines, written past the command checks
    bad = {
        "order_id": "ORD-BAD-1", "user_id": user, "currency": "USD", "channel": "web",
        "lines": [{"product_id": product, "quantity": 2, "unit_price_minor": 750}], "total_minor": 999_999,
    }  # fmt: skip
    engine = make_engine(postgres.url)
    try:
        with engine.begin() as conn:
            conn.execute(text("SELECT pg_current_xact_id()"))  # the store's rule: xid before position
            bad_position, bad_id = conn.execute(
                text(
                    "INSERT INTO events (tenant_id, stream_type, stream_id, stream_version, event_type, "
                    "schema_version, data) VALUES ('tenant-a', 'order', 'ORD-BAD-1', 1, 'OrderPlaced', 2, "
                    "CAST(:data AS jsonb)) RETURNING position, event_id::text"
                ),
                {"data": json.dumps(bad)},
            ).one()
        # a valid write after it: reading at its position proves the bad one was passed, not waited on
        after = _place(api, user, product, 1, "7.50")["position"]
        assert after > bad_position
        count = _read(api, "/v1/metrics/order_count", after, window="1h")
        revenue = _read(api, "/v1/metrics/revenue", after, window="1h")
        assert count["value"] == before["order_count"] + 1
        assert revenue["value"] == pytest.approx(before["revenue"] + 7.5)
        assert api.get("/v1/entity/order/ORD-BAD-1").status_code == 404
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT pipeline, stage, reason, position, status FROM dead_letters WHERE event_id = :id"
                ),
                {"id": bad_id},
            ).all()
    finally:
        engine.dispose()
    assert len(rows) == 1, rows
    pipeline, stage, reason, position, status = rows[0]
    assert (pipeline, stage, position, status) == ("distributed", "validate", bad_position, "failed")
    assert "total_minor" in reason and "sum of lines" in reason


def _kafka_view(bootstrap: str, group: str, topics: list[str]) -> dict[str, tuple[int, int]]:
    """Straight from the broker (admin API, not the statistics the gauge reads): per topic, the sum of
    the partitions' end offsets and of end minus ``group``'s committed offset."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    meta = admin.list_topics(timeout=30)
    parts = [TopicPartition(t, p) for t in topics for p in meta.topics[t].partitions]
    ends = {(tp.topic, tp.partition): r.result().offset
            for tp, r in admin.list_offsets({tp: OffsetSpec.latest() for tp in parts}).items()}  # fmt: skip
    request = [ConsumerGroupTopicPartitions(group, parts)]
    committed = admin.list_consumer_group_offsets(request)[group].result().topic_partitions
    done = {(tp.topic, tp.partition): tp.offset for tp in committed}
    out: dict[str, tuple[int, int]] = {}
    for (topic, partition), end in ends.items():
        total, lag = out.get(topic, (0, 0))
        offset = done.get((topic, partition), -1)
        out[topic] = (total + end, lag + end - (offset if offset >= 0 else 0))
    return out


def test_kafka_consumer_lag_is_scraped_as_the_broker_sees_it(
    api: httpx.Client, server: AgentFlowProcess, stack: DistributedStack, postgres: PostgresCluster
) -> None:
    """``agentflow_kafka_consumer_lag_messages`` of the serving loader's group, per topic, is what the
    broker's own offsets say; the messages behind it are one per event written."""
    group = f"agentflow-serving-loader-{socket.gethostname()}"  # the default: one group per host
    topics = ["agentflow.serving", "agentflow.deadletter"]
    engine = make_engine(postgres.url)
    try:
        with engine.connect() as conn:
            first = conn.execute(text("SELECT coalesce(max(position), 0) FROM events")).scalar_one()
        # the pipeline is at rest after the earlier tests: every event so far has its one message
        _read(api, "/v1/metrics/order_count", first, window="1h")
        before = _kafka_view(stack.bootstrap, group, topics)
        product, user = _shop(api)
        last = _place(api, user, product, 3, "2.00")["position"]
        _read(api, "/v1/metrics/order_count", last, window="1h")  # the loader applied it
        with engine.connect() as conn:
            written = conn.execute(
                text("SELECT count(*) FROM events WHERE position > :a AND position <= :b"),
                {"a": first, "b": last},
            ).scalar_one()
    finally:
        engine.dispose()
    assert written >= 4  # product, restock, user, order

    def agree() -> tuple[dict[str, float], dict[str, tuple[int, int]]] | None:
        samples, _ = scrape(server)
        view = _kafka_view(stack.bootstrap, group, topics)
        keys = {t: (LAG, frozenset({"group": group, "topic": t}.items())) for t in topics}
        if not all(k in samples for k in keys.values()):
            return None
        gauge = {t: samples[keys[t]] for t in topics}
        same = all(gauge[t] == view[t][1] for t in topics)
        return (gauge, view) if same and sum(gauge.values()) == 0 else None

    gauge, view = eventually(agree, timeout=PATIENCE_S, interval=0.5, what="gauge and broker agree, lag 0")
    produced = sum(view[t][0] - before[t][0] for t in topics)
    assert produced == written, (produced, written, before, view)  # one message per event (Flink -> Kafka)


def test_flink_temp_files_stay_in_its_run_dir(stack: DistributedStack) -> None:
    """The planner jar Flink extracts on every start (43 MB) is in the job's own temp dir, not /tmp, and
    every engine JVM is told so (a killed JVM deletes nothing: /tmp collected one per start)."""
    tmp = stack.flink.tmp_dir
    assert stack.flink.jvm is not None
    jvm = Path(f"/proc/{stack.flink.jvm}")
    assert f"-Djava.io.tmpdir={tmp}".encode() in (jvm / "cmdline").read_bytes().split(b"\0")
    planner = [p for p in tmp.glob("flink-table-planner_*.jar") if p.stat().st_size > 10_000_000]
    assert planner, sorted(p.name for p in tmp.iterdir())
    held = {os.readlink(fd) for fd in (jvm / "fd").iterdir() if fd.is_symlink()}
    jars_held = [f for f in held if "flink-table-planner_" in f]
    assert jars_held and all(Path(f).parent == tmp for f in jars_held), jars_held
    for process in (stack.broker.process, stack.connect.process):
        assert process is not None and process.pid is not None
        argv = Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
        assert f"-Djava.io.tmpdir={process.tmp_dir}".encode() in argv


def test_flink_and_connect_killed_mid_stream_lose_and_double_count_nothing(
    api: httpx.Client, server: AgentFlowProcess, stack: DistributedStack
) -> None:
    product, user = _shop(api)
    start_pos = _place(api, user, product, 1, "1.00")["position"]
    base_count = _read(api, "/v1/metrics/order_count", start_pos, window="1h")["value"]
    base_revenue = Decimal(str(_read(api, "/v1/metrics/revenue", start_pos, window="1h")["value"]))

    placed: list[tuple[str, int]] = []  # (order id, position)
    errors: list[str] = []
    stop = threading.Event()

    def writer() -> None:
        with client(server, KEY_A) as c:
            while not stop.is_set():
                try:
                    body = _place(c, user, product, 1, "2.00")
                    placed.append((body["order_id"], body["position"]))
                except Exception as e:  # noqa: BLE001 - reported by the assertion below
                    errors.append(repr(e))
                stop.wait(0.02)  # paces the writer (and ends it at once when stopped); nothing syncs on it

    def more_orders(n: int, while_: str) -> int:
        """Wait until the writer has placed ``n`` more orders; the index of the first of them."""
        first = len(placed)
        eventually(
            lambda: len(placed) >= first + n or errors, timeout=PATIENCE_S, what=f"{n} orders {while_}"
        )
        assert not errors, errors[:3]
        return first

    def applied(index: int) -> None:
        """The pipeline has applied the writer's order ``index`` (and everything before it)."""
        oid, pos = placed[index]
        assert _read(api, f"/v1/entity/order/{oid}", pos)["data"]["status"] == "pending"

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        assert stack.flink is not None and stack.flink.proc is not None
        flink = stack.flink
        applied(more_orders(5, "while every engine runs") + 4)
        # a checkpoint completed after Flink worked on the writer's orders: the restart resumes from it
        seen = latest_checkpoint(flink.checkpoint_dir)
        eventually(
            lambda: latest_checkpoint(flink.checkpoint_dir) not in (None, seen),
            timeout=PATIENCE_S,
            what="a new Flink checkpoint",
        )
        assert flink.proc is not None
        os.killpg(flink.proc.pid, signal.SIGKILL)  # crash: no savepoint, no final checkpoint
        flink.stop()
        more_orders(10, "while Flink is down")
        flink.start()
        assert flink.restored_from is not None, "Flink must resume from its checkpoint"
        applied(more_orders(5, "after Flink restarted") + 4)

        assert stack.connect is not None and stack.connect.process is not None
        connect_pid = stack.connect.process.pid
        assert connect_pid is not None
        os.kill(connect_pid, signal.SIGKILL)  # Debezium re-sends everything after its last flushed offset
        stack.connect.stop()
        more_orders(10, "while Connect is down")
        stack.start_connect()
        more_orders(10, "after Connect restarted")
    finally:
        stop.set()
        thread.join(timeout=60)
    assert not thread.is_alive(), "the writer hung"
    assert not errors, errors[:3]
    assert len(placed) > 20
    last = max(p for _, p in placed)
    count = _read(api, "/v1/metrics/order_count", last, window="1h")
    revenue = _read(api, "/v1/metrics/revenue", last, window="1h")
    assert count["value"] == base_count + len(placed)
    assert Decimal(str(revenue["value"])) == base_revenue + 2 * len(placed)
    for oid, pos in placed[:: max(1, len(placed) // 10)]:
        assert _read(api, f"/v1/entity/order/{oid}", pos)["data"]["status"] == "pending"


def _valid_event_ids(postgres: PostgresCluster) -> set[str]:
    """The store's events that were not dead-lettered: what the lake must hold."""
    engine = make_engine(postgres.url)
    try:
        with engine.connect() as conn:
            return set(
                conn.execute(
                    text(
                        "SELECT event_id::text FROM events "
                        "WHERE event_id::text NOT IN (SELECT event_id FROM dead_letters)"
                    )
                ).scalars()
            )
    finally:
        engine.dispose()


def _lake_event_ids(catalog: Any) -> list[str]:
    ids = catalog.load_table("agentflow.events").scan(selected_fields=("event_id",)).to_arrow()
    return list(ids.column("event_id").to_pylist())


def test_iceberg_lake_holds_every_valid_event(
    api: httpx.Client, postgres: PostgresCluster, stack: DistributedStack
) -> None:
    """Flink's Iceberg sink commits on checkpoints into the JDBC catalog that pyiceberg reads."""
    from connectors.iceberg_sink import make_catalog

    # this test's own orders: one cancelled, one paid and refunded
    product, user = _shop(api)
    cancelled = _place(api, user, product, 1, "7.50")["order_id"]
    assert api.post(f"/v1/orders/{cancelled}/cancel", json={}).status_code == 200
    refunded = _place(api, user, product, 2, "7.50")["order_id"]
    assert api.post(f"/v1/orders/{refunded}/confirm").status_code == 200
    pay = api.post(
        "/v1/payments", json={"order_id": refunded, "amount": "15.00", "currency": "USD", "method": "card"}
    )
    assert pay.status_code == 201, pay.text
    assert api.post(f"/v1/payments/{pay.json()['payment_id']}/complete").status_code == 200
    last = api.post(f"/v1/orders/{refunded}/refund", json={"amount": "15"})
    assert last.status_code == 200, last.text
    assert _read(api, f"/v1/entity/order/{refunded}", last.json()["position"])["data"]["status"] == "refunded"

    valid = _valid_event_ids(postgres)
    catalog = make_catalog(postgres.url, Path(stack.run_dir))
    wanted = {(cancelled, "OrderPlaced"), (cancelled, "OrderCancelled"), (refunded, "OrderRefunded")}

    def lake() -> tuple[list[str], Any] | None:
        """The lake once it holds every valid event of the store and this test's order history."""
        event_ids = _lake_event_ids(catalog)
        history = catalog.load_table("agentflow.orders_history").scan().to_arrow()
        got = set(zip(history.column("order_id").to_pylist(), history.column("event_type").to_pylist(),
                      strict=True))  # fmt: skip
        return (event_ids, history) if valid <= set(event_ids) and wanted <= got else None

    event_ids, history = eventually(lake, timeout=PATIENCE_S, interval=1.0, what="the lake holds every event")
    assert set(event_ids) == valid, "a dead-lettered event reached the lake"
    assert len(event_ids) == len(set(event_ids)), "an event reached the lake twice"
    assert len(set(zip(history.column("order_id").to_pylist(), history.column("version").to_pylist(),
                       strict=True))) == history.num_rows  # fmt: skip


def test_lake_maintenance_on_the_tables_flink_writes(
    api: httpx.Client, postgres: PostgresCluster, stack: DistributedStack
) -> None:
    """``agentflow lake maintain``'s run (services/lake_job.py) on Flink's Iceberg tables while Flink
    keeps committing: the events table's small files are compacted and old snapshots expired, every
    valid event stays in the lake exactly once, and Flink's commits after it land as before."""
    from connectors.iceberg_sink import make_catalog
    from connectors.lake_maintenance import MaintenancePolicy
    from services.lake_job import run_maintenance

    catalog = make_catalog(postgres.url, Path(stack.run_dir))
    product, user = _shop(api)

    def caught_up() -> bool:
        """Every valid event of the store is in the lake."""
        return _valid_event_ids(postgres) <= set(_lake_event_ids(catalog))

    # two orders in two Flink commits: the events table has at least two data files of this test's own
    for _ in range(2):
        oid = _place(api, user, product, 1, "4.00")["order_id"]
        eventually(caught_up, timeout=PATIENCE_S, interval=1.0, what=f"{oid} in the lake")
    events = catalog.load_table("agentflow.events")
    files_before = len(list(events.scan().plan_files()))
    assert files_before >= 2

    # metadata files keep their grace: one Flink may be about to swap in must not go
    policy = MaintenancePolicy(older_than_s=0.0, retain_last=1)
    report = run_maintenance(postgres.url, policy)
    assert report is not None, "another maintenance run held the lock"
    by_table = {t.table: t for t in report.tables}
    done = by_table["events"]
    assert done.skipped is None and done.rows_after == done.rows_before
    assert done.rewritten_files >= 2 and done.data_files_after < done.data_files_before
    assert done.expired_snapshots >= 1

    # Flink commits on after the maintenance snapshot; the lake still holds each valid event once
    after = _place(api, user, product, 1, "4.00")["order_id"]
    eventually(caught_up, timeout=PATIENCE_S, interval=1.0, what=f"{after} (after maintenance) in the lake")
    valid, event_ids = _valid_event_ids(postgres), _lake_event_ids(catalog)
    assert set(event_ids) == valid and len(event_ids) == len(valid)


def test_two_api_hosts_share_the_alert_fleet_on_redis(
    api: httpx.Client, server: AgentFlowProcess, second_server: AgentFlowProcess
) -> None:
    """Two API processes of the distributed deployment, each with its own read models, evaluate alerts
    through one Redis queue: each transition is recorded and notified (a delivery row) exactly once,
    whichever host evaluated, and an applied event alone (no rule update) triggers an evaluation."""
    with client(second_server, KEY_A, patience=PATIENCE_S) as two:

        def beating() -> dict[str, Any] | None:
            health = api.get("/v1/health").json()
            beats = next(c for c in health["components"] if c["name"] == "workers")["metrics"]["workers"]
            alerts = {b["pid"] for b in beats.values() if "alerts" in b["queues"]}
            pids = {p.proc.pid for p in (server, second_server) if p.proc is not None}
            return beats if alerts == pids else None

        eventually(beating, what="both API processes' alert workers in /v1/health")
        product, user = _shop(api)
        position = _place(api, user, product, 1, "2.00")["position"]
        # the tenant's order count over the hour, as both hosts serve it once they applied the order
        count = _read(api, "/v1/metrics/order_count", position, window="1h")["value"]
        assert _read(two, "/v1/metrics/order_count", position, window="1h")["value"] == count
        ep = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/alerts", "event_types": ["alert.*"]})
        assert ep.status_code == 201, ep.text
        rule = api.post(
            "/v1/alerts",
            json={"name": "orders", "metric": "order_count", "window": "1h", "condition": "above",
                  "threshold": 0, "endpoint_id": ep.json()["id"]},
        )  # fmt: skip
        assert rule.status_code == 201, rule.text
        alert_id = rule.json()["id"]

        def state(c: httpx.Client, want: str) -> bool:
            return bool(c.get(f"/v1/alerts/{alert_id}").json()["state"] == want)

        eventually(lambda: state(api, "firing"), what="firing")
        flips = 4
        for i in range(flips):  # updates through either host
            c, threshold, want = (two, 10**9, "resolved") if i % 2 == 0 else (api, 0, "firing")
            assert c.patch(f"/v1/alerts/{alert_id}", json={"threshold": threshold}).status_code == 200
            eventually(lambda c=c, want=want: state(c, want), what=f"flip {i}: {want}")
        assert two.patch(f"/v1/alerts/{alert_id}", json={"threshold": count}).status_code == 200
        eventually(lambda: state(two, "resolved"), what=f"resolved at threshold {count}")
        _place(two, user, product, 1, "2.00")  # count + 1 > count: the applied event fires the rule
        eventually(lambda: state(api, "firing"), what="fired by the applied event")

        history = api.get(f"/v1/alerts/{alert_id}/history", params={"limit": 500}).json()["data"]
        deliveries = api.get(f"/v1/webhooks/{ep.json()['id']}/deliveries", params={"limit": 500}).json()
    transitions = 1 + flips + 2
    chain = sorted(history, key=lambda h: h["seq"])
    assert [h["seq"] for h in chain] == list(range(1, transitions + 1))
    assert [h["to_state"] for h in chain] == ["firing", *(["resolved", "firing"] * ((transitions - 1) // 2))]
    sent = [n for h in chain for n in h["notifications"]]
    assert len(sent) == transitions and len(set(sent)) == transitions
    rows = deliveries["data"]
    assert sorted(d["webhook_id"] for d in rows) == sorted(sent)
