"""``/v1/contracts``: versioned metric and entity contracts — list, read a version, diff two versions,
validate a proposed next version.

Each answer carries the reference clients' names beside ours (API.md): ``entity`` (the name), ``released``,
``fields`` as a list of ``{name, type, required, description, values?}`` (our mapping is ``field_specs``),
``from_version``/``to_version`` with ``breaking_changes``/``additive_changes``, and for a validation
``base_version``, ``candidate_version``, ``breaking_changes``, ``safe_changes``, ``is_breaking`` and
``requires_version_bump`` against the latest stable version."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, PathParameter

from readmodels.contract_diff import document, reference_diff, validate_candidate
from readmodels.contract_registry import REGISTRY, Contract
from services.api.dependencies import READ
from services.api.errors import ApiError
from services.api.openapi import errors

Unset = msgspec.UnsetType
UNSET = msgspec.UNSET
Change = dict[str, Any]  # ours: {kind, path, change, from, to}; the reference's: {type, field, severity, ...}


class VersionStatus(msgspec.Struct):
    version: str
    status: str
    released: str


class ContractSummary(msgspec.Struct):
    name: str
    kind: str
    version: str  # the current (newest stable) version
    status: str
    description: str
    versions: list[VersionStatus]
    moved_by: list[str]
    entity: str  # the name, as existing clients read it
    released: str  # the current version's release date, YYYY-MM-DD


class ContractField(msgspec.Struct, omit_defaults=True):
    name: str
    type: str
    required: bool
    description: str
    values: list[str] | None = None  # an enum field's allowed values
    nullable: bool = False


class FieldSpec(msgspec.Struct, omit_defaults=True):
    type: str
    required: bool
    description: str
    enum: list[str] | None = None
    nullable: bool = False


class ContractDocument(msgspec.Struct, omit_defaults=True):
    """One contract version (readmodels/contracts/*.yaml) with the reference clients' names beside ours."""

    name: str
    kind: str
    entity: str
    version: str
    released: str
    status: str
    current_version: str
    versions: list[str]
    description: str
    tables: list[str]
    moved_by: list[str]
    freshness_budget_seconds: int | float
    fields: list[ContractField]
    field_specs: dict[str, FieldSpec]
    breaking_changes: list[Change]  # from the version before this one
    primary_key: str | Unset = UNSET  # entity contracts
    unit: str | Unset = UNSET  # metric contracts from here on
    formula: str | Unset = UNSET
    dimensions: list[str] | Unset = UNSET
    windows: list[str] | Unset = UNSET
    grains: list[str] | Unset = UNSET
    money: bool | Unset = UNSET


class ContractDiff(msgspec.Struct, rename={"from_": "from"}):
    name: str
    from_: str
    to: str
    compatibility: str  # none, additive or breaking
    breaking: list[Change]
    additive: list[Change]
    info: list[Change]
    entity: str
    from_version: str
    to_version: str
    breaking_changes: list[Change]
    additive_changes: list[Change]


class ContractValidation(msgspec.Struct):
    name: str
    current_version: str
    proposed_version: Any
    valid: bool
    errors: list[str]
    compatibility: str | None
    changes: list[Change]
    entity: str
    base_version: str  # the latest stable version
    candidate_version: str
    breaking_changes: list[Change]
    safe_changes: list[Change]
    is_breaking: bool
    requires_version_bump: bool  # breaking changes without a new major version


class ContractList(msgspec.Struct):
    contracts: list[ContractSummary]
    total: int


Name = Annotated[str, PathParameter(description="a metric or entity name, e.g. revenue, order")]
Version = Annotated[str, PathParameter(description="a semantic version, e.g. 1.1.0")]


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


def _doc(c: Contract) -> ContractDocument:
    return msgspec.convert(document(REGISTRY, c), ContractDocument)


@get("/v1/contracts", opt=READ, responses=errors(401, 422), sync_to_thread=False)
def list_contracts(
    tenant: NamedDependency[str], kind: FromQuery[Literal["metric", "entity"] | None] = None
) -> ContractList:
    items = []
    for name in REGISTRY.names(kind):
        c = REGISTRY.current(name)
        versions = [VersionStatus(v.version, v.status, v.doc["released"]) for v in REGISTRY.versions[name]]
        summary = ContractSummary(
            name, c.kind, c.version, c.status, c.doc["description"], versions, list(c.moved_by), name,
            c.doc["released"],
        )
        items.append(summary)
    return ContractList(items, len(items))


@get("/v1/contracts/{name:str}", opt=READ, responses=errors(401, 404), sync_to_thread=False)
def get_contract(tenant: NamedDependency[str], name: Name) -> ContractDocument:
    _versions(name)
    return _doc(REGISTRY.current(name))


@get("/v1/contracts/{name:str}/{version:str}", opt=READ, responses=errors(401, 404), sync_to_thread=False)
def get_contract_version(tenant: NamedDependency[str], name: Name, version: Version) -> ContractDocument:
    return _doc(_version(name, version))


@get(
    "/v1/contracts/{name:str}/diff/{from_version:str}/{to_version:str}", opt=READ,
    responses=errors(401, 404),
    sync_to_thread=False,
)
def diff_contract(
    tenant: NamedDependency[str], name: Name, from_version: Version, to_version: Version
) -> ContractDiff:
    """``compatibility`` (none, additive or breaking) with the breaking, additive and info changes."""
    out = reference_diff(_version(name, from_version), _version(name, to_version))
    return msgspec.convert(out, ContractDiff)


@post(
    "/v1/contracts/{name:str}/validate", opt=READ,
    status_code=200,
    responses=errors(400, 401, 404, 413, 422),
    sync_to_thread=False,
)
def validate_contract(
    tenant: NamedDependency[str], name: Name, data: JSONBody[dict[str, Any]]
) -> ContractValidation:
    """Body: a proposed next version (or ``{"contract": {...}}``), or a candidate schema as existing
    clients send it, ``{entity?, version?, fields: [{name, type, required, description?, values?}]}``.
    200 with ``valid`` and the reasons either way, checked against the latest stable version; 400
    ``entity_mismatch`` when the candidate names another contract."""
    _versions(name)
    entity = data.get("entity")
    if entity is not None and entity != name:
        raise ApiError(400, "entity_mismatch", f"the candidate is for {entity!r}, not {name!r}")
    return msgspec.convert(validate_candidate(REGISTRY.current(name), data), ContractValidation)


CONTRACT_ROUTES = [list_contracts, get_contract, get_contract_version, diff_contract, validate_contract]
