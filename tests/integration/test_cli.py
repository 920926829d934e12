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


def credit_file(path: Path, rows: int = 1500) -> Path:
    """A public-data-like file: a good/bad target, an id column, no timestamp."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(7)
    income = rng.normal(50, 12, rows)
    region = rng.choice(["north", "south", "east"], rows)
    kids = rng.integers(0, 5, rows)
    risk = 1 / (1 + np.exp(-((income - 55) / 6 + (region == "south") * 0.8)))
    pd.DataFrame({
        "customer": [f"c{i}" for i in range(rows)], "income": income, "region": region, "kids": kids,
        "owns_home": rng.random(rows) < 0.5, "credit": np.where(rng.random(rows) < risk, "bad", "good"),
    }).to_csv(path, index=False)
    return path


@pytest.mark.timeout(1800)
def test_a_spec_from_a_data_file_with_string_labels_trains_and_validates(tmp_path: Path):
    import yaml

    data = credit_file(tmp_path / "credit.csv")
    home = tmp_path / "state"
    drafted = steward(home, "init", str(tmp_path), "--from-data", str(data), "--target", "credit", cwd=tmp_path)
    assert drafted.returncode == 0, drafted.stdout + drafted.stderr
    assert "left out customer: 1500 distinct text values" in " ".join(drafted.stdout.split())
    assert "no timestamp_column and no data.order_by" in " ".join(drafted.stdout.split())
    spec = yaml.safe_load((tmp_path / "spec.yaml").read_text())
    assert (spec["name"], spec["task"], spec["positive_label"], spec["classes"]) == (
        "credit", "binary_classification", "bad", ["bad", "good"])
    features = {f["name"]: f for f in spec["features"]}
    assert set(features) == {"income", "region", "kids", "owns_home"} and spec["data"]["path"] == "credit.csv"
    assert features["region"]["categories"] == ["east", "north", "south"] and features["owns_home"]["type"] == "boolean"
    assert features["kids"] == {"name": "kids", "type": "integer", "min": 0, "max": 5}
    observed = __import__("pandas").read_csv(data)["income"]
    span = observed.max() - observed.min()
    assert features["income"]["min"] == pytest.approx(observed.min() - 0.1 * span, rel=1e-4)  # widened by 10%
    assert features["income"]["max"] == pytest.approx(observed.max() + 0.1 * span, rel=1e-4)

    again = steward(home, "init", str(tmp_path), "--from-data", str(data), "--target", "credit", cwd=tmp_path)
    assert again.returncode == 1 and "pass --force" in again.stderr
    no_target = steward(home, "init", str(tmp_path), "--from-data", str(data), "--target", "nope", "--force",
                        cwd=tmp_path)
    assert no_target.returncode == 1 and "has no column 'nope'" in no_target.stderr

    trained = steward(home, "train", "spec.yaml", cwd=tmp_path)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "registered credit v1" in trained.stdout and "roc_auc=" in trained.stdout
    validated = steward(home, "validate", "spec.yaml", cwd=tmp_path)
    assert validated.returncode == 0 and "credit v1 passed" in validated.stdout, validated.stdout + validated.stderr

    status = steward(home, "status", "credit", cwd=tmp_path)
    assert status.returncode == 0 and "champion" in status.stdout  # the aliases column is filled


def test_importing_a_flow_from_python_configures_prefect_for_the_steward_home(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "STEWARD_"))}
    env.update(STEWARD_HOME=str(tmp_path / "state"), HOME=str(tmp_path / "user"),
               PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    script = ("import flows.retrain, mlflow\n"
              "from prefect.settings import get_current_settings\n"
              "print(get_current_settings().home)\n"
              "print(mlflow.get_tracking_uri())\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    prefect_home, tracking_uri = result.stdout.split()
    assert Path(prefect_home) == tmp_path / "state" / "prefect"
    assert str(tmp_path / "state") in tracking_uri
    assert not (tmp_path / "user" / ".prefect").exists()
