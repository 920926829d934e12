"""MLflow's auth config as a deployment's start script writes it (compose, Kubernetes), read as MLflow reads it."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from steward.credentials import MLFLOW_AUTH_CACHE_SECONDS, STEWARD_USER

# a password with URL-encoded characters ('%'): it must survive configparser
DATABASE = "postgresql+psycopg2://steward:p%40ss%25word@postgres:5432/mlflow"


def check_written_auth_config(script: str, folder: Path, monkeypatch: Any) -> None:
    """Run the part of ``script`` (``<write the config> && exec mlflow server ...``, its shell ``$`` unescaped)
    that writes the config, and check what MLflow reads from it."""
    from mlflow.server.auth.config import read_auth_config

    write_config, _, start = script.partition(" && exec ")
    assert start.startswith("mlflow server --app-name basic-auth"), start
    assert "--backend-store-uri" not in start, "read from the environment: `ps` would show the database password"
    config = folder / "basic_auth.ini"
    subprocess.run(["/bin/sh", "-c", write_config], check=True, timeout=30,
                   env={"PATH": "/usr/bin:/bin", "MLFLOW_BACKEND_STORE_URI": DATABASE,
                        "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "set"})
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(config))
    for name in ("MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    auth = read_auth_config()
    assert (auth.database_uri, auth.admin_username, auth.default_permission) == (DATABASE, STEWARD_USER, "READ")
    assert auth.auth_cache_ttl_seconds == MLFLOW_AUTH_CACHE_SECONDS  # no scrypt hash per request
    assert auth.admin_password is None, "the password comes from the environment, never from the file"
