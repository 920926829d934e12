"""The example model Steward ships: a spec and training data from the scenario simulator."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pandas as pd

from steward.simulation.scenario import credit_default_scenario

EXAMPLE_NAME = "credit_default"
EXAMPLE_DAYS = 60
EXAMPLE_ROWS_PER_DAY = 500


def example_spec_text() -> str:
    return resources.files(__package__).joinpath("credit_default.yaml").read_text()


def example_training_frame(days: int = EXAMPLE_DAYS, rows_per_day: int = EXAMPLE_ROWS_PER_DAY) -> pd.DataFrame:
    """Clean, labelled history from the simulator's first ``days`` days (no injected drift)."""
    scenario = credit_default_scenario(rows_per_day=rows_per_day)
    frame = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=days))
    return frame.drop(columns=["label_available_at"])


def write_example(directory: Path, *, overwrite: bool = False) -> Path:
    """Write ``<directory>/credit_default/spec.yaml`` and its data; returns the spec path."""
    target = directory / EXAMPLE_NAME
    spec_path = target / "spec.yaml"
    if spec_path.exists() and not overwrite:
        raise FileExistsError(f"{spec_path} already exists; pass --force to overwrite it")
    (target / "data").mkdir(parents=True, exist_ok=True)
    spec_path.write_text(example_spec_text())
    example_training_frame().to_parquet(target / "data" / "train.parquet", index=False)
    return spec_path
