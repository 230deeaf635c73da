#!/usr/bin/env bash
# Package the PyFlink job for a real Flink cluster.
#
# Builds deploy/.cache/agentflow-flink-job.zip holding domain/ and projections/ (projections/flink/,
# the job, included) as importable packages, then prints the `flink run` command that ships the zip
# with the job (-pyfs puts it on the Python workers' path). The cluster needs the connector jars of
# deploy/maven/flink/pom.xml in /opt/flink/lib and a Python 3.11 with apache-flink 2.0.2 on every
# TaskManager (the `flink` target of deploy/compose/Dockerfile has both).
#
# Environment:
#   AGENTFLOW_FLINK_ZIP      output path (default deploy/.cache/agentflow-flink-job.zip)
#   FLINK_JOBMANAGER         host:port of the JobManager REST endpoint (default localhost:8081)
#   FLINK_PYTHON             Python on the cluster nodes (default /opt/agentflow/flink-venv/bin/python)
#   AGENTFLOW_FLINK_JOB_ARGS job.py's arguments (python -m projections.flink.job --help); without it
#                            the printed command shows the required ones as <placeholders>
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ZIP="${AGENTFLOW_FLINK_ZIP:-$ROOT/deploy/.cache/agentflow-flink-job.zip}"
JOBMANAGER="${FLINK_JOBMANAGER:-localhost:8081}"
PYEXEC="${FLINK_PYTHON:-/opt/agentflow/flink-venv/bin/python}"
PY="${PYTHON:-python3}"

for dir in domain projections; do
  [[ -d "$ROOT/$dir" ]] || { echo "package-job.sh: missing $ROOT/$dir" >&2; exit 1; }
done
[[ -f "$ROOT/projections/flink/job.py" ]] || echo "package-job.sh: warning: projections/flink/job.py not found" >&2

mkdir -p "$(dirname "$ZIP")"
"$PY" - "$ROOT" "$ZIP" <<'PYEOF'
import sys
import zipfile
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
tmp = out.with_suffix(".zip.tmp")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
    for pkg in ("domain", "projections"):  # projections/flink/ comes with projections/
        for path in sorted((root / pkg).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                zf.write(path, path.relative_to(root).as_posix())
tmp.replace(out)
PYEOF

echo "packaged $ZIP" >&2
# No -pyreq: projections/flink/requirements.txt is apache-flink itself, already in the nodes' Python.
JOB_ARGS="${AGENTFLOW_FLINK_JOB_ARGS:---bootstrap <kafka:9092> --jdbc-url <jdbc:postgresql://host:5432/db>\
 --jdbc-user <user> --jdbc-password <password> --warehouse <warehouse-uri> --checkpoint-dir <checkpoint-uri>}"
echo "flink run --detached --jobmanager $JOBMANAGER -py projections/flink/job.py -pyfs $ZIP" \
  "-pyexec $PYEXEC -pyclientexec $PYEXEC $JOB_ARGS"
