"""`steward up --profile production` as it runs: PostgreSQL under the home, MLflow and Prefect on it behind
Steward's generated credentials, a process worker, two gateway replicas; Steward's own commands work through
the servers and an attacker's REST calls are refused (issue 17); a registry change reaches both replicas before
the command returns; state survives a restart."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pyarrow.dataset as ds
import pytest

from tests.integration.test_gateway import rows_of
from tests.support.gateway import free_port
from tests.support.models import mark_validated, register_trained, train_spec, with_estimator_params

pytestmark = pytest.mark.whole_stack
ROOT = Path(__file__).resolve().parents[2]
STEWARD = str(Path(sys.executable).parent / "steward")
TOKEN = "production-profile-test-token"
STORES = ("postgres", "prefect", "mlflow")


def _free_pair() -> int:
    """A port p with p + 1 free too: the replicas listen on consecutive ports."""
    for _ in range(50):
        port = free_port()
        if port < 65535:
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no two consecutive free ports")


def _distinct_ports() -> dict[str, int]:
    """A free port per service, none of them the second replica's (gateway + 1): free ports are picked one by
    one, so two picks can coincide ("ports [...] are given to more than one service", seen once in CI)."""
    for _ in range(50):
        ports = {"postgres": free_port(), "prefect": free_port(), "mlflow": free_port(),
                 "gateway": _free_pair(), "deployments": free_port(), "evidently": free_port()}
        taken = [*ports.values(), ports["gateway"] + 1]
        if len(set(taken)) == len(taken):
            return ports
    raise RuntimeError("no distinct free ports for the production profile")


class Stack:
    def __init__(self, home: Path, spec_path: Path, replicas: int = 2) -> None:
        self.home, self.spec_path, self.replicas = home, spec_path, replicas
        self.ports = _distinct_ports()
        self.gateways = [f"http://127.0.0.1:{self.ports['gateway'] + i}" for i in range(replicas)]
        self.env = {**os.environ, "COLUMNS": "250", "STEWARD_HOME": str(home), "STEWARD_ADMIN_TOKEN": TOKEN,
                    "STEWARD_TRACKING_URI": f"http://127.0.0.1:{self.ports['mlflow']}",
                    "STEWARD_PREFECT_API_URL": f"http://127.0.0.1:{self.ports['prefect']}/api",
                    "PREFECT_API_URL": f"http://127.0.0.1:{self.ports['prefect']}/api"}
        for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "PREFECT_HOME", "MLFLOW_TRACKING_USERNAME",
                         "MLFLOW_TRACKING_PASSWORD", "PREFECT_API_AUTH_STRING"):
            self.env.pop(variable, None)  # commands read Steward's credentials from the home, as a user's shell does

    def steward(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([STEWARD, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                              env=self.env)

    def up(self, *only: str) -> subprocess.CompletedProcess:
        options = [arg for name, port in self.ports.items() for arg in (f"--{name}-port", str(port))]
        return self.steward("up", str(self.spec_path), "--profile", "production", "--replicas", str(self.replicas),
                            *options,
                            "--timeout", "400", *(arg for name in only for arg in ("--only", name)))

    def credentials(self):
        """Steward's MLflow and Prefect credentials, as the first `up` generated them under the home."""
        from steward.credentials import ControlPlaneSecrets

        return ControlPlaneSecrets(self.home).load(environ={})

    def prefect_auth(self) -> tuple[str, str]:
        """Steward's Prefect auth string as httpx's basic auth."""
        user, _, password = self.credentials().prefect_auth_string.get_secret_value().partition(":")
        return user, password

    @contextlib.contextmanager
    def registry(self):
        """The registry through the stack's MLflow server as Steward; training logs its runs there too meanwhile."""
        from unittest.mock import patch

        import mlflow

        from steward.registry.adapter import Registry

        url, previous = self.env["STEWARD_TRACKING_URI"], (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
        mlflow.set_tracking_uri(url)
        mlflow.set_registry_uri(url)
        credentials = self.credentials()
        try:
            with patch.dict(os.environ, {"MLFLOW_TRACKING_USERNAME": credentials.mlflow_username,
                                         "MLFLOW_TRACKING_PASSWORD": credentials.mlflow_password.get_secret_value()}):
                yield Registry(self.env["STEWARD_TRACKING_URI"], (self.home / "mlflow" / "artifacts").as_uri(),
                               actor="production-profile-test")
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])

    def views(self, model: str) -> list[str | None]:
        """The champion each replica serves, from its /admin/status."""
        champions = []
        for url in self.gateways:
            status = httpx.get(f"{url}/admin/status", headers={"authorization": f"Bearer {TOKEN}"}, timeout=10).json()
            entry = next(m for m in status["models"] if m["model"] == model)
            champions.append((entry.get("champion") or {}).get("version"))
        return champions


