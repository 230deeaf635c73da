"""The OpenAPI schema: served at /schema/openapi.json, equal to the checked-in docs/openapi.json
(regenerate with ``make openapi`` when a route changes on purpose)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from services.api.app import openapi_document

CHECKED_IN = Path(__file__).resolve().parents[3] / "docs" / "openapi.json"


def test_the_served_schema_is_the_checked_in_one(client: TestClient[Any]) -> None:
    served = client.get("/schema/openapi.json")
    assert served.status_code == 200, served.text
    checked_in = json.loads(CHECKED_IN.read_text())
    assert served.json() == checked_in, "the API changed: run `make openapi` and commit docs/openapi.json"
    assert openapi_document() == checked_in
    assert client.get("/schema").status_code == 200  # the docs page


def test_every_operation_declares_its_errors_in_the_one_error_shape() -> None:
    doc = json.loads(CHECKED_IN.read_text())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)


def test_no_parameter_is_documented_as_nullable() -> None:
    """A header or query string cannot be null: an optional one is ``required: false``."""
    doc = json.loads(CHECKED_IN.read_text())
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for param in op.get("parameters", []):
                text = json.dumps(param["schema"])
                assert '"null"' not in text and "null]" not in text, (method, path, param["name"])
