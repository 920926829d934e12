"""The models of a backtest replay: each version Steward trained, with what its monitoring reads, and the
one pending candidate. The in-memory stand-in for what the flows keep in the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from steward.monitoring.drift.monitor import build_drift_reference
from steward.monitoring.drift.profile import ReferenceProfile
from steward.monitoring.health.accuracy import Calibration, holdout_figures
from steward.monitoring.health.data_quality import OutlierFences
from steward.spec import ModelSpec
from steward.training.retrain_decision import ChampionTraining, PendingCandidate, RetrainTrigger
from steward.training.scores import SkippedCheck
from steward.training.train import TrainedModel, reference_sample
from steward.training.validation import Contender


@dataclass
class ReplayVersion:
    """A model Steward trained in the replay, with what its monitoring needs (built when it first serves)."""

    version: str
    trained: TrainedModel
    trained_at: datetime
    input_schema: dict[str, str]
    model_trained_at: datetime  # a threshold re-fit's is its base model's: the age a refresh counts
    profile: ReferenceProfile | None = None
    importances: dict[str, float] = field(default_factory=dict)
    reference: pd.DataFrame | None = None
    fences: OutlierFences | None = None
    calibration: Calibration | SkippedCheck | str | None = None
    validation_errors: dict[str, float] = field(default_factory=dict)
    trigger: RetrainTrigger | None = None  # what it was retrained for (None: the first model)
    labels_through: datetime | None = None  # event time of the newest labelled row it was trained on

    def training(self) -> ChampionTraining:
        return ChampionTraining(self.trigger, self.trained_at, self.labels_through)

    @property
    def estimator(self) -> Any:
        return self.trained.estimator

    def contender(self) -> Contender:
        return Contender(self.trained.estimator, self.version, self.input_schema)

    def prepare_monitoring(self, spec: ModelSpec) -> None:
        """The drift reference, outlier fences and calibration the flows read from the registry."""
        if self.profile is not None:
            return
        sample = reference_sample(self.trained.train_frame, spec.training.reference_sample_rows,
                                  spec.training.random_state)
        self.reference = sample[spec.feature_names].reset_index(drop=True)
        self.profile, self.importances = build_drift_reference(
            self.estimator, self.reference, self.trained.holdout_frame, spec)
        self.fences = OutlierFences.from_reference(self.reference, spec, self.version)
        figures = holdout_figures(self.estimator, self.trained.holdout_frame, spec)
        self.calibration, self.validation_errors = figures.calibration, figures.errors


@dataclass
class KeptCandidate:
    """A pending candidate of the replay: the decision record, the model and the rows it was gated on."""

    pending: PendingCandidate
    version: ReplayVersion
    holdout: pd.DataFrame
