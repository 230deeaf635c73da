"""The OpenAPI description of the API: the error shape of API.md, the X-API-Key scheme, the
responses each route declares, and the schema tidied of what Litestar documents that we never send.

Routes attach ``errors(401, 404, 422)`` to their ``responses``; every error body is :class:`ErrorBody`.
A route that reads a body declares 413 (larger than AGENTFLOW_MAX_BODY_BYTES).

Served: the schema at /schema/openapi.json (and .yaml), and a docs page at /schema (Redoc) that loads the
schema from there, so the page holds no inline script and runs under a strict Content-Security-Policy
(services/api/http_guard.py DOCS_CSP). Litestar's other pages (Swagger, Elements, RapiDoc) are not served:
each inlines its start-up script.
"""

from __future__ import annotations

import html
from dataclasses import fields, replace
from typing import Any

import msgspec
from litestar import Litestar, Request
from litestar.openapi import OpenAPIConfig, ResponseSpec
from litestar.openapi.plugins import JsonRenderPlugin, OpenAPIRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, OpenAPIType, Parameter, Schema, SecurityScheme

API_KEY_SCHEME = "ApiKey"
SECURED: list[dict[str, list[str]]] = [{API_KEY_SCHEME: []}]

_DESCRIPTIONS = {
    400: "refused: the request is well-formed but cannot run as asked (code says why)",
    401: "missing or invalid X-API-Key",
    403: "the key may not do this",
    404: "no such entity, resource or route",
    409: "a business rule refused the command (code says which); nothing was appended",
    413: "the body is too large",
    422: "malformed input: field errors in error.details",
    429: "past the key's budget (rate_limited) or too many refused keys from this address (auth_throttled); "
    "Retry-After says when to try again",
    503: "not ready (e.g. min_position not applied yet); Retry-After says when to try again",
}


class ErrorDetail(msgspec.Struct):
    code: str
    message: str
    details: Any = None


class ErrorBody(msgspec.Struct):
    """Every error: existing clients read ``detail``; ``error.code`` is machine-readable."""

    detail: str
    error: ErrorDetail
    correlation_id: str


def errors(*statuses: int) -> dict[int, ResponseSpec]:
    """Error responses of a route, in the one error shape."""
    return {
        s: ResponseSpec(ErrorBody, description=_DESCRIPTIONS.get(s, "error"), generate_examples=False)
        for s in statuses
    }


def body(struct: type[msgspec.Struct], description: str) -> ResponseSpec:
    """A success response's schema, for routes that return a bare ASGI response (hot reads) or answer
    another status besides their default: ``responses={200: body(TheStruct, "..."), **errors(...)}``."""
    return ResponseSpec(struct, description=description, generate_examples=False)


SCHEMA_PATH = "/schema"
# the HTML docs page answers at these paths (and gets the docs page's Content-Security-Policy)
DOCS_PATHS = frozenset((SCHEMA_PATH, f"{SCHEMA_PATH}/", f"{SCHEMA_PATH}/redoc"))
REDOC_ORIGIN = "https://cdn.redoc.ly"
REDOC_SCRIPT = f"{REDOC_ORIGIN}/redoc/latest/bundles/redoc.standalone.js"  # Litestar's own default


class DocsPage(OpenAPIRenderPlugin):
    """Redoc, reading the schema from /schema/openapi.json: one external script, nothing inline."""

    def __init__(self) -> None:
        super().__init__(path=["/", "/redoc"], favicon="", style="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        title = html.escape(str(openapi_schema["info"]["title"]))
        spec_url = html.escape(self.get_openapi_json_route(request), quote=True)
        return (
            "<!DOCTYPE html><html><head>"
            f"<title>{title}</title><meta charset=\"utf-8\"/>"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "</head><body>"
            f"<redoc spec-url=\"{spec_url}\"></redoc>"
            f"<script src=\"{REDOC_SCRIPT}\" crossorigin></script>"
            "</body></html>"
        ).encode()


def openapi_config() -> OpenAPIConfig:
    return OpenAPIConfig(
        title="AgentFlow",
        version="1",
        description="An event-native metrics layer: commands become events, reads say how fresh they are.",
        path=SCHEMA_PATH,
        render_plugins=[DocsPage(), JsonRenderPlugin(), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                API_KEY_SCHEME: SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header")
            }
        ),
        security=SECURED,
        create_examples=False,
    )


def _number(schema: Schema) -> None:
    """``int | float`` is documented by Litestar as oneOf integer/number, which a whole number matches
    twice (so it fails oneOf); every integer is a JSON number, so it is one ``number``."""
    for prop in (schema.properties or {}).values():
        if isinstance(prop, Schema):
            kinds = {getattr(s, "type", None) for s in prop.one_of or ()}
            if kinds == {OpenAPIType.INTEGER, OpenAPIType.NUMBER}:
                prop.one_of, prop.type = None, OpenAPIType.NUMBER
            _number(prop)


def _not_null(schema: Schema) -> None:
    """An optional parameter is one the request leaves out (``required: false``); Litestar documents an
    ``X | None`` one as nullable too, which a header or a query string cannot spell (a client would
    send the text "null"), so the null is dropped: ``oneOf [X, null]`` becomes X."""
    if schema.one_of is not None:
        kept = [s for s in schema.one_of if not (isinstance(s, Schema) and s.type == OpenAPIType.NULL)]
        if len(kept) == 1 and len(schema.one_of) == 2 and isinstance(kept[0], Schema):
            schema.one_of = None
            for field in fields(Schema):
                if getattr(schema, field.name) is None:
                    setattr(schema, field.name, getattr(kept[0], field.name))
    if isinstance(schema.type, list) and OpenAPIType.NULL in schema.type:
        kinds = [t for t in schema.type if t != OpenAPIType.NULL]
        schema.type = kinds[0] if len(kinds) == 1 else kinds
        if schema.enum is not None:
            schema.enum = [v for v in schema.enum if v is not None]


def tidy_schema(app: Litestar) -> None:
    """Drop the 400 "validation exception" Litestar documents for every route with parameters: we
    answer malformed input with 422 in the error shape instead (services/api/errors.py). A 400 a route
    declares itself (``errors(400, ...)``) stays. ``int | float`` becomes ``number``; an optional
    parameter is not nullable. Every route that takes a key (it documents 401) may also answer 403 (a
    key without the scope the route declares) and 429 (past the key's budget, or too many refused keys
    from the address: services/rate_limits.py)."""
    schema = app.openapi_schema
    for component in ((schema.components.schemas or {}) if schema.components else {}).values():
        _number(component)
    for item in (schema.paths or {}).values():
        for op in (item.get, item.post, item.put, item.patch, item.delete):
            if op is not None and op.responses is not None:
                declared = op.responses.get("400")
                if declared is not None and getattr(declared, "description", None) != _DESCRIPTIONS[400]:
                    op.responses.pop("400")
                unauthorized = op.responses.get("401")
                if unauthorized is not None and "403" not in op.responses:
                    op.responses["403"] = replace(unauthorized, description=_DESCRIPTIONS[403])  # type: ignore[type-var]
                if unauthorized is not None and "429" not in op.responses:
                    op.responses["429"] = replace(unauthorized, description=_DESCRIPTIONS[429])  # type: ignore[type-var]
            for param in (op.parameters or []) if op is not None else []:
                if isinstance(param, Parameter) and not param.required and isinstance(param.schema, Schema):
                    _not_null(param.schema)