REFUSED = {401, 403}


def _registry_state(stack: Stack, model: str) -> dict:
    """Versions (with their tags), aliases and model tags, read as Steward."""
    from mlflow import MlflowClient

    with stack.registry():
        client = MlflowClient(stack.env["STEWARD_TRACKING_URI"], stack.env["STEWARD_TRACKING_URI"])
        registered = client.get_registered_model(model)
        versions = {v.version: dict(v.tags) for v in client.search_model_versions(f"name='{model}'")}
        return {"versions": versions, "aliases": dict(registered.aliases), "tags": dict(registered.tags)}


def _mlflow_writes(model: str, source: str, run_id: str, tags: dict[str, str]) -> list[tuple[str, dict]]:
    """Issue 17's attack: a new version from v1's model with v1's tags, made challenger, 100% of traffic to it."""
    from steward.registry.aliases import TRAFFIC_PLAN_TAG

    return [
        ("model-versions/create", {"name": model, "source": source, "run_id": run_id,
                                   "tags": [{"key": k, "value": v} for k, v in tags.items()]}),
        ("registered-models/alias", {"name": model, "alias": "challenger", "version": "1"}),
        ("registered-models/alias", {"name": model, "alias": "champion", "version": "1"}),
        ("registered-models/set-tag", {"name": model, "key": TRAFFIC_PLAN_TAG,
                                       "value": json.dumps({"arms": [{"alias": "challenger", "weight": 1.0}]})}),
        ("registered-models/delete-alias", {"name": model, "alias": "champion"}),
    ]


def assert_only_steward_changes_the_registry(stack: Stack, model: str, credentials) -> None:
    """With MLflow's REST API alone an attacker created a version from v1 with v1's tags, made it challenger
    and sent it all traffic (issue 17): without Steward's credentials, or with wrong ones, every such write
    and any read of the registry is refused, and the registry stays as it was."""
    from mlflow import MlflowClient

    mlflow_url = stack.env["STEWARD_TRACKING_URI"]
    before = _registry_state(stack, model)
    with stack.registry():
        v1 = MlflowClient(mlflow_url, mlflow_url).get_model_version(model, "1")
    password = credentials.mlflow_password.get_secret_value()
    for auth in (None, (credentials.mlflow_username, "not-the-password"), ("attacker", password)):
        for path, body in _mlflow_writes(model, v1.source, v1.run_id, dict(v1.tags)):
            method = httpx.delete if path.endswith("delete-alias") else httpx.post
            kwargs = {"params": body} if method is httpx.delete else {"json": body}
            response = method(f"{mlflow_url}/api/2.0/mlflow/{path}", auth=auth, timeout=30, **kwargs)
            assert response.status_code in REFUSED, (path, auth and auth[0], response.status_code, response.text)
        read = httpx.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": model}, auth=auth,
                         timeout=30)
        assert read.status_code in REFUSED, "an unauthenticated read of the registry was answered"
    assert _registry_state(stack, model) == before


def assert_prefect_answers_only_steward(stack: Stack) -> None:
    """No Prefect API call without Steward's auth string; the health probes stay open for the supervisor."""
    prefect_url = stack.env["STEWARD_PREFECT_API_URL"]
    for auth in (None, ("steward", "wrong")):
        for method, path, body in (("POST", "/deployments/filter", {"limit": 5}),
                                   ("POST", "/flow_runs/filter", {"limit": 5}),
                                   ("POST", "/flows/", {"name": "attacker-flow"})):
            response = httpx.request(method, f"{prefect_url}{path}", json=body, auth=auth, timeout=30)
            assert response.status_code in REFUSED, (path, response.status_code, response.text)
    assert httpx.get(f"{prefect_url}/health", timeout=10).status_code == 200
    assert httpx.get(f"{stack.env['STEWARD_TRACKING_URI']}/health", timeout=10).status_code == 200
    flows = httpx.post(f"{prefect_url}/flows/filter", json={"limit": 200}, auth=stack.prefect_auth(),
                       timeout=30).json()
    assert "attacker-flow" not in {flow["name"] for flow in flows}


