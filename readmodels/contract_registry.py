"""Versioned metric and entity contracts: load and validate ``readmodels/contracts/*.yaml`` at import.

One file per metric or entity: ``{kind, name, versions: [...]}``; every version is a full document
(version, released, status, description, unit, formula, tables, dimensions, windows, grains, moved_by,
freshness_budget_seconds, fields). ``released`` (``YYYY-MM-DD``) is required in the files and optional in a
proposed version. The newest stable version is the current one: it is the single
source of the catalog, of the metrics' source events and of cache invalidation.

A metric may also declare the words people use for it: ``synonyms`` (phrases naming the metric) and
``dimension_synonyms`` (dimension -> phrases naming that dimension); the question parser
(readmodels.query.question) builds its vocabulary from them. A phrase names one thing across all
current contracts (``vocabulary_problems``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from domain.events import EVENT_TYPES
from readmodels.schema import COLUMNS
from readmodels.windows import GRAINS, NOW, WINDOWS

CONTRACTS_DIR = Path(__file__).with_name("contracts")
KINDS = ("metric", "entity")
STATUSES = ("stable", "deprecated")
FIELD_TYPES = ("string", "number", "integer", "boolean", "timestamp", "object", "array")
# dimension -> the read-model column it filters
DIMENSION_COLUMNS: dict[str, str] = {
    "currency": "currency",
    "channel": "channel",
    "category": "category",
    "product": "product_id",
    "method": "method",
}
_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_COMMON = ("version", "status", "description", "tables", "moved_by", "freshness_budget_seconds", "fields")
_REQUIRED = {
    "metric": (*_COMMON, "unit", "formula", "dimensions", "windows"),
    "entity": (*_COMMON, "primary_key"),
}
_OPTIONAL = {
    "metric": ("released", "money", "grains", "synonyms", "dimension_synonyms"),
    "entity": ("released",),
}
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_PHRASE = re.compile(r"^[a-z0-9][a-z0-9' -]*[a-z0-9]$|^[a-z0-9]$")


def document_keys(kind: str) -> set[str]:
    """The keys a version document of ``kind`` may have."""
    return set(_REQUIRED[kind]) | set(_OPTIONAL[kind])


class ContractError(ValueError):
    """A contract document that does not validate."""


@dataclass(frozen=True, slots=True)
class Contract:
    """One version of a contract (``doc`` is the validated document as served)."""

    kind: str
    name: str
    version: str
    status: str
    doc: dict[str, Any]

    @property
    def moved_by(self) -> tuple[str, ...]:
        return tuple(self.doc["moved_by"])

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.doc["tables"])

    def get(self, key: str, default: Any = None) -> Any:
        return self.doc.get(key, default)


def version_key(version: str) -> tuple[int, int, int]:
    m = _SEMVER.match(version)
    if m is None:
        raise ContractError(f"version {version!r} is not MAJOR.MINOR.PATCH")
    return int(m[1]), int(m[2]), int(m[3])


def _check_list(errors: list[str], doc: dict[str, Any], key: str, allowed: Any, what: str) -> None:
    value = doc.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        errors.append(f"{key} must be a list of strings")
        return
    if len(set(value)) != len(value):
        errors.append(f"{key} has duplicates")
    bad = [v for v in value if v not in allowed]
    if bad:
        errors.append(f"{key}: unknown {what} {', '.join(bad)}")


def _check_fields(errors: list[str], fields: Any) -> None:
    if not isinstance(fields, dict) or not fields:
        errors.append("fields must be a non-empty mapping")
        return
    for name, spec in fields.items():
        if not isinstance(spec, dict):
            errors.append(f"field {name}: must be a mapping")
            continue
        if spec.get("type") not in FIELD_TYPES:
            errors.append(f"field {name}: type must be one of {', '.join(FIELD_TYPES)}")
        if not isinstance(spec.get("required"), bool):
            errors.append(f"field {name}: required must be true or false")
        if not isinstance(spec.get("description"), str):
            errors.append(f"field {name}: description must be a string")
        enum = spec.get("enum")
        if enum is not None and (not isinstance(enum, list) or not all(isinstance(v, str) for v in enum)):
            errors.append(f"field {name}: enum must be a list of strings")
        extra = set(spec) - {"type", "required", "description", "enum", "nullable"}
        if extra:
            errors.append(f"field {name}: unknown keys {', '.join(sorted(extra))}")


def _phrases_problem(value: Any) -> str | None:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        return "must be a non-empty list of phrases"
    bad = [v for v in value if not _PHRASE.match(v) or "  " in v]
    if bad:
        return f"phrases must be lower-case words: {', '.join(map(repr, bad))}"
    if len(set(value)) != len(value):
        return "has duplicates"
    return None


def _check_synonyms(errors: list[str], doc: dict[str, Any]) -> None:
    if "synonyms" in doc:
        problem = _phrases_problem(doc["synonyms"])
        if problem:
            errors.append(f"synonyms {problem}")
    if "dimension_synonyms" in doc:
        dims = doc["dimension_synonyms"]
        if not isinstance(dims, dict):
            errors.append("dimension_synonyms must map dimensions to phrases")
            return
        for dim, phrases in dims.items():
            if dim not in (doc.get("dimensions") or ()):
                errors.append(f"dimension_synonyms: {dim!r} is not a dimension of the metric")
            problem = _phrases_problem(phrases)
            if problem:
                errors.append(f"dimension_synonyms.{dim} {problem}")


def validate_version(kind: str, doc: Any) -> list[str]:
    """The problems of one version document (empty when it is valid)."""
    if kind not in KINDS:
        return [f"kind must be one of {', '.join(KINDS)}"]
    if not isinstance(doc, dict):
        return ["a contract version must be a mapping"]
    errors = [f"missing {k}" for k in _REQUIRED[kind] if k not in doc]
    unknown = set(doc) - set(_REQUIRED[kind]) - set(_OPTIONAL[kind])
    if unknown:
        errors.append(f"unknown keys {', '.join(sorted(unknown))}")
    if errors:
        return errors
    try:
        version_key(str(doc["version"]))
    except ContractError as exc:
        errors.append(str(exc))
    if "released" in doc and (not isinstance(doc["released"], str) or not _DATE.match(doc["released"])):
        errors.append("released must be a date string YYYY-MM-DD")
    if doc["status"] not in STATUSES:
        errors.append(f"status must be one of {', '.join(STATUSES)}")
    for key in ("description", "formula", "unit", "primary_key"):
        if key in doc and (not isinstance(doc[key], str) or not doc[key]):
            errors.append(f"{key} must be a non-empty string")
    budget = doc["freshness_budget_seconds"]
    if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
        errors.append("freshness_budget_seconds must be a positive number")
    _check_list(errors, doc, "tables", COLUMNS, "table")
    _check_list(errors, doc, "moved_by", EVENT_TYPES, "event type")
    if not doc.get("tables"):
        errors.append("tables must name at least one read-model table")
    _check_fields(errors, doc["fields"])
    if kind == "metric":
        _check_list(errors, doc, "windows", (*WINDOWS, NOW), "window")
        if "grains" in doc:
            _check_list(errors, doc, "grains", GRAINS, "grain")
        _check_list(errors, doc, "dimensions", DIMENSION_COLUMNS, "dimension")
        if not doc.get("windows"):
            errors.append("windows must not be empty")
        if NOW in (doc.get("windows") or ()) and doc.get("grains"):
            errors.append("a snapshot metric (window now) has no series grains")
        tables = doc.get("tables") or []
        if not errors and tables:
            columns = {c for c, _ in COLUMNS[tables[0]]}
            for dim in doc["dimensions"]:
                if DIMENSION_COLUMNS[dim] not in columns:
                    errors.append(
                        f"dimension {dim}: table {tables[0]} has no column {DIMENSION_COLUMNS[dim]}"
                    )
        if "money" in doc and not isinstance(doc["money"], bool):
            errors.append("money must be true or false")
        _check_synonyms(errors, doc)
    elif doc["primary_key"] not in doc["fields"]:
        errors.append("primary_key must be one of the fields")
    return errors


def parse_contract_file(text: str, source: str) -> list[Contract]:
    """All versions of one contract file, validated; raises ContractError."""
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict) or set(raw) != {"kind", "name", "versions"}:
        raise ContractError(f"{source}: expected exactly the keys kind, name, versions")
    kind, name, versions = raw["kind"], raw["name"], raw["versions"]
    if kind not in KINDS or not isinstance(name, str) or not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ContractError(f"{source}: bad kind or name")
    if not isinstance(versions, list) or not versions:
        raise ContractError(f"{source}: versions must be a non-empty list")
    out: list[Contract] = []
    for doc in versions:
        problems = validate_version(kind, doc)
        if isinstance(doc, dict) and "released" not in doc:
            problems.append("missing released")
        if problems:
            label = doc.get("version") if isinstance(doc, dict) else "?"
            raise ContractError(f"{source} {name} {label}: " + "; ".join(problems))
        out.append(Contract(kind, name, str(doc["version"]), doc["status"], doc))
    keys = [version_key(c.version) for c in out]
    if keys != sorted(set(keys)):
        raise ContractError(f"{source}: versions must be listed in strictly increasing order")
    if not any(c.status == "stable" for c in out):
        raise ContractError(f"{source}: no stable version")
    return out


class Registry:
    """Every contract version by name; ``current(name)`` is the newest stable one."""

    def __init__(self, contracts: list[Contract]) -> None:
        self.versions: dict[str, list[Contract]] = {}
        for c in contracts:
            self.versions.setdefault(c.name, []).append(c)
        for name, vs in self.versions.items():
            if len({c.kind for c in vs}) != 1:
                raise ContractError(f"{name}: one name, one kind")

    def names(self, kind: str | None = None) -> list[str]:
        return sorted(n for n, vs in self.versions.items() if kind is None or vs[0].kind == kind)

    def current(self, name: str) -> Contract:
        return [c for c in self.versions[name] if c.status == "stable"][-1]

    def get(self, name: str, version: str) -> Contract | None:
        return next((c for c in self.versions.get(name, ()) if c.version == version), None)

    def currents(self, kind: str) -> dict[str, Contract]:
        return {n: self.current(n) for n in self.names(kind)}


def vocabulary(registry: Registry) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """(metric -> declared synonyms, dimension -> declared synonyms) of the current metric contracts
    (a dimension's phrases are the union over the metrics that declare them, in name order)."""
    metrics: dict[str, tuple[str, ...]] = {}
    dims: dict[str, list[str]] = {}
    for name, c in registry.currents("metric").items():
        metrics[name] = tuple(c.get("synonyms") or ())
        for dim, phrases in sorted((c.get("dimension_synonyms") or {}).items()):
            dims.setdefault(dim, [])
            dims[dim] += [p for p in phrases if p not in dims[dim]]
    return metrics, {d: tuple(ps) for d, ps in sorted(dims.items())}


def vocabulary_problems(registry: Registry) -> list[str]:
    """Phrases that would name two things (two metrics, two dimensions, or a metric and a dimension)."""
    metrics, dims = vocabulary(registry)
    owner: dict[str, str] = {}
    problems = []
    for kind, table in (("metric", metrics), ("dimension", dims)):
        for name, phrases in table.items():
            for phrase in phrases:
                who = f"{kind} {name}"
                if owner.setdefault(phrase, who) != who:
                    problems.append(f"{phrase!r} names both {owner[phrase]} and {who}")
    return problems


def load_registry(directory: Path = CONTRACTS_DIR) -> Registry:
    contracts: list[Contract] = []
    for path in sorted(directory.glob("*.yaml")):
        parsed = parse_contract_file(path.read_text(encoding="utf-8"), path.name)
        if parsed[0].name != path.stem:
            raise ContractError(f"{path.name}: name {parsed[0].name!r} must match the file name")
        contracts.extend(parsed)
    registry = Registry(contracts)
    problems = vocabulary_problems(registry)
    if problems:
        raise ContractError("; ".join(problems))
    return registry


REGISTRY = load_registry()
