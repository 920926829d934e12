"""The backtest flow on the session's real Prefect server: the replay, the report files and the summary artifact."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from steward.backtest import ActionKind, Strategy
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import credit_default_scenario

pytestmark = pytest.mark.slow

START = pd.Timestamp("2026-01-01", tz="UTC")
WEEK = pd.Timedelta(days=7)


def read_artifacts(key: str) -> list[dict]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        body = {"artifacts": {"key": {"any_": [key]}}, "limit": 10, "offset": 0, "sort": "CREATED_DESC"}
        return client.request("POST", "/artifacts/filter", json=body).json()


def test_the_backtest_flow_replays_a_history_and_publishes_its_summary(tmp_path, model_name):
    from flows.backtest import backtest
    from steward.simulation.examples import example_spec_text

    document = yaml.safe_load(example_spec_text())
    document.update(name=model_name, data={"kind": "file", "path": "history.parquet"})
    document["estimator"]["params"]["max_iter"] = 20
    document["data_validation"]["min_rows"] = 500
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    onset = START + 5 * WEEK  # the second window
    world = credit_default_scenario(rows_per_day=200, injections=(
        Injection(DriftKind.CONCEPT_DRIFT, onset, None, ("utilization", "num_late_payments", "debt_ratio"), 1.0),))
    world.generate(START, START + 7 * WEEK).to_parquet(tmp_path / "history.parquet", index=False)

    out = tmp_path / "report.html"
    result = backtest(spec_path=str(spec_path), label_time_column="label_available_at", training_window_days=7,
                      strategies=[Strategy.STEWARD, Strategy.FROZEN], out=str(out))

    assert [w.index for w in result.windows] == [0, 1, 2]
    assert result.config.strategies == (Strategy.STEWARD, Strategy.FROZEN)
    assert result.windows[1].did(ActionKind.HEALTH_ALARM) and result.windows[1].did(ActionKind.RETRAINED)
    assert json.loads(out.with_suffix(".json").read_text())["model"] == model_name
    assert "Plotly.newPlot" in out.read_text()

    (artifact,) = read_artifacts(f"backtest-{model_name}")[:1]
    assert artifact["type"] == "markdown"
    assert f"# Backtest of {model_name}: 3 windows" in artifact["data"]
    # a retrain's code says what it built (a new model here, not a re-fitted threshold); it ran within the budget
    assert "| steward |" in artifact["data"] and "retrained (train)" in artifact["data"]
