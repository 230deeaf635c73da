"""``GET /v1/metrics/{name}`` and ``/series`` over HTTP, in process: values after a command (read your
write with ``min_position``), currencies and dimension filters, time travel, waiting, errors, tenants.

Metrics of one tenant add up across the tests of this module: each test orders on a channel of its own
and reads revenue filtered by it.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import TestClient

from readmodels.metrics import METRICS

from .conftest import A, B
from .shop import ok, order, product, user


def _channel() -> str:
    return f"ch-{uuid.uuid4().hex[:10]}"


def _revenue(client: TestClient[Any], headers: dict[str, str], **params: Any) -> dict[str, Any]:
    return ok(client.get("/v1/metrics/revenue", params={"window": "1h", **params}, headers=headers), 200)


def test_a_metric_reflects_a_command_once_its_position_is_applied(client: TestClient[Any]) -> None:
    channel = _channel()
    pid = product(client, A, price="10.00")["product_id"]
    placed = order(client, A, pid, user(client, A), quantity=3, unit_price="10.00", channel=channel)
    body = _revenue(client, A, channel=channel, min_position=placed["position"])
    assert set(body) == {"metric_name", "value", "unit", "window", "computed_at", "components", "meta"}
    assert (body["metric_name"], body["value"], body["unit"], body["window"]) == (
        "revenue",
        30.0,
        "USD",
        "1h",
    )
    assert body["components"]["order_count"] == 1
    meta = body["meta"]
    assert meta["as_of_position"] >= placed["position"] and meta["is_historical"] is False
    assert isinstance(meta["freshness_seconds"], float | int) and meta["as_of"].endswith("Z")
    assert "stale" not in meta
    # money never sums currencies: the same orders in EUR are none
    eur = _revenue(client, A, channel=channel, currency="eur")
    assert (eur["value"], eur["unit"]) == (0.0, "EUR")
    # the window defaults to the metric's first one
    assert (
        ok(client.get("/v1/metrics/order_count", headers=A), 200)["window"]
        == METRICS["order_count"].windows[0]
    )
    # a metric without a currency dimension ignores currency (existing clients send it to every metric)
    assert client.get("/v1/metrics/active_sessions", params={"currency": "USD"}, headers=A).status_code == 200


def test_tenants_see_only_their_own_numbers(client: TestClient[Any]) -> None:
    channel = _channel()
    pid = product(client, A)["product_id"]
    placed = order(client, A, pid, user(client, A), channel=channel)
    assert _revenue(client, A, channel=channel, min_position=placed["position"])["value"] == 10.0
    theirs = _revenue(client, B, channel=channel, min_position=placed["position"])
    assert theirs["value"] == 0.0 and theirs["components"]["order_count"] == 0


def test_as_of_folds_the_events_up_to_that_instant(client: TestClient[Any]) -> None:
    channel = _channel()
    pid = product(client, A)["product_id"]
    uid = user(client, A)
    before = datetime.now(UTC)
    placed = order(client, A, pid, uid, channel=channel)
    then = _revenue(client, A, channel=channel, as_of=before.isoformat())
    assert then["value"] == 0.0 and then["meta"]["is_historical"] is True
    assert then["meta"]["as_of"] == before.isoformat().replace("+00:00", "Z")
    after = datetime.now(UTC).replace(tzinfo=None).isoformat()  # naive: UTC
    now = _revenue(client, A, channel=channel, as_of=after, min_position=placed["position"])
    assert now["value"] == 10.0 and now["meta"]["is_historical"] is True
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = client.get("/v1/metrics/revenue", params={"as_of": future}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "as_of_in_future"
    r = client.get("/v1/metrics/revenue", params={"as_of": "yesterday"}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_as_of"


def test_min_position_waits_then_answers_503_or_the_stale_value(client: TestClient[Any]) -> None:
    far = 10**12
    r = client.get("/v1/metrics/order_count", params={"min_position": far, "timeout_ms": 0}, headers=A)
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    error = r.json()["error"]
    assert error["code"] == "position_not_yet_applied" and error["details"]["min_position"] == far
    stale = client.get(
        "/v1/metrics/order_count",
        params={"min_position": far, "timeout_ms": 0, "allow_stale": "true"},
        headers=A,
    )
    assert ok(stale, 200)["meta"]["stale"] is True
    bad = client.get("/v1/metrics/order_count", params={"min_position": "abc"}, headers=A)
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "validation_failed"


def test_unknown_metrics_windows_and_dimensions(client: TestClient[Any]) -> None:
    r = client.get("/v1/metrics/nope", headers=A)
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_metric"
    assert "revenue" in r.json()["error"]["details"]["available"]
    r = client.get("/v1/metrics/revenue", params={"window": "3w"}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_window"
    assert r.json()["error"]["details"]["available_windows"] == list(METRICS["revenue"].windows)
    r = client.get("/v1/metrics/revenue", params={"category": "home"}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_dimension"
    assert client.get("/v1/metrics/revenue").status_code == 401


def test_series(client: TestClient[Any]) -> None:
    channel = _channel()
    pid = product(client, A)["product_id"]
    placed = order(client, A, pid, user(client, A), quantity=2, channel=channel)
    series = ok(
        client.get(
            "/v1/metrics/revenue/series",
            params={"channel": channel, "grain": "5m", "min_position": placed["position"]},
            headers=A,
        ),
        200,
    )
    assert (series["window"], series["grain"], series["unit"]) == ("1h", "5m", "USD")
    assert (
        series["filters"] == {"channel": channel} and series["meta"]["as_of_position"] >= placed["position"]
    )
    assert 12 <= len(series["points"]) <= 13 and sum(p["value"] for p in series["points"]) == 20.0
    assert set(series["points"][0]) == {"start", "end", "value", "components"}
    assert series["points"][0]["start"].endswith("Z")
    default = ok(client.get("/v1/metrics/revenue/series", headers=A), 200)
    assert default["window"] == "1h" and default["grain"] == "1m"
    before = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    past = ok(
        client.get("/v1/metrics/revenue/series", params={"channel": channel, "as_of": before}, headers=A), 200
    )
    assert sum(p["value"] for p in past["points"]) == 0.0 and past["meta"]["is_historical"] is True
    theirs = ok(client.get("/v1/metrics/revenue/series", params={"channel": channel}, headers=B), 200)
    assert sum(p["value"] for p in theirs["points"]) == 0.0

    r = client.get("/v1/metrics/order_count/series", params={"window": "5m", "grain": "1d"}, headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_grain"
    r = client.get("/v1/metrics/stock_on_hand/series", headers=A)
    assert r.status_code == 422 and r.json()["error"]["code"] == "no_series"
    assert client.get("/v1/metrics/nope/series", headers=A).status_code == 404
