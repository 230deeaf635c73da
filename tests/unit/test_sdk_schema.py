"""The SDK's result types (sdk/python, ``agentflow_client.types``) against the response components of
the served schema (docs/openapi.json, itself checked against the app): same fields, same required
ones, same JSON types. A field added, renamed or retyped on either side fails here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from agentflow_client import types as sdk

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "docs" / "openapi.json").read_text())
COMPONENTS: dict[str, Any] = SCHEMA["components"]["schemas"]
REF = "#/components/schemas/{name}"

# every response component the SDK decodes (the SDK type has the component's name)
CHECKED = [
    sdk.MetricValue, sdk.EntityValue, sdk.ReadMeta, sdk.OrderTimeline, sdk.TimelineEvent, sdk.TimelineMeta,
    sdk.Stage, sdk.StageDuration, sdk.QueryResult, sdk.QueryMeta, sdk.QueryMetadata, sdk.SearchResults,
    sdk.SearchHit, sdk.SearchMeta, sdk.IndexStats, sdk.Catalog, sdk.EntityDoc, sdk.MetricDoc,
    sdk.AuditSource, sdk.HealthReport, sdk.HealthComponent, sdk.DeadLetterList, sdk.DeadLetterView,
    sdk.DeadLetterReplayed, sdk.OrderAck, sdk.PaymentAck, sdk.ProductAck, sdk.UserAck, sdk.SessionAck,
    sdk.ErrorBody, sdk.ErrorDetail, sdk.WhoAmI,
]  # fmt: skip


def shape(node: dict[str, Any]) -> str:
    """A schema node as its JSON type only (descriptions, patterns and bounds left out)."""
    if "$ref" in node:
        return node["$ref"].rsplit("/", 1)[-1]
    for union in ("anyOf", "oneOf"):
        if union in node:
            return "|".join(sorted({shape(n) for n in node[union]}))
    if "enum" in node:
        return "enum(" + ",".join(sorted(map(str, node["enum"]))) + ")"
    kind = node.get("type")
    if isinstance(kind, list):
        return "|".join(sorted(shape({**node, "type": k}) for k in kind))
    if kind == "array":
        return f"array[{shape(node.get('items', {}))}]"
    if kind == "object" and "properties" not in node:
        return f"map[{shape(node.get('additionalProperties') or {})}]"
    if kind is None:
        return "any"
    return f"{kind}:{node['format']}" if "format" in node else str(kind)


def properties(component: dict[str, Any]) -> dict[str, str]:
    return {name: shape(node) for name, node in component.get("properties", {}).items()}


SDK_SCHEMAS = msgspec.json.schema_components(CHECKED, ref_template=REF)[1]


def sdk_properties(sdk_type: type) -> dict[str, str]:
    """``properties`` of the SDK type's schema; msgspec leaves ``format: date-time`` out of a datetime's."""
    props = properties(SDK_SCHEMAS[sdk_type.__name__])
    info = msgspec.inspect.type_info(sdk_type)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        if isinstance(field.type, msgspec.inspect.DateTimeType):
            props[field.encode_name] = props[field.encode_name].replace("string", "string:date-time")
    return props


@pytest.mark.parametrize("sdk_type", CHECKED, ids=lambda t: t.__name__)
def test_sdk_type_matches_the_served_component(sdk_type: type) -> None:
    name = sdk_type.__name__
    served, ours = COMPONENTS[name], SDK_SCHEMAS[name]
    served_props, our_props = properties(served), sdk_properties(sdk_type)
    assert set(our_props) == set(served_props), f"{name}: fields differ"
    required = set(served.get("required", []))
    assert set(ours.get("required", [])) == required, f"{name}: required fields differ"
    for field, kind in served_props.items():
        mine = our_props[field]
        if field not in required:  # an optional field is None when the answer leaves it out
            mine = "|".join(sorted(set(mine.split("|")) - {"null"} | (set(kind.split("|")) & {"null"})))
        assert mine == kind, f"{name}.{field}: SDK {our_props[field]}, schema {kind}"


def test_every_command_answer_and_read_the_sdk_decodes_is_checked() -> None:
    """The 2xx answers of the paths the SDK calls are all among CHECKED."""
    paths = SCHEMA["paths"]
    sdk_paths = [
        ("/v1/metrics/{metric_name}", "get"), ("/v1/entity/{entity_type}/{entity_id}", "get"),
        ("/v1/entity/{entity_type}/{entity_id}/timeline", "get"), ("/v1/query", "post"),
        ("/v1/search", "get"), ("/v1/catalog", "get"), ("/v1/health", "get"), ("/v1/deadletter", "get"),
        ("/v1/deadletter/{letter_id}", "get"), ("/v1/deadletter/{letter_id}/replay", "post"),
        ("/v1/deadletter/{letter_id}/dismiss", "post"), ("/v1/orders", "post"), ("/v1/payments", "post"),
        ("/v1/products", "post"), ("/v1/users", "post"), ("/v1/sessions/{session_id}/events", "post"),
        ("/v1/whoami", "get"),
    ]  # fmt: skip
    names = {t.__name__ for t in CHECKED}
    for path, method in sdk_paths:
        for status, answer in paths[path][method]["responses"].items():
            if status.startswith("2") and "application/json" in answer.get("content", {}):
                ref = shape(answer["content"]["application/json"]["schema"])
                assert ref in names, (path, status, ref)
