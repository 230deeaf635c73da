"""The question parser, table-driven: each question and the semantic query it must map to, written out
by hand (not produced by the parser); and the questions that must be refused with suggestions.

The live dimension values are a dict (the query service asks the read model) and ``now`` is fixed, so
every answer here is deterministic."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from readmodels.contract_registry import (
    REGISTRY,
    ContractError,
    Registry,
    parse_contract_file,
    vocabulary,
    vocabulary_problems,
)
from readmodels.query.question import NEAREST, QuestionError, parse_question
from readmodels.query.semantic import SemanticError, SemanticQuery, validate

NOW = datetime(2026, 5, 6, 15, 30, tzinfo=UTC)
VALUES = {
    "channel": ["web", "app", "mobile_app"],
    "category": ["gadgets", "books", "toys"],
    "method": ["card", "paypal", "bank_transfer"],
}
REV_PRODUCT = NEAREST[("revenue", "product")][1]
REV_CATEGORY = NEAREST[("revenue", "category")][1]
NET_PRODUCT = NEAREST[("net_revenue", "product")][1]
GMV = "gross_merchandise_value"


def Q(  # noqa: N802 - reads like the query it builds
    *metrics: str,
    dims: tuple[str, ...] = (),
    filters: dict[str, str] | None = None,
    window: str = "1h",
    grain: str | None = None,
    order_by: str | None = None,
    direction: str | None = None,
    top: int | None = None,
    compare: str | None = None,
    as_of: str | None = None,
    notes: tuple[str, ...] = (),
) -> SemanticQuery:
    return SemanticQuery(
        metrics,
        dims,
        tuple(sorted((filters or {}).items())),
        window,
        grain,
        order_by,
        direction,
        top,
        compare,
        as_of,
        notes,
    )


CASES: list[tuple[str, SemanticQuery]] = [
    # metrics, dimensions, windows (today's behaviour)
    ("revenue by channel last 24 hours", Q("revenue", dims=("channel",), window="24h")),
    ("What were sales today?", Q("revenue", window="24h")),
    ("units sold by category past week in EUR", Q("units_sold", dims=("category",), filters={"currency": "EUR"}, window="7d")),  # noqa: E501
    ("stock on hand for PROD-002", Q("stock_on_hand", filters={"product": "PROD-002"}, window="now")),
    ("gmv and units sold by product last 6 hours", Q(GMV, "units_sold", dims=("product",), window="6h")),
    ("total revenue and orders by channel past 6 hours", Q("revenue", "order_count", dims=("channel",), window="6h")),  # noqa: E501
    ("revenue by channel and currency last hour", Q("revenue", dims=("channel", "currency"))),
    ("aov by currency last 24 hours", Q("avg_order_value", dims=("currency",), window="24h")),
    ("what is our revenue in EUR", Q("revenue", filters={"currency": "EUR"})),
    ("conversion rate right now", Q("conversion_rate", window="5m")),
    ("active sessions", Q("active_sessions", window="now")),
    ("error rate last hour", Q("error_rate")),
    ("fulfilment time p95 past week", Q("fulfilment_time_p95", window="7d")),
    ("cart abandonment this week", Q("cart_abandonment_rate", window="7d")),
    ("inventory by category", Q("stock_on_hand", dims=("category",), window="now")),
    ("return rate last 24 hours", Q("return_rate", window="24h")),
    ("returns past week", Q("units_returned", window="7d")),
    ("PROD-001 units sold last 24 hours", Q("units_sold", filters={"product": "PROD-001"}, window="24h")),
    ("which channels had orders today", Q("order_count", dims=("channel",), window="24h")),
    # grains
    ("how many orders per hour in the past 6 hours", Q("order_count", window="6h", grain="1h")),
    ("orders per hour over the last day", Q("order_count", window="24h", grain="1h")),
    ("revenue per day this week", Q("revenue", window="7d", grain="1d")),
    ("hourly units sold today", Q("units_sold", window="24h", grain="1h")),
    ("order volume every 5 minutes over the last 6 hours", Q("order_count", window="6h", grain="5m")),
    ("revenue minute by minute last hour", Q("revenue", grain="1m")),
    ("units sold per hour by category today", Q("units_sold", dims=("category",), window="24h", grain="1h")),
    ("refund rate day by day over the past week", Q("refund_rate", window="7d", grain="1d")),
    # rankings
    ("top 5 products by units sold this week", Q("units_sold", dims=("product",), window="7d", order_by="units_sold", direction="desc", top=5)),  # noqa: E501
    ("top 5 products by revenue", Q(GMV, dims=("product",), order_by=GMV, direction="desc", top=5, notes=(REV_PRODUCT,))),  # noqa: E501
    ("which category sold the most units this week", Q("units_sold", dims=("category",), window="7d", order_by="units_sold", direction="desc", top=1)),  # noqa: E501
    ("which channel had the highest revenue today", Q("revenue", dims=("channel",), window="24h", order_by="revenue", direction="desc", top=1)),  # noqa: E501
    ("bottom 3 categories by units sold past week", Q("units_sold", dims=("category",), window="7d", order_by="units_sold", direction="asc", top=3)),  # noqa: E501
    ("best selling product this week", Q("units_sold", dims=("product",), window="7d", order_by="units_sold", direction="desc", top=1)),  # noqa: E501
    ("top selling categories today", Q("units_sold", dims=("category",), window="24h", order_by="units_sold", direction="desc", top=10)),  # noqa: E501
    ("which hour had the most orders today", Q("order_count", window="24h", grain="1h", order_by="order_count", direction="desc", top=1)),  # noqa: E501
    ("which day had the fewest orders this week", Q("order_count", window="7d", grain="1d", order_by="order_count", direction="asc", top=1)),  # noqa: E501
    ("which payment method has the most payment failures", Q("payment_failure_rate", dims=("method",), order_by="payment_failure_rate", direction="desc", top=1)),  # noqa: E501
    ("top 3 categories by gmv in EUR last 24 hours", Q(GMV, dims=("category",), filters={"currency": "EUR"}, window="24h", order_by=GMV, direction="desc", top=3)),  # noqa: E501
    ("top ten products by units sold today", Q("units_sold", dims=("product",), window="24h", order_by="units_sold", direction="desc", top=10)),  # noqa: E501
    ("which categories sold the least units this week", Q("units_sold", dims=("category",), window="7d", order_by="units_sold", direction="asc")),  # noqa: E501
    ("show gmv and units sold for the top 3 products by units sold this week", Q(GMV, "units_sold", dims=("product",), window="7d", order_by="units_sold", direction="desc", top=3)),  # noqa: E501
    ("worst 2 channels by refund rate last 24 hours", Q("refund_rate", dims=("channel",), window="24h", order_by="refund_rate", direction="asc", top=2)),  # noqa: E501
    # the nearest metric that has the dimension asked for (said in notes)
    ("sales by category this week", Q(GMV, dims=("category",), window="7d", notes=(REV_CATEGORY,))),
    ("net sales by product today", Q(GMV, dims=("product",), window="24h", notes=(NET_PRODUCT,))),
    # comparisons
    ("revenue today vs yesterday", Q("revenue", window="24h", compare="24h")),
    ("orders this week versus last week", Q("order_count", window="7d", compare="7d")),
    ("revenue last hour vs the previous period", Q("revenue", compare="1h")),
    ("revenue day over day", Q("revenue", window="24h", compare="24h")),
    ("units sold by category this week compared to last week", Q("units_sold", dims=("category",), window="7d", compare="7d")),  # noqa: E501
    ("refund rate today compared with yesterday", Q("refund_rate", window="24h", compare="24h")),
    ("revenue by channel last 6 hours vs the same time yesterday", Q("revenue", dims=("channel",), window="6h", compare="24h")),  # noqa: E501
    ("gmv this hour against an hour ago", Q(GMV, compare="1h")),
    ("revenue vs last week", Q("revenue", window="7d", compare="7d")),
    ("net revenue week over week", Q("net_revenue", window="7d", compare="7d")),
    # filters: live dimension values, "<dimension> <value>", currencies, product ids
    ("payment failure rate for card payments in EUR", Q("payment_failure_rate", filters={"currency": "EUR", "method": "card"})),  # noqa: E501
    ("revenue from the web channel today", Q("revenue", filters={"channel": "web"}, window="24h")),
    ("orders from mobile app this week", Q("order_count", filters={"channel": "mobile_app"}, window="7d")),
    ("units sold for gadgets past week", Q("units_sold", filters={"category": "gadgets"}, window="7d")),
    ("declines for paypal last 6 hours", Q("payment_failure_rate", filters={"method": "paypal"}, window="6h")),  # noqa: E501
    ("bank transfer payment failures today", Q("payment_failure_rate", filters={"method": "bank_transfer"}, window="24h")),  # noqa: E501
    ("revenue channel web last hour", Q("revenue", filters={"channel": "web"})),
    ("units sold category books today", Q("units_sold", filters={"category": "books"}, window="24h")),
    ("gmv for books in EUR last 7 days", Q(GMV, filters={"category": "books", "currency": "EUR"}, window="7d")),  # noqa: E501
    ("orders from app by channel and hourly today", Q("order_count", dims=("channel",), filters={"channel": "app"}, window="24h", grain="1h")),  # noqa: E501
    # time travel (now = 2026-05-06 15:30 UTC)
    ("revenue as of yesterday noon", Q("revenue", as_of="2026-05-05T12:00:00Z")),
    ("revenue by channel last 24 hours as of today 09:30", Q("revenue", dims=("channel",), window="24h", as_of="2026-05-06T09:30:00Z")),  # noqa: E501
    ("orders as of 3 hours ago", Q("order_count", as_of="2026-05-06T12:30:00Z")),
    ("stock on hand as of 2026-05-01 12:00", Q("stock_on_hand", window="now", as_of="2026-05-01T12:00:00Z")),  # noqa: E501
    ("units sold by category past week as of yesterday midnight", Q("units_sold", dims=("category",), window="7d", as_of="2026-05-05T00:00:00Z")),  # noqa: E501
    ("refund rate last 6 hours as of yesterday at 6pm", Q("refund_rate", window="6h", as_of="2026-05-05T18:00:00Z")),  # noqa: E501
    ("revenue today vs yesterday as of yesterday noon", Q("revenue", window="24h", compare="24h", as_of="2026-05-05T12:00:00Z")),  # noqa: E501
    ("top 2 categories by units sold today as of noon", Q("units_sold", dims=("category",), window="24h", order_by="units_sold", direction="desc", top=2, as_of="2026-05-06T12:00:00Z")),  # noqa: E501
]


def test_there_are_enough_questions() -> None:
    assert len(CASES) >= 60 and len({q for q, _ in CASES}) == len(CASES)


@pytest.mark.parametrize("question,expected", CASES, ids=[q for q, _ in CASES])
def test_question_maps_to_the_expected_query(question: str, expected: SemanticQuery) -> None:
    q, read = parse_question(question, values=VALUES, now=NOW)
    assert q == expected
    assert parse_question(question, values=VALUES, now=NOW)[0] == q  # deterministic
    body = {k: v for k, v in q.as_dict().items() if k != "notes"}
    assert validate(body) == dataclasses.replace(expected, notes=())  # a valid semantic body
    assert read["metrics"] == list(expected.metrics)


REFUSED = [
    ("weather in paris", "unmapped_question"),
    ("revenu by chanel", "unmapped_question"),
    ("revenue by colour", "unmapped_question"),
    ("", "invalid_question"),
    ("what is up", "unmapped_question"),
    ("revenue last fortnight", "unmapped_question"),
    ("refund rate for card payments in EUR", "unsupported_dimension"),  # orders carry no method
    ("revenue as of today 23:00", "as_of_in_future"),
    ("revenue for cards today", "unmapped_question"),
    ("active sessions as of yesterday noon", "invalid_query"),  # computed by GET /v1/metrics only
    ("stock on hand today vs yesterday", "unsupported_window"),  # a snapshot has no window
    ("revenue today vs yesterday vs last week", "ambiguous_question"),
    ("orders last hour today", "ambiguous_question"),
    ("top 5 by revenue", "unmapped_question"),
]


@pytest.mark.parametrize("question,code", REFUSED)
def test_unmappable_questions_are_refused_with_suggestions(question: str, code: str) -> None:
    with pytest.raises(QuestionError) as exc:
        parse_question(question, values=VALUES, now=NOW)
    assert exc.value.code == code, exc.value.message
    assert exc.value.details and exc.value.details["examples"]


def test_suggestions_name_close_matches_also_among_live_values() -> None:
    with pytest.raises(QuestionError) as exc:
        parse_question("revenu by chanel", values=VALUES, now=NOW)
    assert exc.value.details["suggestions"]["revenu"][0] == "revenue"
    assert exc.value.details["suggestions"]["chanel"][0] == "channel"
    with pytest.raises(QuestionError) as exc:
        parse_question("revenue for cards today", values=VALUES, now=NOW)
    assert "card" in exc.value.details["suggestions"]["cards"]
    with pytest.raises(QuestionError) as exc:
        parse_question("refund rate for card payments in EUR", values=VALUES, now=NOW)
    assert exc.value.details["metrics_with"] == {"method": ["payment_failure_rate"]}


def test_live_values_are_asked_only_when_words_are_left_and_once_per_dimension() -> None:
    asked: list[str] = []

    def values(dim: str) -> list[str]:
        asked.append(dim)
        return VALUES.get(dim, [])

    parse_question("revenue by channel today", values=values, now=NOW)
    assert asked == []
    q, _ = parse_question("card declines today", values=values, now=NOW)
    assert dict(q.filters) == {"method": "card"} and sorted(asked) == ["category", "channel", "method"]
    with pytest.raises(QuestionError):  # without the lookup, a value is just an unknown word
        parse_question("card declines today", now=NOW)


def test_a_value_of_two_dimensions_is_read_as_the_one_the_metric_offers() -> None:
    values = {"channel": ["retail"], "category": ["retail"]}
    q, _ = parse_question("orders from retail today", values=values, now=NOW)
    assert dict(q.filters) == {"channel": "retail"}  # order_count has channel, not category
    q, _ = parse_question("units sold for retail today", values=values, now=NOW)
    assert dict(q.filters) == {"category": "retail"}
    with pytest.raises(QuestionError) as exc:  # neither: the question must say which
        parse_question("conversion rate for retail today", values=values, now=NOW)
    assert exc.value.code == "ambiguous_question" and exc.value.details["options"] == {
        "category": "retail",
        "channel": "retail",
    }


def test_the_vocabulary_comes_from_the_contracts() -> None:
    metrics, dims = vocabulary(REGISTRY)
    assert "takings" in metrics["revenue"] and "card" not in dims.get("method", ())
    assert dims["method"][0] == "payment method" and vocabulary_problems(REGISTRY) == []
    doc = (
        "kind: metric\nname: x\nversions:\n- {version: 1.0.0, released: '2026-12-01', status: stable,"
        " description: d, unit: u,"
        " formula: f, tables: [orders], dimensions: [channel], windows: [1h], moved_by: [OrderPlaced],"
        " freshness_budget_seconds: 1, fields: {value: {type: number, required: true, description: v}},"
        " synonyms: [takings], dimension_synonyms: {channel: [route]}}\n"
    )
    clash = Registry([*[c for vs in REGISTRY.versions.values() for c in vs], *parse_contract_file(doc, "x")])
    assert vocabulary_problems(clash) == ["'takings' names both metric revenue and metric x"]
    with pytest.raises(ContractError, match="not a dimension"):
        parse_contract_file(doc.replace("{channel: [route]}", "{method: [route]}"), "x")
    with pytest.raises(ContractError, match="lower-case"):
        parse_contract_file(doc.replace("[takings]", "[Takings]"), "x")


def test_semantic_options_are_validated() -> None:
    base = {"metrics": ["revenue"], "dimensions": ["channel"]}
    assert validate(base).as_dict() == {
        "metrics": ["revenue"],
        "dimensions": ["channel"],
        "filters": {},
        "window": "1h",
        "grain": None,
    }  # bodies without the new keys mean (and fingerprint) what they did
    for bad in (
        {"order_by": "orders"},
        {"direction": "desc"},
        {"order_by": "revenue", "direction": "up"},
        {"top": 0},
        {"top": True},
        {"compare": "2h"},
        {"as_of": "yesterday"},
        {"compare": "24h", "grain": "1h"},
    ):
        with pytest.raises(SemanticError):
            validate({**base, **bad})
    q = validate({**base, "order_by": "revenue", "top": 3, "as_of": "2026-05-05T12:00:00+02:00"})
    assert (q.direction, q.as_of) == ("desc", "2026-05-05T10:00:00Z")
