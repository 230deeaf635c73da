"""``/v1/contracts``: versioned metric and entity contracts — list, read a version, diff two versions,
validate a proposed next version."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, PathParameter

from readmodels.contract_diff import diff, validate_proposal
from readmodels.contract_registry import REGISTRY, Contract
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors


class VersionStatus(msgspec.Struct):
    version: str
    status: str


class ContractSummary(msgspec.Struct):
    name: str
    kind: str
    version: str
    status: str
    description: str
    versions: list[VersionStatus]
    moved_by: list[str]


class ContractList(msgspec.Struct):
    contracts: list[ContractSummary]
    total: int


Name = Annotated[str, PathParameter(description="a metric or entity name, e.g. revenue, order")]
Version = Annotated[str, PathParameter(description="a semantic version, e.g. 1.1.0")]
# a contract document: name, kind, version, status, description, unit, formula, tables, moved_by,
# fields, ... (readmodels/contracts/*.yaml), plus current_version and versions
ContractDoc = dict[str, Any]


def _versions(name: str) -> list[Contract]:
    versions = REGISTRY.versions.get(name)
    if not versions:
        raise ApiError(404, "unknown_contract", f"unknown contract {name!r}", {"available": REGISTRY.names()})
    return versions


def _version(name: str, version: str) -> Contract:
    found = REGISTRY.get(name, version)
    if found is None:
        available = [c.version for c in _versions(name)]
        raise ApiError(404, "unknown_version", f"{name} has no version {version!r}", {"available": available})
    return found


def _doc(c: Contract) -> ContractDoc:
    return {
        "name": c.name,
        "kind": c.kind,
        "current_version": REGISTRY.current(c.name).version,
        "versions": [v.version for v in REGISTRY.versions[c.name]],
        **c.doc,
    }


@get("/v1/contracts", opt=READ, responses=errors(401, 422), sync_to_thread=False)
def list_contracts(
    tenant: NamedDependency[str], kind: FromQuery[Literal["metric", "entity"] | None] = None
) -> ContractList:
    items = []
    for name in REGISTRY.names(kind):
        c = REGISTRY.current(name)
        versions = [VersionStatus(v.version, v.status) for v in REGISTRY.versions[name]]
        summary = ContractSummary(
            name, c.kind, c.version, c.status, c.doc["description"], versions, list(c.moved_by)
        )
        items.append(summary)
    return ContractList(items, len(items))


@get("/v1/contracts/{name:str}", opt=READ, responses=errors(401, 404), sync_to_thread=False)
def get_contract(tenant: NamedDependency[str], name: Name) -> ContractDoc:
    _versions(name)
    return _doc(REGISTRY.current(name))


@get("/v1/contracts/{name:str}/{version:str}", opt=READ, responses=errors(401, 404), sync_to_thread=False)
def get_contract_version(tenant: NamedDependency[str], name: Name, version: Version) -> ContractDoc:
    return _doc(_version(name, version))


@get(
    "/v1/contracts/{name:str}/diff/{from_version:str}/{to_version:str}", opt=READ,
    responses=errors(401, 404),
    sync_to_thread=False,
)
def diff_contract(
    tenant: NamedDependency[str], name: Name, from_version: Version, to_version: Version
) -> dict[str, Any]:
    """``compatibility`` (identical, additive or breaking) with the breaking and additive changes."""
    return diff(_version(name, from_version), _version(name, to_version))


@post(
    "/v1/contracts/{name:str}/validate", opt=READ,
    status_code=200,
    responses=errors(401, 404, 413, 422),
    sync_to_thread=False,
)
def validate_contract(
    tenant: NamedDependency[str], name: Name, data: JSONBody[dict[str, Any]]
) -> dict[str, Any]:
    """Body: a proposed next version (or ``{"contract": {...}}``). 200 with ``valid`` and the reasons
    either way."""
    _versions(name)
    proposal = data["contract"] if isinstance(data.get("contract"), dict) else data
    return validate_proposal(REGISTRY.current(name), proposal)


CONTRACT_ROUTES = [list_contracts, get_contract, get_contract_version, diff_contract, validate_contract]
