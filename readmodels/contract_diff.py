"""Contract version diffs, classified breaking / additive / info, and validation of a proposed version.

Breaking: a removed field, a type change, a new required field, a field that becomes required,
optional or nullable, a removed enum value, a removed dimension, window or grain, a changed unit,
money flag or primary key. Additive: a new optional field, a new enum value, dimension, window or
grain. Info: description, formula, tables, moved_by, freshness budget, status.

Existing AgentFlow clients read contracts as entity schemas (API.md): ``entity``, ``released``, ``fields``
as a list of ``{name, type, required, description, values?}``, changes as ``{type, field, severity}``
records (``breaking_changes``, ``additive_changes``, ``safe_changes``), and a validation against the latest
stable version with ``is_breaking`` and ``requires_version_bump``. Those views stand beside ours here.
"""

from __future__ import annotations

from typing import Any

from readmodels.contract_registry import (
    Contract,
    ContractError,
    Registry,
    document_keys,
    validate_version,
    version_key,
)

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


# ---- the reference clients' view ---------------------------------------------------------------------
# our change name -> the reference's change type, for field changes
_REF_TYPES = {"type_changed": "field_type_changed", "required_field_added": "field_required_added"}


def field_list(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """A version's ``fields`` mapping as the reference's list of ``{name, type, required, description,
    values?, nullable?}`` (``values``: the allowed values of an enum field)."""
    out = []
    for name, spec in fields.items():
        item = {"name": name, "type": spec["type"], "required": spec["required"]}
        item["description"] = spec["description"]
        if spec.get("enum") is not None:
            item["values"] = list(spec["enum"])
        if spec.get("nullable"):
            item["nullable"] = True
        out.append(item)
    return out


def reference_change(change: dict[str, Any], non_breaking: str) -> dict[str, Any]:
    """One of our change records as the reference's ``{type, field, severity, from, to}`` (``path`` kept);
    ``non_breaking`` is the severity word of an additive or info change (diff: non_breaking, validate:
    safe)."""
    path, name = change["path"], change["change"]
    if path.startswith("fields."):
        field, kind = path.removeprefix("fields."), _REF_TYPES.get(name, name)
    else:
        field, kind = path, f"{path}_{name}"
    severity = "breaking" if change["kind"] == BREAKING else non_breaking
    out = {"type": kind, "field": field, "severity": severity, "from": change["from"], "to": change["to"]}
    if name.startswith("enum_value_"):
        out["values"] = [change["from"] if name == "enum_value_removed" else change["to"]]
    return {**out, "path": path}


def document(registry: Registry, c: Contract) -> dict[str, Any]:
    """One contract version as served: our document (``fields`` as ``field_specs``) with the reference's
    ``entity``, ``released``, ``fields`` list and ``breaking_changes`` (from the version before it)."""
    versions = registry.versions[c.name]
    before = versions[versions.index(c) - 1] if versions.index(c) > 0 else None
    breaking = [ch for ch in diff_docs(before.doc, c.doc) if ch["kind"] == BREAKING] if before else []
    doc = {k: v for k, v in c.doc.items() if k != "fields"}
    return {
        "name": c.name,
        "kind": c.kind,
        "entity": c.name,
        "current_version": registry.current(c.name).version,
        "versions": [v.version for v in versions],
        **doc,
        "fields": field_list(c.doc["fields"]),
        "field_specs": c.doc["fields"],
        "breaking_changes": [reference_change(ch, "non_breaking") for ch in breaking],
    }


def reference_diff(old: Contract, new: Contract) -> dict[str, Any]:
    """``diff`` with the reference's ``entity``, ``from_version``, ``to_version``, ``breaking_changes``
    and ``additive_changes`` beside ours."""
    out = diff(old, new)
    out.update(
        entity=old.name,
        from_version=old.version,
        to_version=new.version,
        breaking_changes=[reference_change(c, "non_breaking") for c in out["breaking"]],
        additive_changes=[reference_change(c, "non_breaking") for c in out["additive"]],
    )
    return out


def _lenient_version(version: str) -> tuple[int, int, int] | None:
    """``2``, ``v2``, ``2.1`` and ``2.1.0`` as a semantic version (the reference numbered versions 1, 2)."""
    parts = version.removeprefix("v").split(".")
    if not 1 <= len(parts) <= 3 or not all(p.isdigit() for p in parts):
        return None
    nums = [int(p) for p in parts] + [0] * (3 - len(parts))
    return nums[0], nums[1], nums[2]


def _fields_of(items: list[Any]) -> tuple[dict[str, Any], list[str]]:
    """The reference's ``fields`` list as our mapping (``values`` is ``enum``; keys we do not know, such as
    ``unit`` or ``default``, are dropped; a missing description is empty), and the problems of the list."""
    fields: dict[str, Any] = {}
    problems = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str) or not item["name"]:
            problems.append(f"fields[{i}] must be an object with a name")
            continue
        spec = {"type": item.get("type"), "required": item.get("required", False)}
        spec["description"] = item.get("description") if item.get("description") is not None else ""
        if item.get("values") is not None:
            spec["enum"] = item["values"]
        if "nullable" in item:
            spec["nullable"] = item["nullable"]
        fields[item["name"]] = spec
    return fields, problems


