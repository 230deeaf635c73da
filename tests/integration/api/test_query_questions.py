"""Questions through POST /v1/query in process: dimension values come from the caller's tenant's read
model, ``as of`` folds the event store (meta.is_historical), and the new semantic keys pass through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar.testing import TestClient

from .conftest import A, B
from .shop_commands import ok, order, product, user


def _query(c: TestClient[Any], h: dict[str, str], body: dict[str, Any], status: int = 200, **p: Any) -> Any:
    return ok(c.post("/v1/query", json=body, params=p, headers=h), status)


def test_questions_use_the_tenants_values_and_time_travel(client: TestClient[Any]) -> None:
    pid, _ = product(client, A, "QQ", category="qqcat")
    uid, _ = user(client, A, "QQ")
    position = 0
    for i in range(3):
        _, position = order(client, A, uid, pid, quantity=1 + i, channel="qqweb")
    _, position = order(client, A, uid, pid, quantity=1, channel="qqapp")
    asked_at = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    question = {"question": "orders from the qqweb channel in the last hour"}
    ans = _query(client, A, question, min_position=position)
    assert ans["interpretation"]["filters"] == {"channel": "qqweb"} and ans["rows"] == [{"order_count": 3}]
    refused = _query(client, B, question, 400)
    assert refused["error"]["code"] == "unmapped_question"  # another tenant's values are not vocabulary

    top = _query(client, A, {"question": "which channels had the most orders in the last hour"})
    counts = [r["order_count"] for r in top["rows"]]
    channels = [r["channel"] for r in top["rows"]]  # other tests' channels may be there too
    assert counts == sorted(counts, reverse=True) and channels.index("qqweb") < channels.index("qqapp")
    assert top["interpretation"]["order_by"] == "order_count" and "top" not in top["interpretation"]
    units = _query(client, A, {"question": "units sold for qqcat last hour"})
    assert units["rows"] == [{"units_sold": 1 + 2 + 3 + 1}]

    past = _query(client, A, {"question": "orders from qqweb last hour as of 5 minutes ago"})
    assert past["rows"] == [{"order_count": 0}]  # placed after that instant
    assert past["meta"]["is_historical"] is True and past["meta"]["as_of"] == past["interpretation"]["as_of"]
    body = {"metrics": ["order_count"], "filters": {"channel": "qqweb"}, "as_of": asked_at}
    assert _query(client, A, body)["rows"] == [{"order_count": 3}]  # folded from the event store

    ranked = _query(
        client,
        A,
        {"metrics": ["order_count"], "dimensions": ["channel"], "filters": {"channel": "qqweb"},
         "order_by": "order_count", "top": 1, "compare": "1h"},
    )  # fmt: skip
    assert ranked["columns"] == ["channel", "order_count", "order_count_compared", "order_count_change"]
    assert ranked["rows"] == [
        {"channel": "qqweb", "order_count": 3, "order_count_compared": 0, "order_count_change": 3}
    ]
