"""Contracts: files validate at import and are the catalog's source; diff and validate rules (the
endpoints: tests/integration/api/test_contracts.py)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from domain.events import EVENT_TYPES
from readmodels.catalog import build_catalog
from readmodels.contract_diff import (
    diff_docs,
    document,
    reference_diff,
    validate_candidate,
    validate_proposal,
)
from readmodels.contract_registry import REGISTRY, ContractError, load_registry, parse_contract_file
from readmodels.metrics import METRICS


def _metric_doc(**over: Any) -> dict[str, Any]:
    doc = copy.deepcopy(REGISTRY.current("revenue").doc)
    doc.update(over)
    return doc


def test_every_metric_and_entity_has_a_contract_and_the_catalog_is_built_from_them() -> None:
    assert set(REGISTRY.names("metric")) == set(METRICS)
    assert set(REGISTRY.names("entity")) == {"order", "user", "product", "session"}
    catalog = build_catalog()
    for name, m in catalog["metrics"].items():
        c = REGISTRY.current(name)
        assert m["contract_version"] == c.version
        assert m["source_events"] == sorted(c.moved_by) == sorted(METRICS[name].source_events)
        assert set(m) >= {"description", "unit", "available_windows", "source_table"}
        assert all(isinstance(v, str) for v in m["source_events"])
    for e in catalog["entities"].values():
        assert set(e) == {"description", "fields", "primary_key", "contract_version"}
        assert all(isinstance(v, str) for v in e["fields"].values())
    # the API.md fields existing clients read are declared
    assert {"order_id", "user_id", "status", "total_amount", "currency", "created_at"} <= set(
        catalog["entities"]["order"]["fields"]
    )
    assert catalog["metrics"]["error_rate"]["source_events"] == sorted(EVENT_TYPES)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"moved_by": ["OrderPlaced", "NoSuchEvent"]}, "unknown event type NoSuchEvent"),
        ({"tables": ["nope"]}, "unknown table nope"),
        ({"windows": ["3m"]}, "unknown window 3m"),
        ({"dimensions": ["category"]}, "table orders has no column category"),
        ({"status": "beta"}, "status must be"),
        ({"version": "1.2"}, "MAJOR.MINOR.PATCH"),
        ({"freshness_budget_seconds": 0}, "freshness_budget_seconds"),
        ({"fields": {"value": {"type": "decimal", "required": True, "description": "x"}}}, "type must be"),
        ({"surprise": 1}, "unknown keys surprise"),
        ({"released": "24 Nov 2026"}, "released must be a date"),
        ({"released": None}, "released must be a date"),
    ],
)
def test_a_bad_contract_file_is_rejected_at_load(patch: dict[str, Any], message: str) -> None:
    text = yaml.safe_dump({"kind": "metric", "name": "revenue", "versions": [_metric_doc(**patch)]})
    with pytest.raises(ContractError, match=message):
        parse_contract_file(text, "revenue.yaml")


def test_a_contract_file_says_when_each_version_was_released() -> None:
    assert all(c.doc["released"] for vs in REGISTRY.versions.values() for c in vs)
    doc = _metric_doc()
    del doc["released"]
    with pytest.raises(ContractError, match="missing released"):
        parse_contract_file(yaml.safe_dump({"kind": "metric", "name": "revenue", "versions": [doc]}), "r")
    assert validate_proposal(REGISTRY.current("revenue"), {**doc, "version": "1.2.0"})["valid"]  # optional


def test_versions_must_increase_and_the_name_must_match_the_file(tmp_path: Any) -> None:
    v1, v2 = _metric_doc(version="1.0.0"), _metric_doc(version="1.1.0")
    text = yaml.safe_dump({"kind": "metric", "name": "revenue", "versions": [v2, v1]})
    with pytest.raises(ContractError, match="increasing"):
        parse_contract_file(text, "revenue.yaml")
    (tmp_path / "other.yaml").write_text(
        yaml.safe_dump({"kind": "metric", "name": "revenue", "versions": [v1]})
    )
    with pytest.raises(ContractError, match="file name"):
        load_registry(tmp_path)


def test_diff_rules() -> None:
    old = REGISTRY.get("order", "1.1.0")
    assert old is not None
    doc = copy.deepcopy(old.doc)
    fields = doc["fields"]
    del fields["channel"]  # removed field
    fields["total_amount"]["type"] = "string"  # type change
    fields["status"]["enum"].remove("cancelled")  # removed enum value
    fields["payment_status"]["enum"].append("failed")  # added enum value
    fields["loyalty_tier"] = {"type": "string", "required": True, "description": "new required"}
    fields["gift_note"] = {"type": "string", "required": False, "description": "new optional"}
    changes = {(c["kind"], c["path"], c["change"]) for c in diff_docs(old.doc, doc)}
    assert changes == {
        ("breaking", "fields.channel", "field_removed"),
        ("breaking", "fields.total_amount", "type_changed"),
        ("breaking", "fields.status", "enum_value_removed"),
        ("additive", "fields.payment_status", "enum_value_added"),
        ("breaking", "fields.loyalty_tier", "required_field_added"),
        ("additive", "fields.gift_note", "field_added"),
    }


def test_validate_proposal_requires_the_matching_version_bump() -> None:
    current = REGISTRY.current("revenue")
    additive = _metric_doc(
        version="1.2.0", dimensions=["currency", "channel"], grains=["1m", "5m", "1h", "1d"]
    )
    additive["fields"] = {
        **additive["fields"],
        "components.note": {"type": "string", "required": False, "description": "n"},
    }
    assert validate_proposal(current, additive)["valid"]
    breaking = _metric_doc(version="1.2.0", windows=["1h"])
    result = validate_proposal(current, breaking)
    assert not result["valid"] and result["compatibility"] == "breaking"
    assert "major" in result["errors"][0]
    assert validate_proposal(current, {**breaking, "version": "2.0.0"})["valid"]
    assert not validate_proposal(current, _metric_doc(version="1.0.0"))["valid"]
    assert not validate_proposal(current, {"version": "9.0.0"})["valid"]


def test_the_reference_clients_view_of_a_contract() -> None:
    """Existing clients read an entity schema: entity, released, a fields list, changes as
    {type, field, severity} records (API.md)."""
    old, new = REGISTRY.get("order", "1.0.0"), REGISTRY.get("order", "1.1.0")
    assert old is not None and new is not None
    doc = document(REGISTRY, new)
    assert (doc["entity"], doc["version"], doc["released"], doc["status"]) == (
        "order", "1.1.0", new.doc["released"], "stable"
    )
    by_name = {f["name"]: f for f in doc["fields"]}
    assert list(by_name) == list(new.doc["fields"]) and doc["field_specs"] == new.doc["fields"]
    assert by_name["order_id"] == {
        "name": "order_id", "type": "string", "required": True, "description": "ORD-YYYYMMDD-NNNN"
    }
    assert by_name["status"]["values"][-1] == "refunded" and by_name["payment_id"]["nullable"] is True
    assert doc["breaking_changes"] == [] and document(REGISTRY, old)["breaking_changes"] == []
    d = reference_diff(old, new)
    assert (d["entity"], d["from_version"], d["to_version"], d["breaking_changes"]) == (
        "order", "1.0.0", "1.1.0", []
    )
    added = {(c["type"], c["field"], c["severity"]) for c in d["additive_changes"]}
    assert ("enum_value_added", "status", "non_breaking") in added
    assert ("field_added", "channel", "non_breaking") in added
    back = reference_diff(new, old)
    assert ("field_removed", "channel", "breaking") in {
        (c["type"], c["field"], c["severity"]) for c in back["breaking_changes"]
    }


def test_validate_a_reference_candidate_against_the_latest_stable_version() -> None:
    current = REGISTRY.current("order")
    fields = [{"name": f["name"], **{k: v for k, v in f.items() if k != "name"}} for f in
              document(REGISTRY, current)["fields"]]  # fmt: skip
    same = validate_candidate(current, {"entity": "order", "fields": fields})
    assert (same["base_version"], same["candidate_version"], same["is_breaking"]) == ("1.1.0", "1.1.0", False)
    assert same["breaking_changes"] == same["safe_changes"] == [] and not same["requires_version_bump"]
    assert not same["valid"]  # the same version again is not a next version
    # a removed field and a new optional one: breaking, and 1.2.0 is not a new major version
    fewer = [f for f in fields if f["name"] != "channel"] + [
        {"name": "gift_note", "type": "string", "required": False, "unit": "x", "default": ""}
    ]
    minor = validate_candidate(current, {"version": "1.2.0", "fields": fewer})
    assert minor["is_breaking"] and minor["requires_version_bump"] and not minor["valid"]
    assert [(c["type"], c["field"]) for c in minor["breaking_changes"]] == [("field_removed", "channel")]
    assert ("field_added", "gift_note", "safe") in {(c["type"], c["field"], c["severity"]) for c in
                                                     minor["safe_changes"]}  # fmt: skip
    major = validate_candidate(current, {"version": "2", "fields": fewer})
    assert major["candidate_version"] == "2.0.0" and major["is_breaking"]
    assert not major["requires_version_bump"]
    assert major["valid"], major["errors"]
    # the reference's own type names are not ours: a type change, breaking, and not a valid document
    typed = validate_candidate(current, {"version": "v2", "fields": [{**fields[0], "type": "text"}]})
    assert not typed["valid"] and ("field_type_changed", "order_id") in {
        (c["type"], c["field"]) for c in typed["breaking_changes"]
    }
    junk = validate_candidate(current, {"fields": [1, {"name": ""}], "version": []})
    assert not junk["valid"] and junk["is_breaking"] and junk["requires_version_bump"]
    assert validate_candidate(current, {"contract": {"windows": 5, "fields": {"a": 1}}})["is_breaking"]
