"""tests/go_tools.py reuses a binary only when it reports the pinned release."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from go_tools import TOOLS, _reports, go_tool


def test_a_built_tool_reports_its_pinned_module_version() -> None:
    path = Path(go_tool("kubeconform"))
    assert _reports(path, TOOLS["kubeconform"])
    assert not _reports(path, TOOLS["helm"])  # another module's binary is not taken for helm


def test_a_binary_of_another_release_is_not_reused(tmp_path: Path) -> None:
    kubeconform = TOOLS["kubeconform"]
    older = replace(kubeconform, version="v0.7.0")
    copy = tmp_path / "kubeconform"
    shutil.copy(go_tool("kubeconform"), copy)
    assert _reports(copy, kubeconform) and not _reports(copy, older)
    assert not _reports(tmp_path / "missing", kubeconform)


def test_compose_is_checked_by_the_version_it_prints(tmp_path: Path) -> None:
    compose = TOOLS["docker-compose"]
    assert _reports(Path(go_tool("docker-compose")), compose)
    impostor = tmp_path / "docker-compose"
    impostor.write_text("#!/bin/sh\necho 5.5.0\n")
    impostor.chmod(0o755)
    assert not _reports(impostor, compose)
