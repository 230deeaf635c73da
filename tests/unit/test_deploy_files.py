"""Static checks of the distributed deployment's container topology (deploy/compose, deploy/helm,
deploy/flink). Nothing here starts a container: the files are parsed and cross-checked, and validated by
the real tools, built from source on first use (tests/go_tools.py): `docker compose config`, `helm lint`,
and `helm template` rendered manifests checked by `kubeconform -strict` against the Kubernetes JSON
schemas that the kubernetes-validate package ships (tests/kube_schemas.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from go_tools import go_tool
from kube_schemas import schema_location

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "compose" / "Dockerfile"
CHART = ROOT / "deploy" / "helm" / "agentflow"
PACKAGE_JOB = ROOT / "deploy" / "flink" / "package-job.sh"

# The only services reachable from the host, and only on loopback.
PUBLISHED = {"api", "flink-jobmanager"}
# Dummy values so `${VAR:?}` interpolation succeeds when a real validator runs.
SECRET_ENV = {
    "POSTGRES_PASSWORD": "dummy",
    "CLICKHOUSE_PASSWORD": "dummy",
    "AGENTFLOW_API_KEYS": "key:tenant",
    "AGENTFLOW_SECRET_KEYS": "dummy",
}
# Kubernetes releases the chart is checked against: an older one still common in managed clusters, and the
# newest whose schemas kubernetes-validate ships
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
TEMPLATE_ACTION = re.compile(r"\{\{.*?\}\}")
VALUES_REF = re.compile(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def _services() -> dict[str, dict[str, Any]]:
    return _compose()["services"]


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    deps = service.get("depends_on", {})
    return {name: {} for name in deps} if isinstance(deps, list) else deps


def _tag(image: str) -> str:
    """Tag of an image reference ('' when untagged); a registry port is not a tag."""
    last = image.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else ""


def _pom_versions(bundle: str) -> dict[str, str]:
    text = (ROOT / "deploy" / "maven" / bundle / "pom.xml").read_text()
    props = dict(re.findall(r"<([\w.]+)>([^<$]+)</\1>", text))
    deps = re.findall(
        r"<dependency>\s*<groupId>[^<]+</groupId>\s*<artifactId>([^<]+)</artifactId>\s*<version>([^<]+)</version>",
        text,
    )
    resolved = {}
    for artifact, version in deps:
        m = re.fullmatch(r"\$\{([\w.]+)\}", version)
        resolved[artifact] = props[m.group(1)] if m else version
    return resolved


# --- compose -----------------------------------------------------------------------------------


def test_compose_parses_and_has_the_topology() -> None:
    services = _services()
    expected = {
        "postgres", "kafka", "connect", "clickhouse", "redis", "init", "api",
        "flink-jobmanager", "flink-taskmanager", "flink-job",
    }
    assert expected <= set(services)


def test_depends_on_targets_exist_with_valid_conditions() -> None:
    services = _services()
    conditions = {"service_started", "service_healthy", "service_completed_successfully"}
    for name, service in services.items():
        for dep, spec in _depends_on(service).items():
            assert dep in services, f"{name} depends on unknown service {dep}"
            condition = spec.get("condition", "service_started")
            assert condition in conditions, f"{name} -> {dep}: {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} healthy: no healthcheck"


def test_images_pinned_to_version_tags() -> None:
    for name, service in _services().items():
        image = service.get("image")
        assert image, f"{name} has no image"
        tag = _tag(image)
        assert tag and tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"


def test_engine_images_match_the_plan_versions() -> None:
    services = _services()
    assert services["kafka"]["image"] == f"apache/kafka:{_pom_versions('kafka')['kafka_2.13']}"
    debezium = _pom_versions("debezium-postgres")["debezium-connector-postgres"]
    assert services["connect"]["image"] == f"quay.io/debezium/connect:{debezium}"
    assert services["postgres"]["image"].startswith("postgres:15")


def test_ports_published_only_where_intended_and_on_loopback() -> None:
    for name, service in _services().items():
        ports = service.get("ports", [])
        if name not in PUBLISHED:
            assert not ports, f"{name} publishes {ports}"
            continue
        assert ports, f"{name} should publish its port"
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_postgres_runs_with_logical_wal() -> None:
    command = _services()["postgres"]["command"]
    words = command if isinstance(command, list) else command.split()
    assert "wal_level=logical" in words


def test_no_secret_literals_in_compose() -> None:
    """Passwords and API keys only arrive as required `${VAR:?}` interpolations."""
    text = COMPOSE.read_text()
    for line in text.splitlines():
        stripped = line.split("#", 1)[0]
        if re.match(r"\s*\w*(PASSWORD|API_KEYS|SECRET)\w*\s*:", stripped):
            value = stripped.split(":", 1)[1].strip()
            assert value.startswith("${") and ":?" in value, f"secret literal: {line.strip()}"
    for creds in re.findall(r"://[^/\s:@]+:([^@\n]+)@", text):
        assert creds.startswith("${") and ":?" in creds, f"credentials literal in URL: {creds}"


def test_app_services_share_one_environment() -> None:
    services = _services()
    env = services["api"]["environment"]
    for key in ("AGENTFLOW_DATABASE_URL", "AGENTFLOW_CLICKHOUSE_DSN", "AGENTFLOW_KAFKA_BOOTSTRAP_SERVERS",
                "AGENTFLOW_REDIS_URL", "AGENTFLOW_API_KEYS", "AGENTFLOW_CONNECT_URL",
                "AGENTFLOW_SECRET_KEYS"):
        assert key in env, key
    assert services["worker"]["environment"] == env  # the workers sign with the secrets the api stores
    assert services["init"]["environment"] == env
    assert services["api"]["command"][:3] == ["up", "--distributed", "--external"]
    assert services["api"]["deploy"]["replicas"] >= 2


def test_flink_job_submits_the_pyflink_job() -> None:
    command = _services()["flink-job"]["command"]
    assert command[:2] == ["flink", "run"]
    assert command[command.index("-py") + 1] == "/opt/agentflow/projections/flink/job.py"
    for required in ("--bootstrap", "--jdbc-url", "--warehouse"):  # job.py's required arguments
        assert required in command


def _compose_config(compose_file: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` (compose v5 run standalone, as `docker compose config` runs it as a plugin):
    loads, interpolates and validates the file against the compose specification; needs no Docker daemon."""
    return subprocess.run(
        [go_tool("docker-compose"), "-f", str(compose_file), "config", "--format", "json"],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=120,
    )


