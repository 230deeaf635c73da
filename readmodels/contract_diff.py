"""Contract version diffs, classified breaking / additive / info, and validation of a proposed version.

Breaking: a removed field, a type change, a new required field, a field that becomes required,
optional or nullable, a removed enum value, a removed dimension, window or grain, a changed unit,
money flag or primary key. Additive: a new optional field, a new enum value, dimension, window or
grain. Info: description, formula, tables, moved_by, freshness budget, status.
"""

from __future__ import annotations

from typing import Any

from readmodels.contract_registry import Contract, ContractError, validate_version, version_key

BREAKING, ADDITIVE, INFO = "breaking", "additive", "info"
_LISTS = ("dimensions", "windows", "grains")
_STRICT = ("unit", "money", "primary_key")
_INFO = ("description", "formula", "tables", "moved_by", "freshness_budget_seconds", "status")


def _change(kind: str, path: str, change: str, old: Any = None, new: Any = None) -> dict[str, Any]:
    return {"kind": kind, "path": path, "change": change, "from": old, "to": new}


def _field_changes(name: str, old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    path = f"fields.{name}"
    out = []
    if old.get("type") != new.get("type"):
        out.append(_change(BREAKING, path, "type_changed", old.get("type"), new.get("type")))
    if bool(old.get("required")) != bool(new.get("required")):
        change = "field_became_required" if new.get("required") else "field_became_optional"
        out.append(_change(BREAKING, path, change, old.get("required"), new.get("required")))
    if bool(old.get("nullable")) != bool(new.get("nullable")):
        kind = BREAKING if new.get("nullable") else ADDITIVE
        out.append(
            _change(kind, path, "nullable_changed", bool(old.get("nullable")), bool(new.get("nullable")))
        )
    old_enum, new_enum = old.get("enum"), new.get("enum")
    if old_enum is not None and new_enum is None:
        out.append(_change(ADDITIVE, path, "enum_removed", old_enum, None))
    elif old_enum is None and new_enum is not None:
        out.append(_change(BREAKING, path, "enum_added", None, new_enum))
    elif old_enum is not None and new_enum is not None:
        for value in old_enum:
            if value not in new_enum:
                out.append(_change(BREAKING, path, "enum_value_removed", value, None))
        for value in new_enum:
            if value not in old_enum:
                out.append(_change(ADDITIVE, path, "enum_value_added", None, value))
    if old.get("description") != new.get("description"):
        out.append(_change(INFO, path, "description_changed", old.get("description"), new.get("description")))
    return out


def diff_docs(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    """Every change from ``old`` to ``new`` (two version documents of one contract)."""
    changes: list[dict[str, Any]] = []
    old_fields, new_fields = old.get("fields") or {}, new.get("fields") or {}
    for name, spec in old_fields.items():
        if name not in new_fields:
            changes.append(_change(BREAKING, f"fields.{name}", "field_removed", spec.get("type"), None))
        else:
            changes.extend(_field_changes(name, spec, new_fields[name]))
    for name, spec in new_fields.items():
        if name not in old_fields:
            kind = BREAKING if spec.get("required") else ADDITIVE
            change = "required_field_added" if spec.get("required") else "field_added"
            changes.append(_change(kind, f"fields.{name}", change, None, spec.get("type")))
    for key in _LISTS:
        before, after = old.get(key) or [], new.get(key) or []
        changes += [_change(BREAKING, key, "removed", v, None) for v in before if v not in after]
        changes += [_change(ADDITIVE, key, "added", None, v) for v in after if v not in before]
    for key in _STRICT:
        if old.get(key) != new.get(key):
            changes.append(_change(BREAKING, key, "changed", old.get(key), new.get(key)))
    for key in _INFO:
        if old.get(key) != new.get(key):
            changes.append(_change(INFO, key, "changed", old.get(key), new.get(key)))
    return changes


def compatibility(changes: list[dict[str, Any]]) -> str:
    kinds = {c["kind"] for c in changes}
    if BREAKING in kinds:
        return BREAKING
    if ADDITIVE in kinds:
        return ADDITIVE
    return "none"


def diff(old: Contract, new: Contract) -> dict[str, Any]:
    changes = diff_docs(old.doc, new.doc)
    return {
        "name": old.name,
        "from": old.version,
        "to": new.version,
        "compatibility": compatibility(changes),
        "breaking": [c for c in changes if c["kind"] == BREAKING],
        "additive": [c for c in changes if c["kind"] == ADDITIVE],
        "info": [c for c in changes if c["kind"] == INFO],
    }


def validate_proposal(current: Contract, proposed: Any) -> dict[str, Any]:
    """Is ``proposed`` a valid next version of ``current``: a well-formed document whose version is
    newer and bumped as its changes require (breaking: major; additive: minor)."""
    errors = validate_version(current.kind, proposed)
    result: dict[str, Any] = {
        "name": current.name,
        "current_version": current.version,
        "proposed_version": proposed.get("version") if isinstance(proposed, dict) else None,
        "valid": False,
        "errors": errors,
        "compatibility": None,
        "changes": [],
    }
    if errors:
        return result
    changes = diff_docs(current.doc, proposed)
    level = compatibility(changes)
    result.update(compatibility=level, changes=changes)
    try:
        old, new = version_key(current.version), version_key(str(proposed["version"]))
    except ContractError as exc:  # pragma: no cover - validate_version checked it
        errors.append(str(exc))
        return result
    if new <= old:
        errors.append(f"version {proposed['version']} must be newer than {current.version}")
    elif level == BREAKING and new[0] == old[0]:
        errors.append("breaking changes need a new major version")
    elif level == ADDITIVE and new[:2] == old[:2]:
        errors.append("additive changes need at least a new minor version")
    result["valid"] = not errors
    return result