def _reach_seconds(output: str) -> float:
    match = re.search(r"2 gateway\(s\) acknowledged .* within ([0-9.]+) s", " ".join(output.split()))
    assert match, f"the command did not report both replicas acknowledging:\n{output}"
    return float(match.group(1))


def _logged_predictions(home: Path, model: str) -> int:
    folder = home / "predictions" / "predictions" / f"model={model}"
    files = sorted(str(path) for path in folder.rglob("*.parquet"))
    return ds.dataset(files, format="parquet").count_rows() if files else 0


@pytest.mark.slow
@pytest.mark.timeout(2700)  # three starts of the whole profile and a training command: 11 min at load 20
def test_production_profile_two_replicas_follow_the_registry_and_state_survives_a_restart(
        production_home, write_spec, example_frame, example_spec, model_name):
    spec_path = write_spec()
    stack = Stack(production_home, spec_path)
    prefect_url = stack.env["STEWARD_PREFECT_API_URL"]
    try:
        stores = stack.up(*STORES)
        assert stores.returncode == 0, stores.stdout + stores.stderr
        assert "cluster initialised" in stores.stdout and "created the databases mlflow, prefect" in stores.stdout
        assert "credentials of Steward's processes generated" in stores.stdout
        data_dir = production_home / "postgres" / "data"
        assert data_dir.stat().st_mode & 0o077 == 0, "the cluster's data directory is readable by others"
        secrets = production_home / "secrets"
        for name in ("postgres-password", "mlflow-password", "prefect-auth-string", "mlflow-flask-key",
                     "mlflow-auth.ini"):
            assert (secrets / name).stat().st_mode & 0o077 == 0, name
        assert (production_home / "mlflow" / "basic-auth.db").stat().st_mode & 0o077 == 0
        pid_files = " ".join(path.read_text() for path in (production_home / "run").glob("*.json"))
        assert (secrets / "postgres-password").read_text().strip() not in pid_files, "a pid file holds a password"
        credentials = stack.credentials()

        # v1 by Steward's own commands, run as a user's shell runs them (credentials read from the home);
        # v2 through the MLflow server (backed by PostgreSQL) as Steward; v1 champion before the replicas start
        trained = stack.steward("train", str(spec_path), "--reason", "first version", "--force")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        validated = stack.steward("validate", str(spec_path))
        assert validated.returncode == 0, validated.stdout + validated.stderr
        assert "is now champion" in " ".join(validated.stdout.split())
        spec = example_spec.model_copy(update={"name": model_name})
        with stack.registry() as registry:
            first = registry.champion(model_name)
            second = register_trained(registry, spec, train_spec(with_estimator_params(spec, max_iter=30),
                                                                 example_frame.iloc[3000:], "second"))
            mark_validated(registry, model_name, second.version)

        full = stack.up()
        assert full.returncode == 0, full.stdout + full.stderr
        for name in ("gateway-1", "gateway-2", "worker"):
            assert f"{name}: healthy" in full.stdout, full.stdout
        assert stack.views(model_name) == [first.version, first.version]
        deployments = httpx.post(f"{prefect_url}/deployments/filter", json={"limit": 200}, auth=stack.prefect_auth(),
                                 timeout=10).json()
        assert {d["work_pool_name"] for d in deployments} == {"steward-pool"}
        assert {d["name"] for d in deployments} == {model_name}, "the worker did not register through the auth"

        status = stack.steward("stack-status", timeout=120)
        assert status.returncode == 0, status.stdout + status.stderr
        lines = status.stdout.splitlines()
        for name in ("postgres", "prefect", "mlflow", "gateway-1", "gateway-2", "worker"):
            assert any(line.split("│")[1].strip() == name and "healthy" in line for line in lines if "│" in line), name
        views = [line for line in lines if model_name in line]
        assert len(views) == 2 and all(f"v{first.version}" in line for line in views), status.stdout

        # issue 17's attack, without Steward's credentials: every write refused, the registry unchanged
        assert_only_steward_changes_the_registry(stack, model_name, credentials)
        assert stack.views(model_name) == [first.version, first.version]
        assert_prefect_answers_only_steward(stack)

        # predictions through both replicas, written to the log before the restart
        records = rows_of(example_frame, 5)
        for url in stack.gateways:
            response = httpx.post(f"{url}/v1/models/{model_name}/predict", json={"dataframe_records": records},
                                  timeout=30)
            assert response.status_code == 200, response.text
            flushed = httpx.post(f"{url}/admin/log/flush", headers={"authorization": f"Bearer {TOKEN}"}, timeout=60)
            assert flushed.status_code == 200, flushed.text
        logged = _logged_predictions(production_home, model_name)
        assert logged == 10

        # a promotion and a rollback return only once every replica serves the change
        promoted = stack.steward("promote", model_name, second.version, "--reason", "promote in the test")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        promote_seconds = _reach_seconds(promoted.stdout)
        assert stack.views(model_name) == [second.version, second.version]
        shown = stack.steward("status", model_name)
        assert shown.returncode == 0, shown.stdout + shown.stderr
        assert f"champion v{second.version} lineage" in shown.stdout, shown.stdout
        rolled_back = stack.steward("rollback", model_name, "--reason", "roll back in the test")
        assert rolled_back.returncode == 0, rolled_back.stdout + rolled_back.stderr
        rollback_seconds = _reach_seconds(rolled_back.stdout)
        assert stack.views(model_name) == [first.version, first.version]
        history = stack.steward("history", model_name)
        assert "promote in the test" in " ".join(history.stdout.split()), history.stdout
        print(f"\nfleet reach: promotion acknowledged by both replicas within {promote_seconds:.2f} s, "
              f"rollback within {rollback_seconds:.2f} s")

        # no credential in a log, a pid file or the auth configuration
        written = " ".join(path.read_text(errors="replace") for folder in ("logs", "run")
                           for path in (production_home / folder).iterdir() if path.is_file())
        written += (secrets / "mlflow-auth.ini").read_text()
        assert credentials.mlflow_password.get_secret_value() not in written
        assert credentials.prefect_auth_string.get_secret_value().partition(":")[2] not in written

        # down stops everything it started and leaves nothing running
        pids = {p.stem: json.loads(p.read_text())["pid"] for p in (production_home / "run").glob("*.json")}
        assert set(pids) == {*STORES, "gateway-1", "gateway-2", "worker", "evidently"}
        down = stack.steward("down", timeout=300)
        assert down.returncode == 0, down.stdout + down.stderr
        for name, pid in pids.items():
            assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, name
        assert not any(str(data_dir) in " ".join(process.info["cmdline"] or ())
                       for process in psutil.process_iter(["cmdline"])), "a postgres process outlived down"

        # up again: champion, history and prediction log are still there
        again = stack.up()
        assert again.returncode == 0, again.stdout + again.stderr
        assert "cluster initialised" not in again.stdout
        assert stack.views(model_name) == [first.version, first.version]
        with stack.registry() as registry:
            assert registry.champion(model_name).version == first.version
            reasons = [entry.reason for entry in registry.history(model_name)]
        assert {"promote in the test", "roll back in the test"} <= set(reasons), reasons
        assert _logged_predictions(production_home, model_name) == logged
    finally:
        final = stack.steward("down", timeout=300)
        assert final.returncode == 0, final.stdout + final.stderr


def test_the_production_profile_needs_an_admin_token(write_spec, tmp_path):
    env = {**os.environ, "STEWARD_HOME": str(tmp_path / "home")}
    env.pop("STEWARD_ADMIN_TOKEN", None)
    result = subprocess.run([STEWARD, "up", str(write_spec()), "--profile", "production", "--replicas", "2"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert result.returncode == 1
    assert "set STEWARD_ADMIN_TOKEN" in " ".join(result.stderr.split())
    assert not (tmp_path / "home" / "postgres").exists()


def test_replicas_need_the_production_profile(write_spec, tmp_path):
    result = subprocess.run([STEWARD, "up", str(write_spec()), "--replicas", "2", "--home", str(tmp_path / "home")],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 1
    assert "--profile production" in " ".join(result.stderr.split())
