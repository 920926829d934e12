"""The world of ``steward demo``: its size, its specs, its simulated days, its broken export,
and the outcome it reports. The story that drives the local stack through them is
``flows/demo.py`` (it talks to Prefect); ``docs/operations.md`` tells it.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from steward import stack
from steward.config import Settings
from steward.simulation.examples import EXAMPLE_DAYS, example_spec_text, example_training_frame
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import Scenario, credit_default_scenario

MODEL = "credit-default"


class DemoError(RuntimeError):
    """The story did not go as it should; the message says where and what to look at."""


@dataclass(frozen=True)
class DemoConfig:
    """The size of the story. :meth:`short` is the configuration CI runs."""

    days: int = 4  # simulated days replayed, ending now
    drift_day: int = 3  # 0-based; the recession starts at this day's beginning
    rows_per_day: int = 4000
    rows_per_request: int = 20
    concurrency: int = 4
    live_rate: float = 40.0  # requests per second while a rollout runs
    canary_steps: tuple[float, ...] = (10.0, 50.0, 100.0)
    step_seconds: float = 5.0
    min_requests_per_arm: int = 30
    stage_timeout: float = 240.0

    @classmethod
    def short(cls) -> DemoConfig:
        return cls(days=2, drift_day=1, rows_per_day=3000)

    def __post_init__(self) -> None:
        if not 0 < self.drift_day < self.days:
            raise ValueError(f"drift_day must be after the first day and within the {self.days} days; "
                             f"got {self.drift_day}")
        if self.rows_per_day < 2500:
            raise ValueError("rows_per_day below 2500 leaves the drift-day retrain under the spec's 2000 training rows")


@dataclass(frozen=True)
class TimelineEntry:
    time: datetime
    what: str
    why: str = ""
    simulated: bool = False  # ``time`` is on the demo's clock (a replayed day), not the wall clock


@dataclass
class DemoOutcome:
    """What happened, in the terms the issue states the story; written to ``<home>/demo/outcome.json``."""

    started: datetime
    drift_day: int | None = None
    drift_columns: list[str] = field(default_factory=list)
    retrain_run: str | None = None
    retrain_started_by: str | None = None  # the automation's name when a trigger started it
    retrain_reason: str | None = None
    promoted_version: str | None = None
    promotion_steps: list[float] = field(default_factory=list)
    broken_version: str | None = None
    broken_validation: str | None = None
    broken_result: str | None = None
    broken_stopped_at_step: int | None = None  # 1-based
    broken_reason: str | None = None
    champion: str | None = None
    challenger: str | None = None
    drift_report: str | None = None
    seconds: float = 0.0
    timeline: list[TimelineEntry] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), default=str, indent=2)


@dataclass(frozen=True)
class DemoPaths:
    folder: Path
    spec: Path  # production data: what the deployments run with
    bootstrap: Path  # the same model, trained from the example file: v1
    hotfix: Path  # the same model, trained from the broken export: the bad candidate
    outcome: Path


# --------------------------------------------------------------------------------------- the world
def demo_specs(folder: Path, config: DemoConfig) -> DemoPaths:
    """Write the demo's spec (and its two file-sourced variants) and v1's training data."""
    (folder / "data").mkdir(parents=True, exist_ok=True)
    document = yaml.safe_load(example_spec_text())
    document["data"] = {"kind": "production", "window_days": 1}
    # The recession lowers what any model can reach; the floor guards against a broken model.
    document["gates"]["floor"] = 0.60
    # A day's hold-out is small, and a slice of 100 rows cannot measure a 0.03 change of ROC AUC.
    document["gates"]["min_slice_rows"] = 300
    # A fixed number of trees, so v1 (early stopping is on above 10,000 rows) and a retrain on one
    # day's rows answer equally fast and the canary judges the model, not its size.
    document["estimator"]["params"].update(max_iter=100, early_stopping=False)
    document["canary"] = {
        "steps": list(config.canary_steps), "min_requests_per_arm": config.min_requests_per_arm,
        "min_step_seconds": config.step_seconds, "max_hold_seconds": 120, "min_labelled": 30,
        # Two cores shared with everything the demo starts: a little more room for the latency ratio.
        "max_p95_latency_factor": 2.0,
    }
    document["retrain"] = {"cooldown_hours": 0.005, "max_per_week": 5}  # 18 s, not a day: a demo
    paths = DemoPaths(folder, folder / "spec.yaml", folder / "bootstrap.yaml", folder / "hotfix.yaml",
                      folder / "outcome.json")
    _write_yaml(paths.spec, document, "The demo's model: trained on production data (the log joined with labels).")
    _write_yaml(paths.bootstrap, {**document, "data": {"kind": "file", "path": "data/train.parquet"}},
                "v1 of the demo's model, trained from the example history.")
    _write_yaml(paths.hotfix, {**document, "data": {"kind": "file", "path": "data/export.parquet"}},
                "A retrain from a file export whose labels a faulty join inverted.")
    example_training_frame().to_parquet(folder / "data" / "train.parquet", index=False)
    return paths


def _write_yaml(path: Path, document: dict[str, Any], comment: str) -> None:
    path.write_text(f"# {comment}\n" + yaml.safe_dump(document, sort_keys=False))


def demo_scenario(end: datetime, config: DemoConfig) -> Scenario:
    """The credit world whose replayed day ``d`` ends ``days - d - 1`` days before ``end``.

    Replayed days come after the example history (the first ``EXAMPLE_DAYS`` scenario days),
    so no replayed row is one v1 trained on. From the drift day on: a covariate shift of
    utilization and debt ratio, and a concept drift that reverses what late payments and debt
    say about default.
    """
    first_day = pd.Timestamp(end) - pd.Timedelta(days=config.days)
    start = first_day - pd.Timedelta(days=EXAMPLE_DAYS)
    drift_start = first_day + pd.Timedelta(days=config.drift_day)
    return credit_default_scenario(
        start=start, rows_per_day=config.rows_per_day,
        injections=(
            Injection(DriftKind.COVARIATE_SHIFT, drift_start, None, ("utilization", "debt_ratio"), 1.5),
            Injection(DriftKind.CONCEPT_DRIFT, drift_start, None, ("num_late_payments", "debt_ratio"), 1.0),
        ),
    )


def broken_export(scenario: Scenario, day: int) -> pd.DataFrame:
    """A recent day's labelled rows whose labels were inverted on the way: a bug no offline check sees."""
    frame = scenario.day(day).drop(columns=["label_available_at"], errors="ignore")
    return frame.assign(default=1 - frame["default"])




def brief(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def ensure_admin_token(settings: Settings) -> str:
    """The gateway admin token: the environment's, or one made for this home and kept in it (mode 600)."""
    given = os.environ.get("STEWARD_ADMIN_TOKEN") or (
        settings.admin_token.get_secret_value() if settings.admin_token else None)
    if given:
        os.environ["STEWARD_ADMIN_TOKEN"] = given
        return given
    path = stack.run_dir(settings) / "admin-token"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    os.environ["STEWARD_ADMIN_TOKEN"] = path.read_text().strip()
    return os.environ["STEWARD_ADMIN_TOKEN"]
