"""Rotating Steward's MLflow password: changed in MLflow and the home together, or neither.

Issue 17's attack against the whole production profile (every write refused without Steward's credentials,
Steward's own commands working through the same servers) is replayed in test_production_profile.py, on the
profile that test starts anyway.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from steward.credentials import CredentialsError
from tests.support.gateway import free_port
from tests.support.polling import wait_until


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
