"""One health probe per engine of the pipeline, each a call that returns a health ``Component`` within about
a second (every network wait is bounded by ``timeout``): the Kafka broker, Kafka Connect's connector,
the Flink job, Redis, the worker fleet's heartbeats, the legacy sources. services/health_probes.py runs
them in the background and caches what they say; the health route never waits on an engine.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from connectors.kafka_logging import kafka_client_logging
from connectors.worker_heartbeats import TTL_S, HeartbeatStore
from readmodels.health import Component

Probe = Callable[[], Component]

CHECKPOINT_STALE_S = 60.0  # the job checkpoints every 5 s: a minute without one is worth saying


def _maker(name: str, source: str) -> Callable[[str, str, dict[str, Any]], Component]:
    return lambda status, message, metrics: Component(name, status, message, source, metrics)


def _first_error_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def tcp_open(address: str, timeout: float) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def kafka_probe(bootstrap: str, topics: list[str], timeout: float = 1.0) -> Probe:
    """Reachable (TCP first: a dead broker is named at once), then the pipeline's topics exist."""
    admin: Any = None
    first = bootstrap.split(",")[0].strip()
    c = _maker("kafka", "kafka")

    def probe() -> Component:
        nonlocal admin
        from confluent_kafka.admin import AdminClient

        base = {"bootstrap": bootstrap}
        if not tcp_open(first, timeout):
            return c("unhealthy", f"broker {first} unreachable", base)
        if admin is None:
            admin = AdminClient({"bootstrap.servers": bootstrap, **kafka_client_logging("health-probe")})
        try:
            meta = admin.list_topics(timeout=timeout)
        except Exception as exc:
            return c("unhealthy", f"broker metadata: {_first_error_line(exc)}", base)
        finally:
            admin.poll(0)  # serve queued log lines and error callbacks
        missing = [t for t in topics if t not in meta.topics]
        metrics = {**base, "brokers": len(meta.brokers), "topics_missing": missing}
        if missing:
            return c("unhealthy", f"topics missing: {', '.join(missing)}", metrics)
        return c("healthy", f"broker reachable, {len(topics)} topics present", metrics)

    return probe


def connect_probe(url: str, connector: str, timeout: float = 1.0) -> Probe:
    """The connector's and its tasks' states from Kafka Connect's REST API."""
    client = httpx.Client(timeout=timeout)
    c = _maker("connect", "kafka-connect")

    def probe() -> Component:
        base: dict[str, Any] = {"url": url, "connector": connector}
        try:
            r = client.get(f"{url.rstrip('/')}/connectors/{connector}/status")
        except httpx.HTTPError as exc:
            return c("unhealthy", f"Kafka Connect unreachable: {_first_error_line(exc)}", base)
        if r.status_code == 404:
            return c("unhealthy", f"connector {connector} not registered", base)
        if r.status_code != 200:
            return c("unhealthy", f"status answered {r.status_code}", base)
        body = r.json()
        state = body.get("connector", {}).get("state", "UNKNOWN")
        tasks = [t.get("state", "UNKNOWN") for t in body.get("tasks", [])]
        metrics = {**base, "connector_state": state, "task_states": tasks}
        failed = [t for t in body.get("tasks", []) if t.get("state") == "FAILED"]
        if state == "FAILED" or failed:
            trace = (failed[0].get("trace") if failed else body["connector"].get("trace")) or ""
            reason = trace.strip().splitlines()[0] if trace.strip() else "FAILED"
            return c("unhealthy", f"connector {connector} failed: {reason}", metrics)
        if state != "RUNNING" or not tasks or any(t != "RUNNING" for t in tasks):
            return c("degraded", f"connector {state}, tasks {tasks}", metrics)
        return c("healthy", f"connector and {len(tasks)} task(s) running", metrics)

    return probe


