"""The example model Steward ships: a spec and training data from the scenario simulator."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import credit_default_scenario

EXAMPLE_NAME = "credit_default"
EXAMPLE_DAYS = 60
EXAMPLE_ROWS_PER_DAY = 500
EXAMPLE_HISTORY_WEEKS = 26  # of backtest windows, after four weeks the first champion trains on
EXAMPLE_HISTORY_ROWS_PER_DAY = 250


def example_spec_text() -> str:
    return resources.files(__package__).joinpath("credit_default.yaml").read_text()


def example_training_frame(days: int = EXAMPLE_DAYS, rows_per_day: int = EXAMPLE_ROWS_PER_DAY) -> pd.DataFrame:
    """Clean, labelled history from the simulator's first ``days`` days (no injected drift)."""
    scenario = credit_default_scenario(rows_per_day=rows_per_day)
    frame = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=days))
    return frame.drop(columns=["label_available_at"])


def example_history(
    weeks: int = EXAMPLE_HISTORY_WEEKS, rows_per_day: int = EXAMPLE_HISTORY_ROWS_PER_DAY, seed: int = 7
) -> pd.DataFrame:
    """A labelled history to backtest on: 4 quiet weeks to train on, then ``weeks`` weeks in which income
    shifts (week 6 on) and the default risk's dependence on utilization and late payments changes (week 12
    on). ``label_available_at`` says when each label became known (about 3 days later)."""
    scenario = credit_default_scenario(rows_per_day=rows_per_day, seed=seed)
    week = pd.Timedelta(days=7)
    first = scenario.start + 4 * week
    scenario = credit_default_scenario(rows_per_day=rows_per_day, seed=seed, injections=(
        Injection(DriftKind.COVARIATE_SHIFT, first + 6 * week, None, ("income",), 0.75),
        Injection(DriftKind.CONCEPT_DRIFT, first + 12 * week, None, ("utilization", "num_late_payments"), 0.6),
    ))
    return scenario.generate(scenario.start, first + weeks * week)


def write_example(directory: Path, *, overwrite: bool = False) -> Path:
    """Write ``<directory>/credit_default/spec.yaml``, its training data and a history to backtest on
    (``data/history.parquet``); returns the spec path."""
    target = directory / EXAMPLE_NAME
    spec_path = target / "spec.yaml"
    if spec_path.exists() and not overwrite:
        raise FileExistsError(f"{spec_path} already exists; pass --force to overwrite it")
    (target / "data").mkdir(parents=True, exist_ok=True)
    spec_path.write_text(example_spec_text())
    example_training_frame().to_parquet(target / "data" / "train.parquet", index=False)
    example_history().to_parquet(target / "data" / "history.parquet", index=False)
    return spec_path
