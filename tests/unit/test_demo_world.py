"""The demo's world: its specs, its timeline of days, and the broken export (the story itself: test_demo.py)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from steward.simulation.demo import DemoConfig, broken_export, demo_scenario, demo_specs
from steward.simulation.examples import EXAMPLE_DAYS
from steward.spec import load_spec


def test_the_demo_specs_are_one_model_with_three_data_sources(tmp_path):
    paths = demo_specs(tmp_path, DemoConfig.short())
    spec, bootstrap, hotfix = (load_spec(p) for p in (paths.spec, paths.bootstrap, paths.hotfix))
    assert spec.name == bootstrap.name == hotfix.name == "credit-default"
    assert (spec.data.kind, spec.data.window_days) == ("production", 1)
    assert bootstrap.data.kind == hotfix.data.kind == "file"
    assert (tmp_path / "data" / "train.parquet").is_file()
    assert spec.canary.steps == (10.0, 50.0, 100.0)
    assert spec.estimator.params["early_stopping"] is False


def test_replayed_days_end_at_the_demo_start_and_drift_starts_on_the_drift_day():
    config = DemoConfig(days=4, drift_day=3)
    end = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    scenario = demo_scenario(end, config)
    first = scenario.day(EXAMPLE_DAYS)
    last = scenario.day(EXAMPLE_DAYS + config.days - 1)
    assert first["event_time"].min() >= pd.Timestamp("2026-11-18 05:00", tz="UTC")
    assert last["event_time"].max() < pd.Timestamp(end)
    assert not scenario.active_injections(pd.Timestamp("2026-11-21 04:59", tz="UTC"))
    assert len(scenario.active_injections(pd.Timestamp("2026-11-21 05:00", tz="UTC"))) == 2
    assert last["debt_ratio"].mean() > first["debt_ratio"].mean()


def test_the_broken_export_has_every_label_inverted():
    scenario = demo_scenario(datetime(2026, 11, 22, tzinfo=UTC), DemoConfig.short())
    day = EXAMPLE_DAYS + 1
    export = broken_export(scenario, day)
    assert (export["default"] == 1 - scenario.day(day)["default"]).all()
    assert "label_available_at" not in export


def test_a_story_without_a_clean_day_first_is_refused():
    with pytest.raises(ValueError, match="drift_day"):
        DemoConfig(days=2, drift_day=0)