def flink_probe(rest_url: str, job_name: str = "agentflow-projections", timeout: float = 1.0) -> Probe:
    """The job's state and the age of its last completed checkpoint from Flink's REST API."""
    client = httpx.Client(timeout=timeout)
    base_url = rest_url.rstrip("/")
    c = _maker("flink", "flink")

    def probe() -> Component:
        base: dict[str, Any] = {"url": rest_url}
        try:
            jobs = client.get(f"{base_url}/jobs/overview").json().get("jobs", [])
        except (httpx.HTTPError, ValueError) as exc:
            return c("unhealthy", f"Flink REST unreachable: {_first_error_line(exc)}", base)
        mine = sorted((j for j in jobs if j.get("name") == job_name), key=lambda j: j.get("start-time", 0))
        if not mine:
            return c("unhealthy", f"no job {job_name}", base)
        job = mine[-1]
        metrics = {**base, "job_id": job.get("jid"), "state": job.get("state")}
        if job.get("state") != "RUNNING":
            return c("unhealthy", f"job {job.get('state')}", metrics)
        try:
            cps = client.get(f"{base_url}/jobs/{job['jid']}/checkpoints").json()
        except (httpx.HTTPError, ValueError) as exc:
            return c("degraded", f"checkpoints: {_first_error_line(exc)}", metrics)
        completed = (cps.get("latest") or {}).get("completed") or {}
        acked = completed.get("latest_ack_timestamp")
        age = round(time.time() - acked / 1000, 1) if acked else None
        failed = cps.get("counts", {}).get("failed")
        metrics |= {"last_checkpoint_age_seconds": age, "checkpoints_failed": failed}
        if age is not None and age > CHECKPOINT_STALE_S:
            return c("degraded", f"job running, last checkpoint {age:.0f}s ago", metrics)
        said = f"last checkpoint {age:.1f}s ago" if age is not None else "no checkpoint yet"
        return c("healthy", f"job running, {said}", metrics)

    return probe


def redis_probe(url: str, timeout: float = 1.0) -> Probe:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    shown = url.rsplit("@", 1)[-1]  # never a password
    c = _maker("redis", "redis")

    def probe() -> Component:
        try:
            client.ping()
        except Exception as exc:
            return c("unhealthy", f"Redis unreachable: {_first_error_line(exc)}", {"url": shown})
        return c("healthy", "Redis answers", {"url": shown})

    return probe


def workers_probe(store: HeartbeatStore, expected: tuple[str, ...] = ()) -> Probe:
    """The fleet's heartbeats (services/heartbeat.py): unhealthy with none, degraded while a queue this
    deployment needs (``expected``) has no live worker."""
    c = _maker("workers", "postgres")

    def probe() -> Component:
        try:
            beats = store.live()
        except Exception as exc:
            return c("unhealthy", f"heartbeats unreadable: {_first_error_line(exc)}", {})
        workers = {b.worker_id: {**b.info, "queues": b.queues, "age_seconds": b.age_s} for b in beats}
        if not workers:
            return c("unhealthy", f"no worker heartbeat in the last {TTL_S:.0f}s", {"workers": {}})
        served = {q for b in beats for q in b.queues}
        missing = [q for q in expected if q not in served]
        if missing:
            return c("degraded", f"no live worker consumes: {', '.join(missing)}", {"workers": workers})
        return c("healthy", f"{len(workers)} worker process(es) beating", {"workers": workers})

    return probe


def legacy_probe(statuses: Callable[[], list[dict[str, Any]]]) -> Callable[[], list[Component]]:
    """One component per declared legacy source (``legacy:<name>``): its capture and its last error."""

    def probe() -> list[Component]:
        out = []
        for s in statuses():
            name = f"legacy:{s.get('name')}"
            capture = s.get("capture") or {}
            metrics = {k: s.get(k) for k in ("state", "records", "events", "lag_seconds", "last_error",
                                              "last_error_at")}  # fmt: skip
            if s.get("state") == "error" or capture.get("error"):
                why = capture.get("error") or s.get("last_error") or "error"
                out.append(Component(name, "unhealthy", f"capture failed: {why}", "legacy-cdc", metrics))
            elif capture and not capture.get("running"):
                out.append(Component(name, "unhealthy", "capture not running", "legacy-cdc", metrics))
            else:
                out.append(Component(name, "healthy", f"{s.get('state')}", "legacy-cdc", metrics))
        return out

    return probe