def test_compose_config_validates_with_docker_compose() -> None:
    result = _compose_config(COMPOSE, SECRET_ENV)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)  # compose's own model of the file, interpolated
    assert set(resolved["services"]) == set(_services())
    api_env = resolved["services"]["api"]["environment"]
    assert api_env["AGENTFLOW_API_KEYS"] == SECRET_ENV["AGENTFLOW_API_KEYS"]


def test_docker_compose_refuses_what_it_should(tmp_path: Path) -> None:
    """The validator is real: a missing required secret and an unknown service key both fail."""
    missing = {k: v for k, v in SECRET_ENV.items() if k != "POSTGRES_PASSWORD"}
    result = _compose_config(COMPOSE, missing)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stderr, result.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    image: redis:", "    imagee: redis:", 1))
    result = _compose_config(broken, SECRET_ENV)
    assert result.returncode != 0 and "imagee" in result.stderr, result.stderr


# --- Dockerfile ----------------------------------------------------------------------------------


def test_dockerfile_bases_pinned_and_targets_exist() -> None:
    text = DOCKERFILE.read_text()
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", text, re.M))
    stages = set()
    for image, stage in re.findall(r"^FROM (\S+)(?: AS (\S+))?", text, re.M):
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        tag = _tag(image)
        assert tag and tag != "latest", f"unpinned base image {image}"
        stages.add(stage)
    for name, service in _services().items():
        build = service.get("build")
        if build:
            assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE, name
            assert build["target"] in stages, f"{name}: unknown target {build['target']}"
    assert "uv sync --frozen" in text
    assert 'ENTRYPOINT ["agentflow"]' in text
    assert 'CMD ["up", "--distributed", "--external"' in text


def test_dockerfile_flink_jars_match_the_pom() -> None:
    text = DOCKERFILE.read_text()
    for artifact, version in _pom_versions("flink").items():
        assert f"{artifact}-{version}.jar" in text, f"{artifact} {version} missing from the flink image"


# --- Helm ----------------------------------------------------------------------------------------


def _values() -> dict[str, Any]:
    return yaml.safe_load((CHART / "values.yaml").read_text())


def _templates() -> list[Path]:
    paths = sorted((CHART / "templates").glob("*.yaml"))
    assert paths
    return paths


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2"
    assert chart["name"] == "agentflow"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])


def test_values_images_pinned() -> None:
    for name, image in _values()["image"].items():
        tag = str(image["tag"])
        assert tag and tag != "latest", name


def test_template_value_references_exist() -> None:
    values = _values()
    for path in _templates():
        for ref in VALUES_REF.findall(path.read_text()):
            node: Any = values
            for key in ref.strip(".").split("."):
                assert isinstance(node, dict) and key in node, f"{path.name}: .Values{ref} not in values.yaml"
                node = node[key]