def _comparable(doc: dict[str, Any]) -> dict[str, Any]:
    """A proposed document that may not validate, made safe to diff: fields that are not mappings, enums
    and lists that are not lists count as absent."""
    raw = doc.get("fields")
    fields = {}
    for name, spec in (raw.items() if isinstance(raw, dict) else ()):
        if isinstance(spec, dict):
            fields[name] = {**spec, "enum": spec["enum"] if isinstance(spec.get("enum"), list) else None}
    lists = {k: doc[k] if isinstance(doc.get(k), list) else [] for k in _LISTS}
    return {**doc, **lists, "fields": fields}


def validate_candidate(current: Contract, body: dict[str, Any]) -> dict[str, Any]:
    """Validate a proposed next version of ``current`` (the latest stable version), given as our full
    version document (``fields`` a mapping; optionally wrapped as ``{"contract": {...}}``) or as the
    reference's candidate schema ``{entity?, version?, fields: [{name, type, required, ...}]}``, whose
    fields and version (``2`` reads as ``2.0.0``) then replace those of the current document.

    Ours: ``valid``, ``errors``, ``compatibility``, ``changes`` (validate_proposal). The reference's, beside:
    ``entity``, ``base_version`` (the current version), ``candidate_version`` (the candidate's, or the
    current one when it names none), ``breaking_changes``, ``safe_changes`` (additive and info changes),
    ``is_breaking`` and ``requires_version_bump`` (breaking changes without a new major version)."""
    proposal = body["contract"] if isinstance(body.get("contract"), dict) else body
    problems: list[str] = []
    if isinstance(proposal.get("fields"), list):
        fields, problems = _fields_of(proposal["fields"])
        known = document_keys(current.kind) - {"fields"}
        proposal = {**current.doc, **{k: v for k, v in proposal.items() if k in known}, "fields": fields}
        lenient = _lenient_version(str(proposal["version"]))
        if lenient is not None:
            proposal["version"] = ".".join(map(str, lenient))
    result = validate_proposal(current, proposal)
    result["errors"] = problems + result["errors"]
    result["valid"] = result["valid"] and not problems
    changes = diff_docs(current.doc, _comparable(proposal))
    candidate = str(proposal.get("version", current.version))
    new, old = _lenient_version(candidate), version_key(current.version)
    is_breaking = any(c["kind"] == BREAKING for c in changes)
    result.update(
        entity=current.name,
        base_version=current.version,
        candidate_version=candidate,
        breaking_changes=[reference_change(c, "safe") for c in changes if c["kind"] == BREAKING],
        safe_changes=[reference_change(c, "safe") for c in changes if c["kind"] != BREAKING],
        is_breaking=is_breaking,
        requires_version_bump=is_breaking and (new is None or new[0] <= old[0]),
    )
    return result
