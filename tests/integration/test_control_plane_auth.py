"""The production profile's control plane accepts only Steward: issue 17's MLflow attack, replayed without credentials.

With MLflow's REST API alone an attacker created a version from v1 with v1's tags, made it challenger and set the
traffic plan to it. Against `steward up --profile production` (one replica) every such write, and any Prefect API
call, is refused without Steward's credentials and the registry stays as it was; Steward's own train, validate,
promote and status work through the same servers with the credentials the stack generated.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient

from steward.credentials import CredentialsError
from steward.registry.aliases import TRAFFIC_PLAN_TAG
from tests.integration.test_production_profile import STORES, Stack
from tests.support.gateway import free_port
from tests.support.models import mark_validated, register_trained, train_spec, with_estimator_params
from tests.support.polling import wait_until

pytestmark = pytest.mark.whole_stack
REFUSED = {401, 403}


def _registry_state(stack: Stack, model: str) -> dict:
    """Versions (with their tags), aliases and model tags, read as Steward."""
    with stack.registry():
        client = MlflowClient(stack.env["STEWARD_TRACKING_URI"], stack.env["STEWARD_TRACKING_URI"])
        registered = client.get_registered_model(model)
        versions = {v.version: dict(v.tags) for v in client.search_model_versions(f"name='{model}'")}
        return {"versions": versions, "aliases": dict(registered.aliases), "tags": dict(registered.tags)}


def _mlflow_writes(model: str, source: str, run_id: str, tags: dict[str, str]) -> list[tuple[str, dict]]:
    """Issue 17's attack: a new version from v1's model with v1's tags, made challenger, 100% of traffic to it."""
    return [
        ("model-versions/create", {"name": model, "source": source, "run_id": run_id,
                                   "tags": [{"key": k, "value": v} for k, v in tags.items()]}),
        ("registered-models/alias", {"name": model, "alias": "challenger", "version": "1"}),
        ("registered-models/alias", {"name": model, "alias": "champion", "version": "1"}),
        ("registered-models/set-tag", {"name": model, "key": TRAFFIC_PLAN_TAG,
                                       "value": json.dumps({"arms": [{"alias": "challenger", "weight": 1.0}]})}),
        ("registered-models/delete-alias", {"name": model, "alias": "champion"}),
    ]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # two starts of the profile and a training flow: ~8 min at load 20
def test_only_steward_can_change_the_registry_or_call_prefect_in_the_production_profile(
        production_home, write_spec, example_frame, example_spec, model_name):
    stack = Stack(production_home, write_spec(), replicas=1)
    mlflow_url, prefect_url = stack.env["STEWARD_TRACKING_URI"], stack.env["STEWARD_PREFECT_API_URL"]
    try:
        stores = stack.up(*STORES)
        assert stores.returncode == 0, stores.stdout + stores.stderr
        assert "credentials of Steward's processes generated" in stores.stdout
        secrets = production_home / "secrets"
        for name in ("mlflow-password", "prefect-auth-string", "mlflow-flask-key", "mlflow-auth.ini"):
            assert (secrets / name).stat().st_mode & 0o077 == 0, name
        assert (production_home / "mlflow" / "basic-auth.db").stat().st_mode & 0o077 == 0
        credentials = stack.credentials()
        password = credentials.mlflow_password.get_secret_value()
        auth_string = credentials.prefect_auth_string.get_secret_value()

        # Steward's own commands, run as a user's shell runs them (credentials read from the home)
        trained = stack.steward("train", str(stack.spec_path), "--reason", "first version", "--force")
        assert trained.returncode == 0, trained.stdout + trained.stderr
        validated = stack.steward("validate", str(stack.spec_path))
        assert validated.returncode == 0, validated.stdout + validated.stderr
        assert "is now champion" in " ".join(validated.stdout.split())

        full = stack.up()
        assert full.returncode == 0, full.stdout + full.stderr
        assert "gateway-1: healthy" in full.stdout and "worker: healthy" in full.stdout
        assert stack.views(model_name) == ["1"]

        # the attack, without credentials and with wrong ones: every write refused, the registry unchanged
        before = _registry_state(stack, model_name)
        with stack.registry():
            v1 = MlflowClient(mlflow_url, mlflow_url).get_model_version(model_name, "1")
        for auth in (None, (credentials.mlflow_username, "not-the-password"), ("attacker", password)):
            for path, body in _mlflow_writes(model_name, v1.source, v1.run_id, dict(v1.tags)):
                method = httpx.delete if path.endswith("delete-alias") else httpx.post
                kwargs = {"params": body} if method is httpx.delete else {"json": body}
                response = method(f"{mlflow_url}/api/2.0/mlflow/{path}", auth=auth, timeout=30, **kwargs)
                assert response.status_code in REFUSED, (path, auth and auth[0], response.status_code, response.text)
            read = httpx.get(f"{mlflow_url}/api/2.0/mlflow/registered-models/get", params={"name": model_name},
                             auth=auth, timeout=30)
            assert read.status_code in REFUSED, "an unauthenticated read of the registry was answered"
        assert _registry_state(stack, model_name) == before
        assert stack.views(model_name) == ["1"]

        # Prefect: no API call without the auth string; the health probe stays open for the supervisor
        for auth in (None, ("steward", "wrong")):
            for method, path, body in (("POST", "/deployments/filter", {"limit": 5}),
                                       ("POST", "/flow_runs/filter", {"limit": 5}),
                                       ("POST", "/flows/", {"name": "attacker-flow"})):
                response = httpx.request(method, f"{prefect_url}{path}", json=body, auth=auth, timeout=30)
                assert response.status_code in REFUSED, (path, response.status_code, response.text)
        assert httpx.get(f"{prefect_url}/health", timeout=10).status_code == 200
        assert httpx.get(f"{mlflow_url}/health", timeout=10).status_code == 200
        flows = httpx.post(f"{prefect_url}/flows/filter", json={"limit": 200}, auth=stack.prefect_auth(),
                           timeout=30).json()
        assert "attacker-flow" not in {flow["name"] for flow in flows}
        deployments = httpx.post(f"{prefect_url}/deployments/filter", json={"limit": 200},
                                 auth=stack.prefect_auth(), timeout=30).json()
        assert {d["name"] for d in deployments} == {model_name}, "the worker did not register through the auth"

        # Steward changes the registry through the same server: a second version promoted, every replica told
        spec = example_spec.model_copy(update={"name": model_name})
        with stack.registry() as registry:
            second = register_trained(registry, spec, train_spec(with_estimator_params(spec, max_iter=30),
                                                                 example_frame.iloc[3000:], "second"))
            mark_validated(registry, model_name, second.version)
        promoted = stack.steward("promote", model_name, second.version, "--reason", "promote with credentials")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        assert "1 gateway(s) acknowledged" in " ".join(promoted.stdout.split()), promoted.stdout
        assert stack.views(model_name) == [second.version]
        status = stack.steward("status", model_name)
        assert status.returncode == 0, status.stdout + status.stderr
        assert f"champion v{second.version} lineage" in status.stdout, status.stdout
        history = stack.steward("history", model_name)
        assert "promote with credentials" in " ".join(history.stdout.split()), history.stdout

        # no credential in a log, a pid file or the auth configuration
        written = " ".join(path.read_text(errors="replace") for folder in ("logs", "run")
                           for path in (production_home / folder).iterdir() if path.is_file())
        written += (secrets / "mlflow-auth.ini").read_text()
        assert password not in written and auth_string.partition(":")[2] not in written
    finally:
        final = stack.steward("down", timeout=300)
        assert final.returncode == 0, final.stdout + final.stderr


