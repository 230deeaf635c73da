"""Fetch the JVM engines' jars from Maven Central with the project's own poms (deploy/maven/<bundle>).

Each bundle lands flat in ``deploy/.cache/jars/<bundle>/`` via ``mvn dependency:copy-dependencies``.
A stamp file holding the pom's hash makes a second call instant; editing a pom refetches.
The local Maven repository is ``deploy/.cache/m2`` so nothing is written outside the repo's cache.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAVEN_DIR = PROJECT_ROOT / "deploy" / "maven"
CACHE_DIR = PROJECT_ROOT / "deploy" / ".cache"
JARS_DIR = CACHE_DIR / "jars"
BUNDLES = ("kafka", "connect", "debezium-postgres", "debezium-mariadb", "debezium-embedded", "flink")
_STAMP = ".fetched"


class JarFetchError(RuntimeError):
    pass


def _pom_hash(pom: Path) -> str:
    return hashlib.sha256(pom.read_bytes()).hexdigest()


def bundle_dir(bundle: str) -> Path:
    return JARS_DIR / bundle


def is_fetched(bundle: str) -> bool:
    pom = MAVEN_DIR / bundle / "pom.xml"
    stamp = bundle_dir(bundle) / _STAMP
    try:
        return stamp.read_text().strip() == _pom_hash(pom)
    except OSError:
        return False


def fetch(bundle: str, *, quiet: bool = False) -> Path:
    """Directory holding every jar of ``bundle``; runs Maven only when the stamp is missing or stale."""
    pom = MAVEN_DIR / bundle / "pom.xml"
    if not pom.is_file():
        known = ", ".join(BUNDLES)
        raise JarFetchError(f"unknown jar bundle {bundle!r}: {pom} does not exist (known: {known})")
    out = bundle_dir(bundle)
    if is_fetched(bundle):
        return out
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarFetchError(
            "Maven ('mvn') is not on PATH; it is needed once to fetch the Kafka/Connect/Debezium/Flink jars "
            "from Maven Central (Debian: apt-get install maven; needs Java 17+)"
        )
    if not quiet:
        print(f"fetching {bundle} jars with Maven into {out} ...", file=sys.stderr, flush=True)
    started = time.monotonic()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    cmd = [
        mvn, "-q", "-B", "-f", str(pom),
        f"-Dmaven.repo.local={CACHE_DIR / 'm2'}",
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
    ]
    env = dict(os.environ)
    env.setdefault("MAVEN_OPTS", "-Xmx512m")
    res = subprocess.run(cmd, cwd=str(pom.parent), capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-30:])
        raise JarFetchError(f"mvn failed for bundle {bundle} ({res.returncode}):\n{tail}")
    jars = sorted(tmp.glob("*.jar"))
    if not jars:
        shutil.rmtree(tmp, ignore_errors=True)
        raise JarFetchError(f"mvn copied no jars for bundle {bundle}")
    (tmp / _STAMP).write_text(_pom_hash(pom) + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    if not quiet:
        print(
            f"fetched {len(jars)} {bundle} jars in {time.monotonic() - started:.1f}s",
            file=sys.stderr, flush=True,
        )
    return out


def fetch_all(bundles: tuple[str, ...] = BUNDLES, *, quiet: bool = False) -> dict[str, Path]:
    return {b: fetch(b, quiet=quiet) for b in bundles}


def classpath(*bundles: str) -> str:
    """``:``-joined jar list of the (fetched) bundles, in bundle order."""
    jars: list[str] = []
    for b in bundles:
        jars.extend(str(p) for p in sorted(fetch(b, quiet=True).glob("*.jar")))
    return os.pathsep.join(jars)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    try:
        for b in args or list(BUNDLES):
            fetch(b)
    except JarFetchError as e:
        print(str(e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
