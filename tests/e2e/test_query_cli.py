"""``agentflow metric|entity|timeline|query|search|catalog|stream|deadletters`` (services/query_cli.py,
on the SDK) against a real ``agentflow up``, run in process through ``services.cli.main`` with the
output captured: the values printed are the server's, in tables and with ``--json``."""

from __future__ import annotations

import json
from typing import Any

import pytest
from agentflow_client import Client, OrderLine, RetryPolicy
from agentflow_process import AgentFlowProcess
from waiting import eventually

from e2e.conftest import KEY_A, client, recorded_instant
from e2e.test_deadletter_replay import _insert_bad, _pg_url
from services.cli import main


@pytest.fixture(scope="module")
def shop(server: AgentFlowProcess) -> dict[str, Any]:
    """Two EUR orders on channel `cli`, one confirmed; the last write's position."""
    with Client(server.base, KEY_A, retry=RetryPolicy(max_retries=200, max_backoff=1.0)) as api:
        pid = api.register_product(name="CLI lamp", category="cli", price="12.50", currency="EUR").product_id
        start = api.restock_product(pid, 100).position
        user = api.register_user(name="Cli").user_id
        orders = [api.place_order(user_id=user, lines=[OrderLine(pid, 2, "12.50")], currency="EUR",
                                  channel="cli") for _ in range(2)]  # fmt: skip
        confirmed = api.confirm_order(orders[0].order_id)
        return {"start": start, "orders": [o.order_id for o in orders], "position": confirmed.position,
                "placed": orders[0].position, "user": user, "product": pid}  # fmt: skip


def run(server: AgentFlowProcess, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([*argv, "--url", server.base, "--api-key", KEY_A])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(server: AgentFlowProcess, capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    code, out, err = run(server, capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def test_metric_entity_and_timeline(server: AgentFlowProcess, shop: dict[str, Any], capsys: Any) -> None:
    at = str(shop["position"])
    m = run_json(server, capsys, "metric", "revenue", "--window", "1h", "--currency", "EUR",
                 "--min-position", at)  # fmt: skip
    assert m["metric_name"] == "revenue" and m["value"] >= 50.0
    assert m["meta"]["as_of_position"] >= shop["position"]
    code, table, _ = run(server, capsys, "metric", "order_count", "--window", "1h", "--min-position", at)
    assert code == 0 and "metric order_count" in table and "as_of_position" in table

    first = shop["orders"][0]
    order = run_json(server, capsys, "entity", "order", first, "--min-position", at)
    assert order["data"]["status"] == "confirmed" and order["data"]["total_amount"] == 25.0
    code, table, _ = run(server, capsys, "entity", "order", first, "--min-position", at)
    assert code == 0 and f"order {first}" in table and "confirmed" in table and "EUR" in table

    with client(server, KEY_A) as api:
        before_confirmation = recorded_instant(api, shop["placed"])
    then = run_json(server, capsys, "entity", "order", first, "--as-of", before_confirmation)
    assert then["data"]["status"] == "pending" and then["meta"]["is_historical"]

    timeline = run_json(server, capsys, "timeline", first)
    assert [e["event_type"] for e in timeline["events"]] == ["OrderPlaced", "OrderConfirmed"]
    code, table, _ = run(server, capsys, "timeline", first)
    assert code == 0 and "OrderConfirmed" in table and "2 events" in table


def test_query_search_and_catalog(server: AgentFlowProcess, shop: dict[str, Any], capsys: Any) -> None:
    at = str(shop["position"])
    question = "How many orders by channel in the last hour?"
    q = run_json(server, capsys, "query", question, "--min-position", at)
    assert {r["channel"]: r["order_count"] for r in q["rows"]}.get("cli") == 2
    code, table, _ = run(server, capsys, "query", "--sql", "SELECT order_id FROM orders ORDER BY order_id",
                         "--min-position", at)  # fmt: skip
    assert code == 0 and all(o in table for o in shop["orders"])

    hits = run_json(server, capsys, "search", shop["orders"][1], "--min-position", at)
    assert shop["orders"][1] in {h["id"] for h in hits["results"]}

    catalog = run_json(server, capsys, "catalog")
    assert "revenue" in catalog["metrics"] and "order" in catalog["entities"]
    code, table, _ = run(server, capsys, "catalog")
    assert code == 0 and "avg_order_value" in table and "primary_key" in table


def test_stream_prints_the_events_after_a_position(
    server: AgentFlowProcess, shop: dict[str, Any], capsys: Any
) -> None:
    code, out, err = run(server, capsys, "stream", "--type", "order", "--from", str(shop["start"]),
                         "--max-events", "3", "--json")  # fmt: skip
    assert code == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["event"], e["data"]["entity_id"]) for e in events] == [
        ("OrderPlaced", shop["orders"][0]), ("OrderPlaced", shop["orders"][1]),
        ("OrderConfirmed", shop["orders"][0]),
    ]  # fmt: skip


def test_deadletters_list_show_and_dismiss(server: AgentFlowProcess, capsys: Any) -> None:
    position = _insert_bad(_pg_url(server), "ORD-CLI-BAD", {"order_id": "ORD-CLI-BAD", "total_minor": -5})

    def listed() -> dict[str, Any] | None:
        page = run_json(server, capsys, "deadletters", "list", "--status", "failed", "--limit", "100")
        return next((d for d in page["data"] if d["position"] == position), None)

    letter = eventually(listed, timeout=120, what="the bad event in the dead letters")
    code, table, _ = run(server, capsys, "deadletters", "show", str(letter["id"]))
    assert code == 0 and "ORD-CLI-BAD" in table and letter["reason"][:30] in table
    dismissed = run_json(server, capsys, "deadletters", "dismiss", str(letter["id"]), "--note", "cli test")
    assert dismissed["status"] == "dismissed" and dismissed["status_note"] == "cli test"


def test_errors_and_where_the_target_comes_from(
    server: AgentFlowProcess, capsys: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run(server, capsys, "metric", "no_such_metric", "--window", "1h")
    assert code == 1 and "404 unknown_metric" in err
    code, _, err = run(server, capsys, "deadletters", "replay")
    assert code == 2 and "needs the dead letter's id" in err

    monkeypatch.setenv("AGENTFLOW_URL", server.base)
    monkeypatch.setenv("AGENTFLOW_API_KEY", KEY_A)
    assert main(["catalog", "--json"]) == 0 and "revenue" in json.loads(capsys.readouterr().out)["metrics"]

    monkeypatch.delenv("AGENTFLOW_URL")
    monkeypatch.delenv("AGENTFLOW_API_KEY")
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{server.base}"\napi_key = "{KEY_A}"\n')
    monkeypatch.setenv("AGENTFLOW_CONFIG", str(config))
    assert main(["metric", "order_count", "--window", "1h", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metric_name"] == "order_count"
    config.write_text(f'url = "{server.base}"\napi_key = "wrong"\n')
    assert main(["catalog"]) == 1 and "401 unauthorized" in capsys.readouterr().err
