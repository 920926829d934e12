"""The compose stack on a real Docker engine: the images built, the demo story run against it, a restart.

One module-scoped run: ``steward images build`` (cached layers make a rebuild quick), then the stack of
deployments/docker-compose.yml on free loopback ports in a fresh data folder: PostgreSQL, MLflow and
Prefect on it, two gateway replicas and a Prefect Docker worker. The short demo story (flows/demo.py)
runs against it in a fresh interpreter, its deployments registered with ``prefect deploy`` to the
Docker work pool, so the triggered flow runs execute in containers of the worker image; the engine's
event log shows them. Then the stack is taken down (volumes kept) and brought up again, and what it
held must be there; at the end it is removed with its volumes and nothing of it is left running.

Without an engine the module is skipped, unless STEWARD_REQUIRE_DOCKER is set (``.ci/run`` sets it,
after starting the engine), where it fails.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from steward import images
from tests.support.compose import FLOW_RUN_ROLE, STACK_SERVICES, ComposeStack
from tests.support.gateway import free_port

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.timeout(2700)]

ROOT = Path(__file__).resolve().parents[2]


def _engine():
    try:
        return images.docker_client()
    except images.ImageError as error:
        if os.environ.get("STEWARD_REQUIRE_DOCKER"):
            pytest.fail(str(error))
        pytest.skip(str(error))


def _run(stack: ComposeStack, config: Path, command: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "STEWARD_"))}
    return subprocess.run([sys.executable, "-m", "tests.support.compose", command, str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@dataclass
class StackRun:
    stack: ComposeStack
    config: Path
    story: subprocess.CompletedProcess
    flow_run_containers: list[dict[str, str]]  # labels of each flow-run container the engine started
    before_restart: dict
    after_restart: dict
    services_after_restart: dict[str, str]
    left_running: list[str]
    command_lines: dict[str, str]  # each stack container's command line, as `ps` on the host shows it
    without_credentials: dict[str, int]  # HTTP status of calls to MLflow and Prefect that carry none

    @property
    def outcome(self) -> dict:
        path = self.stack.data_dir / "demo" / "outcome.json"
        assert path.exists(), self.story.stdout[-5000:] + self.story.stderr[-5000:]
        return json.loads(path.read_text())


@pytest.fixture(scope="module")
def built_images():
    client = _engine()
    info = images.build_info(ROOT)  # before the build, which labels the images with it
    built = images.build_images(client, images.BaseChoice.LOCAL, ca_bundle=_ca_bundle(), echo=lambda _: None)
    return info, {image.name: image for image in built}


def _ca_bundle() -> Path | None:
    return images.HOST_CA_BUNDLE if images.HOST_CA_BUNDLE.exists() else None


@pytest.fixture(scope="module")
def stack_run(built_images, tmp_path_factory) -> StackRun:
    client = _engine()
    data_dir = tmp_path_factory.mktemp("compose") / "data"
    data_dir.mkdir()
    os.chown(data_dir, 10001, 10001)  # the containers' steward user writes the prediction log here
    data_dir.chmod(0o2770)  # as deployments/docker-compose.yml asks: its group, inherited by what is made inside
    stack = ComposeStack(
        project=f"stewardtest{secrets.token_hex(3)}", data_dir=data_dir,
        ports={name: free_port() for name in ("postgres", "prefect", "mlflow", "gateway_1", "gateway_2",
                                               "worker_health")},
        password=secrets.token_urlsafe(16), admin_token=secrets.token_urlsafe(16),
        version=images.build_info(ROOT).version,
        mlflow_password=secrets.token_urlsafe(16), prefect_password=secrets.token_urlsafe(16),
    )
    config = tmp_path_factory.mktemp("compose-config") / "stack.json"
    stack.save(config)
    # followed live: the engine keeps only its last 256 events, and health checks fill them quickly
    events = client.events(decode=True, filters={"type": "container", "event": "start", "label": FLOW_RUN_ROLE})
    flow_run_containers: list[dict[str, str]] = []
    follower = threading.Thread(target=lambda: flow_run_containers.extend(e["Actor"]["Attributes"] for e in events),
                                daemon=True)
    follower.start()
    try:
        story = _run(stack, config, "story", timeout=1500)
        events.close()
        before = _snapshot(stack, config)
        stack.down()
        stack.up(*STACK_SERVICES)
        services_after = stack.health()
        after = _snapshot(stack, config)
        without_credentials = _calls_without_credentials(stack)
        command_lines = {c.name: " ".join([c.attrs["Path"], *c.attrs["Args"]]) for c in client.containers.list(
            filters={"label": f"com.docker.compose.project={stack.project}"})}
    finally:
        stack.down(volumes=True)
    left = [c.name for c in client.containers.list(filters={"label": f"com.docker.compose.project={stack.project}"})]
    left += [c.name for c in client.containers.list(filters={"label": FLOW_RUN_ROLE})]
    yield StackRun(stack, config, story, flow_run_containers, before, after, services_after, left, command_lines,
                   without_credentials)
    shutil.rmtree(data_dir, ignore_errors=True)


def _calls_without_credentials(stack: ComposeStack) -> dict[str, int]:
    import httpx

    mlflow, prefect = stack.url("mlflow"), stack.prefect_api_url
    return {
        "mlflow models": httpx.get(f"{mlflow}/api/2.0/mlflow/registered-models/search", timeout=30).status_code,
        "mlflow health": httpx.get(f"{mlflow}/health", timeout=30).status_code,
        "prefect flow runs": httpx.post(f"{prefect}/flow_runs/filter", json={"limit": 1}, timeout=30).status_code,
        "prefect health": httpx.get(f"{prefect}/health", timeout=30).status_code,
    }


def _snapshot(stack: ComposeStack, config: Path) -> dict:
    result = _run(stack, config, "snapshot", timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_images_are_labelled_non_root_and_carry_no_build_ca(built_images):
    info, built = built_images
    client = _engine()
    for name, image in built.items():
        assert image.labels["org.opencontainers.image.version"] == info.version, name
        assert image.labels["org.opencontainers.image.revision"] == info.commit, name
        config = client.images.get(image.tag).attrs["Config"]
        assert config["User"] not in ("", "0", "root"), f"{name} runs as root"
        assert config.get("Healthcheck", {}).get("Test"), f"{name} has no HEALTHCHECK"
        found = client.containers.run(image.tag, entrypoint=["sh", "-c", "find / -xdev -path '*build-ca*' 2>/dev/null; "
                                                             "exit 0"], remove=True, network_mode="none")
        assert found.strip() == b"", f"{name} carries the build CA: {found!r}"


def test_the_demo_story_runs_against_the_compose_stack(stack_run):
    assert stack_run.story.returncode == 0, stack_run.story.stdout[-5000:] + stack_run.story.stderr[-5000:]
    outcome = stack_run.outcome
    assert outcome["drift_day"] == 2 and {"debt_ratio", "utilization"} <= set(outcome["drift_columns"])
    assert outcome["retrain_started_by"] == "retrain credit-default on drift or accuracy loss"
    assert outcome["promoted_version"] == "2" and outcome["promotion_steps"] == [10.0, 50.0, 100.0]
    assert (outcome["broken_version"], outcome["broken_validation"]) == ("3", "passed")
    assert (outcome["broken_result"], outcome["broken_stopped_at_step"]) == ("rolled_back", 1)
    assert (outcome["champion"], outcome["challenger"]) == ("2", None)


def test_triggered_flow_runs_execute_in_containers_of_the_worker_image(stack_run):
    flows = {labels.get("io.prefect.flow-name") for labels in stack_run.flow_run_containers}
    assert {"retrain", "validate", "canary-promote"} <= flows, stack_run.flow_run_containers
    assert {labels["image"] for labels in stack_run.flow_run_containers} == {
        f"steward-worker:{stack_run.stack.version}"}
    retrain_runs = {labels["io.prefect.flow-run-name"] for labels in stack_run.flow_run_containers
                    if labels.get("io.prefect.flow-name") == "retrain"}
    assert stack_run.outcome["retrain_run"] in retrain_runs


def test_state_survives_a_restart_of_the_stack(stack_run):
    assert set(stack_run.services_after_restart) == set(STACK_SERVICES)
    assert set(stack_run.services_after_restart.values()) == {"healthy"}
    before, after = stack_run.before_restart, stack_run.after_restart
    assert before["champion"] == "2" and before["versions"] == ["1", "2", "3"]
    assert before["prediction_rows"] > 0 and before["history"] and before["flow_runs"]
    assert after == before


def test_mlflow_and_prefect_refuse_a_call_without_credentials(stack_run):
    """The story, the restart and the snapshots ran with the account steward; a call without it is refused,
    and only the health checks answer it."""
    assert stack_run.without_credentials == {"mlflow models": 401, "mlflow health": 200, "prefect flow runs": 401,
                                             "prefect health": 200}


def test_no_secret_is_on_a_containers_command_line(stack_run):
    assert any("mlflow" in name for name in stack_run.command_lines), stack_run.command_lines
    stack = stack_run.stack
    for name, line in stack_run.command_lines.items():
        for secret in (stack.password, stack.admin_token, stack.mlflow_password, stack.prefect_password):
            assert secret not in line, f"{name} has a secret on its command line"


def test_nothing_of_the_stack_is_left_running(stack_run):
    assert stack_run.left_running == []
    volumes = [v.name for v in _engine().volumes.list() if v.name.startswith(stack_run.stack.project)]
    assert volumes == []

