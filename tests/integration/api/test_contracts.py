"""The contract endpoints over HTTP, in process."""

from __future__ import annotations

import copy
from typing import Any

from litestar.testing import TestClient

from readmodels.contract_registry import REGISTRY
from readmodels.metrics import METRICS

from .conftest import A


def _metric_doc(**over: Any) -> dict[str, Any]:
    doc = copy.deepcopy(REGISTRY.current("revenue").doc)
    doc.update(over)
    return doc


def test_contract_endpoints(client: TestClient[Any]) -> None:
    client.headers.update(A)
    listing = client.get("/v1/contracts").json()
    assert listing["total"] == len(REGISTRY.names()) and {c["name"] for c in listing["contracts"]} >= set(
        METRICS
    )
    assert {
        c["kind"] for c in client.get("/v1/contracts", params={"kind": "entity"}).json()["contracts"]
    } == {"entity"}
    rev = client.get("/v1/contracts/revenue").json()
    assert rev["version"] == "1.1.0" and rev["versions"] == ["1.0.0", "1.1.0"]
    assert rev["moved_by"] == ["OrderPlaced", "OrderCancelled"] and rev["status"] == "stable"
    old = client.get("/v1/contracts/revenue/1.0.0").json()
    assert old["status"] == "deprecated" and "7d" not in old["windows"]
    d = client.get("/v1/contracts/revenue/diff/1.0.0/1.1.0").json()
    assert d["compatibility"] == "additive" and not d["breaking"]
    assert {(c["path"], c["to"]) for c in d["additive"]} >= {("windows", "7d"), ("dimensions", "channel")}
    back = client.get("/v1/contracts/revenue/diff/1.1.0/1.0.0").json()
    assert back["compatibility"] == "breaking"
    order = client.get("/v1/contracts/order/diff/1.0.0/1.1.0").json()
    assert order["compatibility"] == "additive"
    assert ("fields.status", "refunded") in {(c["path"], c["to"]) for c in order["additive"]}

    ok = client.post("/v1/contracts/revenue/validate", json=_metric_doc(version="2.0.0", unit="cents"))
    assert ok.status_code == 200 and ok.json()["valid"] and ok.json()["compatibility"] == "breaking"
    bad = client.post(
        "/v1/contracts/revenue/validate", json={"contract": _metric_doc(moved_by=["Nope"])}
    ).json()
    assert not bad["valid"] and any("Nope" in e for e in bad["errors"])

    # the names existing clients read, beside ours (API.md)
    summary = next(c for c in listing["contracts"] if c["name"] == "order")
    assert (summary["entity"], summary["released"]) == ("order", REGISTRY.current("order").doc["released"])
    doc = client.get("/v1/contracts/order").json()
    assert doc["entity"] == "order" and doc["released"] == REGISTRY.current("order").doc["released"]
    names = list(REGISTRY.current("order").doc["fields"])
    assert [f["name"] for f in doc["fields"]] == list(doc["field_specs"]) == names
    assert doc["breaking_changes"] == [] and doc["fields"][0]["required"] is True
    assert (order["entity"], order["from_version"], order["to_version"], order["breaking_changes"]) == (
        "order", "1.0.0", "1.1.0", []
    )
    assert ("enum_value_added", "status") in {(c["type"], c["field"]) for c in order["additive_changes"]}
    fields = [f for f in doc["fields"] if f["name"] != "channel"]
    candidate = {"entity": "order", "version": "1.2.0", "fields": fields}
    ref = client.post("/v1/contracts/order/validate", json=candidate)
    assert ref.status_code == 200, ref.text
    v = ref.json()
    assert (v["base_version"], v["candidate_version"], v["is_breaking"], v["requires_version_bump"]) == (
        "1.1.0", "1.2.0", True, True
    )
    assert [(c["type"], c["field"]) for c in v["breaking_changes"]] == [("field_removed", "channel")]
    assert not v["valid"] and v["compatibility"] == "breaking"
    other = client.post("/v1/contracts/order/validate", json={"entity": "user", "fields": fields})
    assert other.status_code == 400 and other.json()["error"]["code"] == "entity_mismatch"

    for path in (
        "/v1/contracts/nope",
        "/v1/contracts/revenue/9.9.9",
        "/v1/contracts/revenue/diff/1.0.0/3.0.0",
    ):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["detail"]
    assert client.get("/v1/contracts", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/contracts/revenue/validate", content=b"[1]").status_code == 422
    client.headers.pop("X-API-Key")