@contextlib.contextmanager
def _authenticated_mlflow(home: Path):
    """MLflow's basic-auth app as the production profile starts it, on SQLite (the auth part is what is tested)."""
    from steward.credentials import ControlPlaneSecrets

    secrets = ControlPlaneSecrets(home)
    credentials = secrets.ensure(environ={})
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))},
           **secrets.mlflow_server_environment(credentials)}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri",
         f"sqlite:///{home / 'mlflow' / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(f"{url}/health"), "MLflow to start", timeout=300, every=1.0)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _search_status(url: str, auth: tuple[str, str]) -> int:
    return httpx.get(f"{url}/api/2.0/mlflow/registered-models/search", params={"max_results": 1}, auth=auth,
                     timeout=30).status_code


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_rotating_steward_s_mlflow_password_changes_it_in_mlflow_and_the_home(tmp_path):
    from steward.credentials import ControlPlaneSecrets

    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    secrets = ControlPlaneSecrets(home)
    with _authenticated_mlflow(home) as url:
        old = secrets.load(environ={})
        user, old_password = old.mlflow_username, old.mlflow_password.get_secret_value()
        assert _search_status(url, (user, old_password)) == 200
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_", "STEWARD_"))}
        rotated = subprocess.run([str(Path(sys.executable).parent / "steward"), "rotate-credentials", "--home",
                                  str(home), "--mlflow-url", url, "--prefect"], env={**env, "COLUMNS": "200"},
                                 capture_output=True, text=True, timeout=300)
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert "restart the stack" in rotated.stdout
        new = secrets.load(environ={})
        new_password = new.mlflow_password.get_secret_value()
        assert new_password != old_password and new.prefect_auth_string != old.prefect_auth_string
        assert new_password not in rotated.stdout + rotated.stderr
        assert secrets.mlflow_password_file.stat().st_mode & 0o077 == 0
        assert _search_status(url, (user, old_password)) == 401
        assert _search_status(url, (user, new_password)) == 200

        # a password set by a secret store is changed there, not here; MLflow and the home stay as they were
        os.environ["MLFLOW_TRACKING_PASSWORD"] = "from-a-secret-store"
        try:
            with pytest.raises(CredentialsError, match="secret store"):
                secrets.rotate_mlflow_password(url)
        finally:
            del os.environ["MLFLOW_TRACKING_PASSWORD"]
        assert _search_status(url, (user, new_password)) == 200
        # a wrong password in the home: MLflow refuses, and the home keeps it (nothing half-changed)
        secrets.mlflow_password_file.write_text("not-the-password\n")
        with pytest.raises(CredentialsError, match="HTTP 401"):
            secrets.rotate_mlflow_password(url)
        assert secrets.mlflow_password_file.read_text().strip() == "not-the-password"
        assert _search_status(url, (user, new_password)) == 200
