"""The compose stack (deployments/docker-compose.yml) on free loopback ports, for tests/integration/test_docker_stack.py.

``ComposeStack`` drives ``docker-compose`` for one project; ``python -m tests.support.compose story|snapshot
<config.json>`` runs in a fresh interpreter (Prefect and MLflow read their settings when first imported):
``story`` runs the demo's story (flows/demo.py) against the stack, ``snapshot`` prints the state that must
survive a restart.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "deployments" / "docker-compose.yml"
STACK_SERVICES = ("postgres", "mlflow", "prefect", "gateway-1", "gateway-2", "worker")
FLOW_RUN_ROLE = "org.steward.role=flow-run"


class ComposeError(RuntimeError):
    """A compose command failed or a service did not become healthy; the message has its output."""


@dataclass(frozen=True)
class ComposeStack:
    project: str
    data_dir: Path
    ports: dict[str, int]  # postgres, prefect, mlflow, gateway_1, gateway_2, worker_health
    password: str
    admin_token: str
    version: str
    mlflow_password: str  # of MLflow's account steward (its basic-auth app)
    prefect_password: str  # of Prefect's API auth string steward:<password>

    @classmethod
    def load(cls, path: Path) -> ComposeStack:
        document = json.loads(path.read_text())
        return cls(**{**document, "data_dir": Path(document["data_dir"])})

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({**asdict(self), "data_dir": str(self.data_dir)}))

    # -- addresses
    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def prefect_api_url(self) -> str:
        return self.url("prefect") + "/api"

    @property
    def prefect_auth_string(self) -> str:
        return f"steward:{self.prefect_password}"

    def credentials(self) -> dict[str, str]:
        """The control plane's credentials, as an operator's shell exports them for the stack and its CLIs."""
        return {"MLFLOW_TRACKING_USERNAME": "steward", "MLFLOW_TRACKING_PASSWORD": self.mlflow_password,
                "PREFECT_API_AUTH_STRING": self.prefect_auth_string}

    def steward_env(self) -> dict[str, str]:
        """What a host process needs to use the stack as Steward's backend."""
        return {
            "STEWARD_HOME": str(self.data_dir),
            "STEWARD_TRACKING_URI": self.url("mlflow"),
            "MLFLOW_TRACKING_URI": self.url("mlflow"),
            "STEWARD_ARTIFACT_ROOT": "mlflow-artifacts:/steward",
            "STEWARD_STORE_URI": str(self.data_dir / "predictions"),
            "STEWARD_PREFECT_API_URL": self.prefect_api_url,
            "PREFECT_API_URL": self.prefect_api_url,
            "STEWARD_ADMIN_TOKEN": self.admin_token,
            **self.credentials(),
            # the containers run as uid 10001 and this process as root, and both write under the data folder (the
            # prediction log, the ledger, reference profiles, prefect.yaml): group access, as the compose file says
            "STEWARD_HOME_ACCESS": "group",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }

    def compose_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "STEWARD_"))}
        env.update(
            POSTGRES_PASSWORD=self.password, STEWARD_ADMIN_TOKEN=self.admin_token, STEWARD_DATA_DIR=str(self.data_dir),
            STEWARD_VERSION=self.version, DOCKER_GID=str(os.stat("/var/run/docker.sock").st_gid),
            POSTGRES_PORT=str(self.ports["postgres"]), PREFECT_PORT=str(self.ports["prefect"]),
            MLFLOW_PORT=str(self.ports["mlflow"]), GATEWAY_PORT_1=str(self.ports["gateway_1"]),
            GATEWAY_PORT_2=str(self.ports["gateway_2"]), WORKER_HEALTH_PORT=str(self.ports["worker_health"]),
            **self.credentials(),
        )
        return env

    # -- docker-compose
    def compose(self, *args: str, timeout: float = 600, extra_env: dict[str, str] | None = None,
                check: bool = True) -> subprocess.CompletedProcess:
        command = ["docker-compose", "--no-ansi", "-p", self.project, "-f", str(COMPOSE_FILE), *args]
        result = subprocess.run(command, env={**self.compose_env(), **(extra_env or {})}, capture_output=True,
                                text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise ComposeError(f"{' '.join(command[4:])} exited {result.returncode}:\n{result.stdout[-3000:]}"
                               f"\n{result.stderr[-3000:]}")
        return result

    def containers(self, all_states: bool = False) -> list[Any]:
        import docker

        return docker.from_env().containers.list(
            all=all_states, filters={"label": f"com.docker.compose.project={self.project}"})

    def health(self) -> dict[str, str]:
        """Service -> its container's health (or state, for a container without a health check)."""
        found = {}
        for container in self.containers(all_states=True):
            state = container.attrs["State"]
            found[container.labels["com.docker.compose.service"]] = state.get("Health", {}).get("Status", state["Status"])
        return found

    def up(self, *services: str, timeout: float = 600) -> None:
        """Start ``services`` (created if need be) and wait until each is healthy."""
        self.compose("up", "-d", "--no-build", *services, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            health = self.health()
            if all(health.get(service) == "healthy" for service in services):
                return
            # "unhealthy" may still turn healthy (a slow start on a busy machine); a container that stopped will not
            failed = {s: h for s, h in health.items() if s in services and h in ("exited", "dead")}
            if failed or time.monotonic() > deadline:
                logs = "\n".join(f"--- {service}\n" + self.compose("logs", "--no-color", "--tail", "30", service,
                                                                   check=False).stdout[-2500:]
                                 for service in services if health.get(service) != "healthy")
                raise ComposeError(f"services not healthy: {health}\n{logs}")
            time.sleep(2)

    def down(self, volumes: bool = False) -> None:
        self.compose("down", "--remove-orphans", *(["--volumes"] if volumes else []), timeout=300)


# ------------------------------------------------------------------ in a fresh interpreter
def _apply(stack: ComposeStack) -> None:
    os.environ.update(stack.steward_env())
    for handler in ("CONSOLE", "CONSOLE_FLOW_RUNS", "CONSOLE_TASK_RUNS"):
        os.environ.setdefault(f"PREFECT_LOGGING_HANDLERS_{handler}_LEVEL", "ERROR")


def run_story(stack: ComposeStack) -> None:
    """The short demo story with the compose stack as its backend; deployments go to the Docker pool."""
    _apply(stack)
    from dataclasses import replace

    from deployments.catalog import plan_deployments, render_prefect_yaml
    from flows.demo import Story
    from steward import stack as local_stack
    from steward.config import apply_environment
    from steward.simulation.demo import DemoConfig

    class ComposeStory(Story):
        def start_services(self, only: tuple[str, ...] | None = None) -> None:
            if only is not None:  # the registry and the orchestrator first; the gateways need a champion
                stack.up("postgres", "mlflow", "prefect")
                return
            prefect_file = stack.data_dir / "prefect.yaml"
            plans = plan_deployments([str(self.paths.spec)], gateway_url=stack.url("gateway_1"))
            prefect_file.write_text(render_prefect_yaml(plans))
            stack.compose("run", "--rm", "deploy", extra_env={"STEWARD_PREFECT_FILE": str(prefect_file)})
            stack.up("gateway-1", "gateway-2", "worker")

    settings = apply_environment()
    config = local_stack.StackConfig(spec_paths=(str(settings.home / "demo" / "spec.yaml"),),
                                     prefect_port=stack.ports["prefect"], mlflow_port=stack.ports["mlflow"],
                                     gateway_port=stack.ports["gateway_1"])
    story = ComposeStory(settings, replace(config), DemoConfig.short())
    story.run()


def snapshot(stack: ComposeStack) -> dict[str, Any]:
    """What must survive a restart: champion, alias history, ledger, prediction log, Prefect's runs."""
    _apply(stack)
    import httpx
    import pandas as pd

    from steward.config import apply_environment
    from steward.monitoring.ledger import Ledger
    from steward.registry.adapter import Registry
    from steward.registry.history import CHAMPION
    from steward.simulation.demo import MODEL

    settings = apply_environment()
    registry = Registry.from_settings(settings)
    predictions = sorted((stack.data_dir / "predictions").rglob("*.parquet"))
    rows = sum(len(pd.read_parquet(path)) for path in predictions if "model=" in str(path))
    runs = httpx.post(f"{stack.prefect_api_url}/flow_runs/filter", timeout=30, auth=("steward", stack.prefect_password),
                      json={"limit": 200, "offset": 0, "sort": "EXPECTED_START_TIME_ASC"}).raise_for_status().json()
    return {
        "champion": registry.alias_version(MODEL, CHAMPION),
        "versions": sorted(v.version for v in registry.list_versions(MODEL)),
        "history": [f"{e.time.isoformat()} {e.kind.value} {e.move()}" for e in registry.history(MODEL)],
        "ledger": sorted(f"{e.id} {e.status.value}" for e in Ledger.from_settings(settings).entries(MODEL)),
        "prediction_rows": rows,
        "flow_runs": sorted(run["id"] for run in runs),
    }


def main(argv: list[str]) -> int:
    command, config = argv[1], Path(argv[2])
    stack = ComposeStack.load(config)
    if command == "story":
        run_story(stack)
    elif command == "snapshot":
        print(json.dumps(snapshot(stack)))
    else:
        raise SystemExit(f"unknown command {command!r}: story or snapshot")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
