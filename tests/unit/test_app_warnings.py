"""The app is declared the way Litestar 3.0 still reads it: building it (and importing its routes) raises
no Litestar deprecation warning.

Routes and dependency providers mark what they take explicitly: ``NamedDependency[...]`` for an injected
dependency, ``QueryParameter`` / ``PathParameter`` / ``HeaderParameter`` (or ``FromQuery``) for a request
parameter, ``JSONBody[...]`` for the body. Inferred ones warn once per handler for every app built (the
tests build one per test: thousands of warnings) and stop working in Litestar 3.0.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import litestar
from litestar.exceptions import LitestarDeprecationWarning

from services.api.app import openapi_document

ROOT = Path(__file__).resolve().parents[2]
LITESTAR_DIR = str(Path(litestar.__file__).resolve().parent)


def _from_litestar(w: warnings.WarningMessage) -> bool:
    """A deprecation Litestar raises about how the app is declared: its own warning class, one raised in
    its code, or one of its parameter markers (``Parameter(query=...)`` warns from a generated
    ``__init__``, file ``<string>``)."""
    if not issubclass(w.category, DeprecationWarning):
        return False
    return (
        issubclass(w.category, LitestarDeprecationWarning)
        or str(Path(w.filename).resolve()).startswith(LITESTAR_DIR)
        or "Parameter(" in str(w.message)
    )


def test_building_the_app_raises_no_litestar_deprecation_warning() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        openapi_document()
    found = [f"{w.category.__name__}: {w.message}" for w in caught if _from_litestar(w)]
    assert found == [], "\n".join(found)


# a fresh interpreter: the route modules' markers (Annotated[..., QueryParameter(...)]) are built when
# the modules are imported, which has happened long before a test in this process runs
_FRESH_IMPORT = """
import json, sys, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from services.api.app import openapi_document
    openapi_document()
json.dump([[w.category.__module__, w.category.__name__, w.filename, str(w.message)] for w in caught],
          sys.stdout)
"""


def test_importing_the_routes_raises_no_litestar_deprecation_warning() -> None:
    res = subprocess.run(
        [sys.executable, "-c", _FRESH_IMPORT], cwd=ROOT, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    found = []
    for module, name, filename, message in json.loads(res.stdout):
        category = getattr(importlib.import_module(module), name)
        if _from_litestar(warnings.WarningMessage(message, category, filename, 0)):
            found.append(f"{name} ({filename}): {message}")
    assert found == [], "\n".join(found)
