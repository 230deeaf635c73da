"""Semantic queries and questions on a real chdb, checked against compute_metric (GET /v1/metrics)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC

import pytest
from chdb_store import chdb_store
from test_readmodels import NOW, shop

from connectors.clickhouse import ClickHouseStore
from connectors.clickhouse_sink import ClickHouseSink
from readmodels.metrics import compute_metric, compute_series
from readmodels.query import semantic
from readmodels.query.question import QuestionError, parse_question
from readmodels.query.semantic import SemanticError, validate

A, B = "tenant-sa", "tenant-sb"


@pytest.fixture(scope="module")
def store() -> Iterator[ClickHouseStore]:
    s = chdb_store("q_sem")
    ClickHouseSink(s, None).apply(shop(A, n_orders=60, seed=5).events, None, 0)
    ClickHouseSink(s, None).apply(shop(B, n_orders=30, seed=6).events, None, 0)
    yield s
    s.drop_all()


def _run(store: ClickHouseStore, body: dict[str, object], tenant: str = A) -> semantic.Result:
    return semantic.execute(store.query, validate(body), tenant, NOW, "USD")


@pytest.mark.parametrize(
    "metric,window",
    [
        ("revenue", "6h"),
        ("order_count", "1h"),
        ("avg_order_value", "6h"),
        ("net_revenue", "6h"),
        ("units_sold", "6h"),
        ("gross_merchandise_value", "6h"),
        ("payment_failure_rate", "6h"),
        ("refund_rate", "6h"),
        ("conversion_rate", "6h"),
        ("stock_on_hand", "now"),
    ],
)
def test_metric_matches_the_metric_endpoint(store: ClickHouseStore, metric: str, window: str) -> None:
    for tenant in (A, B):
        result = _run(store, {"metrics": [metric], "window": window}, tenant)
        expected = compute_metric(store, tenant, metric, window, "USD", NOW).value
        assert result.rows == [{metric: pytest.approx(expected)}], metric
        assert result.tables and "{tenant:String}" in result.sql[0]


def test_dimensions_partition_the_total(store: ClickHouseStore) -> None:
    result = _run(store, {"metrics": ["units_sold", "order_count"], "dimensions": [], "window": "6h"})
    by_cat = _run(store, {"metrics": ["units_sold"], "dimensions": ["category"], "window": "6h"})
    assert by_cat.columns == ["category", "units_sold"]
    assert sum(r["units_sold"] for r in by_cat.rows) == result.rows[0]["units_sold"]
    for row in by_cat.rows:
        direct = compute_metric(
            store, A, "units_sold", "6h", "USD", NOW, filters={"category": row["category"]}
        )
        assert row["units_sold"] == direct.value
    by_cur = _run(store, {"metrics": ["revenue"], "dimensions": ["currency"], "window": "6h"})
    for row in by_cur.rows:
        assert row["revenue"] == compute_metric(store, A, "revenue", "6h", row["currency"], NOW).value
    assert {r["currency"] for r in by_cur.rows} == {"USD", "EUR"}
    eur = _run(store, {"metrics": ["revenue"], "filters": {"currency": "eur"}, "window": "6h"})
    assert eur.currency == "EUR" and eur.units == {"revenue": "EUR"}
    assert eur.rows[0]["revenue"] == compute_metric(store, A, "revenue", "6h", "EUR", NOW).value


def test_series_matches_compute_series(store: ClickHouseStore) -> None:
    result = _run(store, {"metrics": ["revenue", "order_count"], "window": "6h", "grain": "1h"})
    _, points = compute_series(store, A, "revenue", "6h", "1h", "USD", NOW)
    assert [r["revenue"] for r in result.rows] == [p["value"] for p in points]
    assert [r["bucket_start"] for r in result.rows] == [
        p["start"].astimezone(UTC).isoformat().replace("+00:00", "Z") for p in points
    ]


def test_unknown_names_answer_with_suggestions() -> None:
    with pytest.raises(SemanticError) as exc:
        validate({"metrics": ["revenu"]})
    assert exc.value.code == "unknown_metric" and "revenue" in exc.value.details["suggestions"]
    with pytest.raises(SemanticError) as exc:
        validate({"metrics": ["revenue"], "dimensions": ["chanel"]})
    assert exc.value.code == "unknown_dimension" and exc.value.details["suggestions"] == ["channel"]
    with pytest.raises(SemanticError) as exc:
        validate({"metrics": ["revenue"], "dimensions": ["category"]})
    assert exc.value.code == "unsupported_dimension"
    with pytest.raises(SemanticError) as exc:
        validate({"metrics": ["revenue"], "window": "2h"})
    assert exc.value.code == "unsupported_window" and "1h" in exc.value.details["windows"]
    with pytest.raises(SemanticError) as exc:
        validate({"metrics": ["revenue", "stock_on_hand"]})
    assert exc.value.code == "unsupported_window"
    with pytest.raises(SemanticError):
        validate({"metrics": ["revenue"], "window": "1h", "grain": "1d"})


def test_questions_map_deterministically(store: ClickHouseStore) -> None:
    cases = {
        "revenue by channel last 24 hours": {
            "metrics": ["revenue"],
            "dimensions": ["channel"],
            "window": "24h",
        },
        "What were sales today?": {"metrics": ["revenue"], "window": "24h"},
        "how many orders per hour in the past 6 hours": {
            "metrics": ["order_count"],
            "window": "6h",
            "grain": "1h",
        },
        "units sold by category past week in EUR": {
            "metrics": ["units_sold"],
            "dimensions": ["category"],
            "window": "7d",
            "filters": {"currency": "EUR"},
        },
        "stock on hand for PROD-002": {
            "metrics": ["stock_on_hand"],
            "window": "now",
            "filters": {"product": "PROD-002"},
        },
        "gmv and units sold by product last 6 hours": {
            "metrics": ["gross_merchandise_value", "units_sold"],
            "dimensions": ["product"],
            "window": "6h",
        },
    }
    for question, expected in cases.items():
        q, _ = parse_question(question)
        assert q == validate(expected), question
        assert parse_question(question)[0] == q  # deterministic
    q, _ = parse_question("revenue by channel last 6 hours")
    result = semantic.execute(store.query, q, A, NOW, "USD")
    assert sum(r["revenue"] for r in result.rows) == pytest.approx(
        compute_metric(store, A, "revenue", "6h", "USD", NOW).value
    )


@pytest.mark.parametrize(
    "question",
    ["weather in paris", "revenu by chanel", "revenue by colour", "", "what is up", "revenue last fortnight"],
)
def test_unmappable_questions_are_refused(question: str) -> None:
    with pytest.raises(QuestionError) as exc:
        parse_question(question)
    assert exc.value.details  # suggestions / examples, never a guess


def test_now_is_after_the_data() -> None:
    """The queries above are evaluated at NOW: every event of both shops happened by then."""
    for tenant, n_orders, seed in ((A, 60, 5), (B, 30, 6)):
        events = shop(tenant, n_orders=n_orders, seed=seed).events
        assert max(e.occurred_at for e in events) <= NOW
