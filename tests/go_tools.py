"""The Go-built tools the tests run (promtool, helm, kubeconform, docker-compose, jaeger), each pinned to
one release and built from source through the Go module proxy into deploy/.cache/go-bin/ (gitignored) on
first use.

Needs Go on PATH: the tools' go.mod files ask for Go 1.26 (this project's machines have it); an older Go
>= 1.21 fetches that toolchain itself through the module proxy (GOTOOLCHAIN=auto, set here unless already
set). Debian 12's golang-go (1.19) is too old: install Go from go.dev/dl.
A build holds a file lock, so parallel pytest workers or `make go-tools` beside a test run wait for one
build instead of racing; a binary that is already there and reports the pinned version is reused.

`python -m tests.go_tools [NAME ...]` builds them up front with progress output (`make go-tools`).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN_DIR = ROOT / "deploy" / ".cache" / "go-bin"
MIN_GO = (1, 21)  # the first Go that switches toolchains by itself
BUILD_TIMEOUT_S = 3600  # a cold build of promtool or compose is minutes on two cores


@dataclass(frozen=True)
class GoTool:
    module: str
    package: str  # the main package, inside `module`
    version: str
    # compose's go.mod has `exclude` directives and jaeger's a `replace`, which `go install pkg@version`
    # refuses: they are built with `go build` inside their downloaded module instead. Compose's version is
    # stamped the way its Makefile does; a tool without such a flag gets a `<name>.version` file beside it
    build_in_module: bool = False
    version_ldflag: str = ""


TOOLS: dict[str, GoTool] = {
    "promtool": GoTool(
        "github.com/prometheus/prometheus", "github.com/prometheus/prometheus/cmd/promtool", "v0.316.0"
    ),
    "helm": GoTool("helm.sh/helm/v3", "helm.sh/helm/v3/cmd/helm", "v3.22.0"),
    "kubeconform": GoTool(
        "github.com/yannh/kubeconform", "github.com/yannh/kubeconform/cmd/kubeconform", "v0.8.0"
    ),
    "docker-compose": GoTool(
        "github.com/docker/compose/v5", "github.com/docker/compose/v5/cmd", "v5.6.0",
        build_in_module=True, version_ldflag="github.com/docker/compose/v5/internal.Version",
    ),
    # Jaeger v2 (OTLP receiver + query API), for the tracing e2e test; a cold build is ~10 minutes
    "jaeger": GoTool(
        "github.com/jaegertracing/jaeger", "github.com/jaegertracing/jaeger/cmd/jaeger", "v1.75.0",
        build_in_module=True,
    ),
}


class GoToolError(RuntimeError):
    pass


_checked: dict[str, str] = {}  # this process has seen these report their pinned version


def go_tool(name: str) -> str:
    """Path of the built `name` binary, building it first when it is missing or another version."""
    if name in _checked:
        return _checked[name]
    tool = TOOLS[name]
    path = BIN_DIR / name
    if not _reports(path, tool):
        BIN_DIR.mkdir(parents=True, exist_ok=True)
        with _lock():
            if not _reports(path, tool):  # another process may have built it while we waited
                _build(name, tool, path)
            if not _reports(path, tool):
                raise GoToolError(f"{path} was built but does not report {tool.module} {tool.version}")
    _checked[name] = str(path)
    return str(path)


@contextmanager
def _lock() -> Iterator[None]:
    with open(BIN_DIR / ".build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise GoToolError(
            "Go is needed to build the test tools (promtool, helm, kubeconform, docker-compose, jaeger): "
            "install Go >= 1.21 (the go.dev/dl tarball; Debian 12's golang-go is 1.19, too old) and put its "
            "bin/ on PATH"
        )
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    m = re.match(r"go(\d+)\.(\d+)", out.strip())
    if m is None or (int(m.group(1)), int(m.group(2))) < MIN_GO:
        raise GoToolError(f"{go} is {out.strip()}; the test tools need Go >= {MIN_GO[0]}.{MIN_GO[1]}")
    return go


def _reports(path: Path, tool: GoTool) -> bool:
    """Whether `path` exists and was built from the pinned release."""
    if not path.is_file():
        return False
    if tool.build_in_module and not tool.version_ldflag:  # built here: the stamp file written after it
        stamp = _stamp(path)
        return stamp.is_file() and stamp.read_text().strip() == f"{tool.module}@{tool.version}"
    if tool.build_in_module:  # its own build info says (devel): ask the binary for its stamped version
        probe = subprocess.run([str(path), "version", "--short"], capture_output=True, text=True)
        return probe.returncode == 0 and probe.stdout.strip() == tool.version.lstrip("v")
    go = shutil.which("go")
    if go is None:  # a binary built earlier is still usable; we only cannot double-check it
        return True
    info = subprocess.run([go, "version", "-m", str(path)], capture_output=True, text=True)
    return f"\tmod\t{tool.module}\t{tool.version}\t" in info.stdout


def _build(name: str, tool: GoTool, path: Path) -> None:
    go = _go()
    env = {**os.environ, "GOBIN": str(BIN_DIR), "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "auto")}
    if tool.build_in_module:
        download = subprocess.run(
            [go, "mod", "download", "-json", f"{tool.module}@{tool.version}"],
            capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_S,
        )
        if download.returncode != 0:
            raise GoToolError(f"downloading {tool.module}@{tool.version} failed:\n{download.stderr}")
        module_dir = re.search(r'"Dir": "([^"]+)"', download.stdout)
        assert module_dir is not None, download.stdout
        relative = "./" + tool.package.removeprefix(tool.module).lstrip("/")
        ldflags = [f"-ldflags=-X {tool.version_ldflag}={tool.version}"] if tool.version_ldflag else []
        command = [go, "build", "-C", module_dir.group(1), "-o", str(path), *ldflags, relative]
    else:
        command = [go, "install", f"{tool.package}@{tool.version}"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_S)
    if result.returncode != 0:
        raise GoToolError(f"building {name} ({' '.join(command)}) failed:\n{result.stderr[-4000:]}")
    built = BIN_DIR / tool.package.rsplit("/", 1)[-1]
    if built != path and built.exists():  # `go install` names the binary after the package's last element
        built.replace(path)
    if tool.build_in_module and not tool.version_ldflag:
        _stamp(path).write_text(f"{tool.module}@{tool.version}\n")


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".version")


def main(argv: list[str]) -> int:
    names = argv or list(TOOLS)
    if unknown := [name for name in names if name not in TOOLS]:
        print(f"go-tools: unknown {', '.join(unknown)}; known: {', '.join(TOOLS)}", file=sys.stderr)
        return 2
    for name in names:
        tool = TOOLS[name]
        started = time.monotonic()
        fresh = _reports(BIN_DIR / name, tool)
        if not fresh:
            print(f"go-tools: building {name} {tool.version} (first time: minutes) ...", flush=True)
        try:
            path = go_tool(name)
        except GoToolError as exc:
            print(f"go-tools: {exc}", file=sys.stderr)
            return 1
        state = "cached" if fresh else f"built in {time.monotonic() - started:.0f} s"
        print(f"go-tools: {name} {tool.version} {state}: {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
