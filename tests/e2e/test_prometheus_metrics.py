"""``GET /metrics`` of a running ``agentflow up`` (own Postgres, chdb, Iceberg): one command moves exactly
the counters and histograms it should, a refused one the refusal's; every series the alert rules and
the dashboard query is there. Expected deltas come from the API's own answers (the command's position,
the changelog's events), not from /metrics. /metrics is not itself measured, so scraping moves nothing."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
from agentflow_process import AgentFlowProcess
from go_tools import go_tool
from prometheus_client.parser import text_string_to_metric_families
from promql_names import dashboard_exprs, rule_exprs, selectors, series_of
from waiting import eventually

from connectors.postgres_cluster import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
USERS_ROUTE = "/v1/users"
CONFIRM_ROUTE = "/v1/orders/{order_id}/confirm"  # the template Litestar matched, no ":str"


def scrape(server: AgentFlowProcess) -> tuple[Samples, str]:
    resp = httpx.get(f"{server.base}/metrics", timeout=30.0)  # no key: the scraper has none
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, resp.text


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, where: Callable[[dict[str, str]], bool] = lambda _: True) -> float:
    return sum(v for (n, labels), v in samples.items() if n == name and where(dict(labels)))


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def applied_through(server: AgentFlowProcess, position: int) -> Samples:
    """Scrape until the serving projector's watermark covers ``position`` (the server's own signal: the
    runner tells its applied-events listeners, freshness among them, before it publishes the watermark)."""
    def check() -> Samples | None:
        samples, _ = scrape(server)
        done = value(samples, "agentflow_projector_watermark_position", projector="clickhouse") >= position
        return samples if done else None

    return eventually(check, timeout=120, what=f"serving watermark never reached {position}")


def test_one_command_moves_exactly_its_counters(server: AgentFlowProcess, api: httpx.Client) -> None:
    before, _ = scrape(server)
    head_before = int(value(before, "agentflow_event_store_head_position"))
    resp = api.post(USERS_ROUTE, json={"name": "Metered"})
    assert resp.status_code == 201, resp.text
    position = resp.json()["position"]
    after = applied_through(server, position)
    # the events that one command wrote, as the changelog tells them (read after the last scrape)
    # (newest first, below the cursor)
    changes = api.get("/v1/changelog", params={"cursor": position + 1, "limit": 50}).json()["changes"]
    written = [c for c in changes if head_before < c["position"] <= position]
    assert written and written[-1]["position"] == position, changes

    http = "agentflow_http_request_duration_seconds"
    assert delta(before, after, f"{http}_count", method="POST", route=USERS_ROUTE, status="2xx") == 1
    assert total(after, f"{http}_count") - total(before, f"{http}_count") == 1  # nothing else was measured
    assert delta(before, after, f"{http}_sum", method="POST", route=USERS_ROUTE, status="2xx") > 0
    assert delta(before, after, "agentflow_commands_total", command="user.register", outcome="accepted") == 1
    assert total(after, "agentflow_commands_total") - total(before, "agentflow_commands_total") == 1
    assert delta(before, after, "agentflow_event_store_append_duration_seconds_count") == 1
    assert delta(before, after, "agentflow_event_store_append_events_count") == 1
    assert delta(before, after, "agentflow_event_store_append_events_sum") == len(written)
    # every event the command wrote was applied once to the serving read model, and its freshness measured
    assert delta(before, after, "agentflow_freshness_seconds_count") == len(written)
    assert delta(before, after, "agentflow_projector_applied_events_total", projector="clickhouse") == len(
        written
    )
    assert value(after, "agentflow_event_store_head_position") == position
    assert value(after, "agentflow_projector_lag_positions", projector="clickhouse") == 0
    # nothing was read, refused or dead-lettered
    for name in ("agentflow_read_cache_lookups_total", "agentflow_dead_letters_total",
                 "agentflow_auth_failures_total", "agentflow_rate_limited_total"):  # fmt: skip
        assert total(after, name) == total(before, name), name


def test_a_refused_command_counts_its_code_and_appends_nothing(
    server: AgentFlowProcess, api: httpx.Client
) -> None:
    before, _ = scrape(server)
    resp = api.post("/v1/orders/ORD-NOT-THERE/confirm", json={})
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "not_found", resp.text
    http = "agentflow_http_request_duration_seconds_count"

    def measured() -> Samples | None:
        # the front door records a request after its answer went out: wait for that, not for a time
        found, _ = scrape(server)
        return found if total(found, http) - total(before, http) >= 1 else None

    after = eventually(measured, timeout=30, what="the refused command in the request histogram")
    assert delta(before, after, http, method="POST", route=CONFIRM_ROUTE, status="4xx") == 1
    assert total(after, http) - total(before, http) == 1
    assert delta(before, after, "agentflow_commands_total", command="order.confirm", outcome="not_found") == 1
    assert total(after, "agentflow_commands_total") - total(before, "agentflow_commands_total") == 1
    assert delta(before, after, "agentflow_event_store_append_duration_seconds_count") == 0


def test_raw_paths_never_become_labels(server: AgentFlowProcess, api: httpx.Client) -> None:
    for oid in ("ORD-A-1", "ORD-A-2", "ORD-A-3"):
        assert api.get(f"/v1/entity/order/{oid}").status_code == 404
    samples, _ = scrape(server)
    routes = {dict(labels).get("route") for (n, labels) in samples if n.startswith("agentflow_http_")}
    assert "/v1/entity/{entity_type}/{entity_id}" in routes, routes
    assert not any(r and "ORD-A" in r for r in routes), routes


def test_every_series_the_rules_and_dashboard_query_is_scraped(server: AgentFlowProcess) -> None:
    _, text = scrape(server)
    families = list(text_string_to_metric_families(text))
    labels = {f.name: {k for s in f.samples for k in s.labels} for f in families}
    exposed = series_of(families, labels)
    for name in selectors([*rule_exprs(), *dashboard_exprs()]):
        assert name in exposed, f"{name} is queried by deploy/ but not exposed by a running server"


def test_live_scrape_passes_promtool_check_metrics(server: AgentFlowProcess) -> None:
    """Prometheus's own linter over what a running server answers (naming, types, suffixes, help)."""
    _, text = scrape(server)
    done = subprocess.run([go_tool("promtool"), "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_metrics_on_their_own_port(tmp_path: Path) -> None:
    """``AGENTFLOW_METRICS_PORT``: the metrics answer there, and the API port no longer serves them."""
    port = free_port()
    srv = AgentFlowProcess(tmp_path / "own-port", "k:t", env={
        "AGENTFLOW_METRICS_PORT": str(port), "AGENTFLOW_ICEBERG": "0", "AGENTFLOW_WORKERS": "0",
        "AGENTFLOW_ALERTS": "0",
    })  # fmt: skip
    srv.start()
    try:
        assert httpx.get(f"{srv.base}/metrics", timeout=30).status_code == 404
        resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30)
        assert resp.status_code == 200
        names = {f.name for f in text_string_to_metric_families(resp.text)}
        assert {"agentflow_http_request_duration_seconds", "agentflow_projector_lag_positions"} <= names
    finally:
        srv.stop()
