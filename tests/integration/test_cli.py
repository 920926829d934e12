"""The ``steward`` command as a user runs it: a fresh process, a fresh home, the embedded Prefect server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def steward(home: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "STEWARD_"))}
    env.update(STEWARD_HOME=str(home), COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-m", "steward", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.timeout(1800)  # five commands, the first trains and validates in a fresh home
def test_the_example_command_trains_validates_and_shows_lineage(tmp_path: Path):
    home = tmp_path / "state"
    result = steward(home, "example", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "credit-default v1: champion" in out
    assert "champion v1 lineage" in out and "data_sha256" in out and "artifact_digest" in out
    assert "metric_floor" in out and "passed" in out
    # everything lives under the one home folder
    assert (home / "mlflow" / "mlflow.db").is_file() and (home / "prefect").is_dir()
    assert not (tmp_path / "mlruns").exists()

    status = steward(home, "status", "credit-default", cwd=tmp_path)
    assert status.returncode == 0 and "rollback target: none" in status.stdout

    history = steward(home, "history", "credit-default", cwd=tmp_path)
    assert "bootstrap" in history.stdout and "champion: none -> v1" in history.stdout

    rollback = steward(home, "rollback", "credit-default", "--reason", "test", cwd=tmp_path)
    assert rollback.returncode == 1 and "no earlier champion to roll back to" in rollback.stderr

    unknown = steward(home, "status", "no-such-model", cwd=tmp_path)
    assert unknown.returncode == 1 and "steward train" in unknown.stderr


def test_bad_spec_is_reported_without_a_traceback(tmp_path: Path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: x\ntask: regression\ntarget: y\nfeatures: []\ndata: {kind: file}\n")
    result = steward(tmp_path / "state", "train", str(spec), cwd=tmp_path)
    assert result.returncode == 1
    assert "features" in result.stderr and "data.path" in result.stderr
    assert "Traceback" not in result.stderr
