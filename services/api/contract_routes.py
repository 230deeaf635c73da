"""Versioned metric and entity contracts: list, read a version, diff two versions, validate a proposal."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get, post

from readmodels.contract_diff import diff, validate_proposal
from readmodels.contract_registry import REGISTRY, Contract
from services.api.context import json_body, json_response, tenant_of
from services.api.errors import ApiError


def _contract(name: str) -> list[Contract]:
    versions = REGISTRY.versions.get(name)
    if not versions:
        raise ApiError(404, "unknown_contract", f"unknown contract {name!r}", {"available": REGISTRY.names()})
    return versions


def _version(name: str, version: str) -> Contract:
    found = REGISTRY.get(name, version)
    if found is None:
        available = [c.version for c in _contract(name)]
        raise ApiError(404, "unknown_version", f"{name} has no version {version!r}", {"available": available})
    return found


def _body(c: Contract) -> dict[str, Any]:
    return {
        "name": c.name,
        "kind": c.kind,
        "current_version": REGISTRY.current(c.name).version,
        "versions": [v.version for v in REGISTRY.versions[c.name]],
        **c.doc,
    }


@get("/v1/contracts")
async def list_contracts(request: Request[Any, Any, Any]) -> Response[bytes]:
    tenant_of(request)
    kind = request.query_params.get("kind")
    items = []
    for name in REGISTRY.names(kind):
        c = REGISTRY.current(name)
        items.append(
            {
                "name": name,
                "kind": c.kind,
                "version": c.version,
                "status": c.status,
                "description": c.doc["description"],
                "versions": [{"version": v.version, "status": v.status} for v in REGISTRY.versions[name]],
                "moved_by": list(c.moved_by),
            }
        )
    return json_response({"contracts": items, "total": len(items)})


@get("/v1/contracts/{name:str}")
async def get_contract(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    tenant_of(request)
    _contract(name)
    return json_response(_body(REGISTRY.current(name)))


@get("/v1/contracts/{name:str}/{version:str}")
async def get_contract_version(request: Request[Any, Any, Any], name: str, version: str) -> Response[bytes]:
    tenant_of(request)
    return json_response(_body(_version(name, version)))


@get("/v1/contracts/{name:str}/diff/{from_version:str}/{to_version:str}")
async def diff_contract(
    request: Request[Any, Any, Any], name: str, from_version: str, to_version: str
) -> Response[bytes]:
    tenant_of(request)
    return json_response(diff(_version(name, from_version), _version(name, to_version)))


@post("/v1/contracts/{name:str}/validate", status_code=200)
async def validate_contract(request: Request[Any, Any, Any], name: str) -> Response[bytes]:
    """Body: a proposed next version document. 200 with ``valid`` and the reasons either way."""
    tenant_of(request)
    _contract(name)
    proposal = await json_body(request)
    if "contract" in proposal and isinstance(proposal["contract"], dict):
        proposal = proposal["contract"]
    return json_response(validate_proposal(REGISTRY.current(name), proposal))


CONTRACT_ROUTES = [list_contracts, get_contract, get_contract_version, diff_contract, validate_contract]