def test_templates_are_kubernetes_yaml_once_actions_are_stripped() -> None:
    kinds = set()
    for path in _templates():
        lines = []
        for line in path.read_text().splitlines():
            if TEMPLATE_ACTION.fullmatch(line.strip()):
                continue  # control flow ({{- if }}, {{- end }}) or a block include
            lines.append(TEMPLATE_ACTION.sub("X", line))
        for doc in yaml.safe_load_all("\n".join(lines)):
            if doc is None:
                continue
            assert {"apiVersion", "kind", "metadata"} <= set(doc), path.name
            kinds.add(doc["kind"])
    assert {"Deployment", "Service", "Job"} <= kinds


def test_templates_take_secrets_from_secret_refs_only() -> None:
    for path in _templates():
        text = path.read_text()
        assert not re.search(r"(?i)password\s*:\s*\S", text), path.name
        assert "kind: Secret" not in text, path.name


def test_helm_lint() -> None:
    result = subprocess.run(
        [go_tool("helm"), "lint", "--strict", str(CHART)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


def _kubeconform(manifests: str, kubernetes_version: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [go_tool("kubeconform"), "-strict", "-summary", "-schema-location",
         schema_location(kubernetes_version)],  # fmt: skip
        input=manifests, capture_output=True, text=True, timeout=120,
    )


@pytest.mark.parametrize("kubernetes_version", KUBERNETES_VERSIONS)
def test_rendered_chart_is_valid_kubernetes(kubernetes_version: str) -> None:
    """`helm template | kubeconform -strict`: every rendered object against the JSON schema of its kind
    (no unknown fields, right types); an object without a schema is an error, not skipped."""
    rendered = subprocess.run(
        [go_tool("helm"), "template", "agentflow", str(CHART)], capture_output=True, text=True, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    result = _kubeconform(rendered.stdout, kubernetes_version)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(docs)} resources found parsing stdin - Valid: {len(docs)}, Invalid: 0, Errors: 0, " \
        "Skipped: 0" in result.stdout, result.stdout


def test_rendered_pods_serve_metrics_on_the_annotated_port() -> None:
    """Every api and worker pod sets AGENTFLOW_METRICS_PORT, exposes it as the `metrics` container port and
    says so in its prometheus.io annotations (docs/observability.md)."""
    rendered = subprocess.run(
        [go_tool("helm"), "template", "agentflow", str(CHART)], capture_output=True, text=True, timeout=120
    )
    assert rendered.returncode == 0, rendered.stderr
    port = _values()["metrics"]["port"]
    components = set()
    for doc in yaml.safe_load_all(rendered.stdout):
        if not doc or doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]
        component = pod["metadata"]["labels"]["app.kubernetes.io/component"]
        if component not in ("api", "worker"):
            continue
        components.add(component)
        annotations = pod["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port),
                               "prometheus.io/path": "/metrics"}, component  # fmt: skip
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["AGENTFLOW_METRICS_PORT"] == str(port), component
        host = env.get("AGENTFLOW_HOST") or container["args"][container["args"].index("--host") + 1]
        assert host == "0.0.0.0", f"{component}: the metrics port must listen on the pod's address"
        assert {"name": "metrics", "containerPort": port} in container["ports"], component
    assert components == {"api", "worker"}


def test_kubeconform_schemas_refuse_a_broken_deployment() -> None:
    """The schemas are real: a misspelt field and a wrong type in a Deployment are both reported."""
    broken = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
        "spec": {
            "replicas": "three", "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}},
                         "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolcy": "Always"}]}},
        },
    }  # fmt: skip
    result = _kubeconform(yaml.safe_dump(broken), KUBERNETES_VERSIONS[-1])
    assert result.returncode == 1, result.stdout
    assert "imagePullPolcy" in result.stdout and "/spec/replicas" in result.stdout, result.stdout


# --- Flink job packaging -------------------------------------------------------------------------


def test_package_job_builds_the_zip_and_prints_flink_run(tmp_path: Path) -> None:
    out = tmp_path / "job.zip"
    result = subprocess.run(
        ["bash", str(PACKAGE_JOB)], capture_output=True, text=True, timeout=120,
        env={**os.environ, "AGENTFLOW_FLINK_ZIP": str(out)},
    )
    assert result.returncode == 0, result.stderr
    names = set(zipfile.ZipFile(out).namelist())
    assert {"domain/__init__.py", "projections/__init__.py", "projections/flink/job.py"} <= names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    command = result.stdout.strip()
    assert command.startswith("flink run ")
    assert "-py projections/flink/job.py" in command
    assert f"-pyfs {out}" in command
