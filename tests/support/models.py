"""Training and registering models the way the tests set up a world: a champion, a challenger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import mlflow.pyfunc

if TYPE_CHECKING:
    import pandas as pd

    from steward.registry.adapter import Registry, VersionInfo
    from steward.spec import ModelSpec
    from steward.training.train import TrainedModel


def train_spec(spec: ModelSpec, frame: pd.DataFrame, data_source: str) -> TrainedModel:
    """Fit ``spec``'s model on ``frame`` with the time-aware split, as retrain does."""
    from steward.training.data import frame_sha256, split_train_holdout
    from steward.training.train import train_model

    return train_model(spec, split_train_holdout(frame, spec), data_sha256=frame_sha256(frame),
                       data_source=data_source)


def register_trained(registry: Registry, spec: ModelSpec, trained: TrainedModel, *,
                     validated: bool = False) -> VersionInfo:
    """Register a fitted model with its lineage, held-out rows and training rows (the drift reference).

    ``validated`` tags it as having passed the gate, which promotion requires.
    """
    info = registry.register_version(
        spec.name, trained.estimator, lineage=trained.lineage, metrics=trained.metrics,
        input_example=trained.holdout_frame[spec.feature_names].head(20),
        datasets={"holdout": trained.holdout_frame, "reference": trained.train_frame},
    )
    if validated:
        mark_validated(registry, spec.name, info.version)
    return info


def mark_validated(registry: Registry, model: str, *versions: str) -> None:
    for version in versions:
        registry.set_version_tags(model, version, {"steward.validation.status": "passed"})


def register_champion(registry: Registry, spec: ModelSpec, trained: TrainedModel, *,
                      reason: str = "test champion") -> VersionInfo:
    """Register ``trained`` as a validated version and make it the champion."""
    info = register_trained(registry, spec, trained, validated=True)
    registry.promote(spec.name, info.version, reason=reason)
    return info


def set_champion_and_challenger(registry: Registry, model: str, champion: str, challenger: str, *,
                                why: str = "test") -> None:
    """Promote ``champion`` and point the challenger alias at ``challenger`` (both validated already)."""
    from steward.registry.history import CHALLENGER, ChangeKind

    registry.promote(model, champion, reason=f"{why} champion")
    registry.set_alias(model, CHALLENGER, challenger, reason=f"{why} challenger", kind=ChangeKind.ASSIGN)


def with_estimator_params(spec: ModelSpec, **params: Any) -> ModelSpec:
    """``spec`` with some estimator parameters replaced (fewer iterations, another seed)."""
    if not params:
        return spec
    estimator = spec.estimator.model_copy(update={"params": {**spec.estimator.params, **params}})
    return spec.model_copy(update={"estimator": estimator})



class LabelOnlyClassifier(mlflow.pyfunc.PythonModel):
    """A team's python-function classifier that answers the predicted class and nothing else: no score."""

    def __init__(self, fitted: Any) -> None:
        self.fitted = fitted

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame({"decision": self.fitted.predict(model_input)})


class LabelsOf:
    """A fitted classifier seen as a model that answers its labels only (no ``predict_proba``), the way Steward
    scores a python-function model with no score column; ``flip`` answers the other class (a worse model)."""

    def __init__(self, fitted: Any, *, flip: bool = False) -> None:
        self.fitted = fitted
        self.flip = flip

    def predict(self, frame: pd.DataFrame) -> Any:
        labels = self.fitted.predict(frame)
        return 1 - labels if self.flip else labels
