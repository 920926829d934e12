"""The team's own training code, named in the spec, and which producer made a version.

``training.entrypoint: package.module:function`` is called as ``function(frame, spec, params)`` with the
training part of the split (prepared features, the target and, where the spec has them, time and entity
columns), the ModelSpec and ``training.params``; it returns a fitted model. Steward then evaluates it on
the hold-out, registers it with lineage and takes it through the gate like any other candidate.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import pandas as pd

from steward.spec import ModelSpec

PRODUCER_TAG = "steward.producer"
# The run tag a training deployment's run puts on the MLflow run of the version it registers, so the retrain
# that started it finds that version and no other (see tasks/team_training.py).
TRAINING_REQUEST_TAG = "steward.training_request"


class EntrypointError(ValueError):
    """Training code that cannot be found, called or used; the message names the function and what to fix."""


class ProducerKind(StrEnum):
    ESTIMATOR = "estimator"  # Steward fitted estimator.factory
    ENTRYPOINT = "entrypoint"  # training.entrypoint returned the fitted model
    DEPLOYMENT = "deployment"  # training.deployment registered the version itself


@dataclass(frozen=True)
class Producer:
    """What made a version; recorded as the ``steward.producer`` tag, e.g. ``entrypoint:team.train:fit``."""

    kind: ProducerKind
    reference: str

    @property
    def tag(self) -> str:
        return f"{self.kind.value}:{self.reference}"

    @classmethod
    def of(cls, spec: ModelSpec) -> Producer:
        if spec.training.entrypoint:
            return cls(ProducerKind.ENTRYPOINT, spec.training.entrypoint)
        if spec.training.deployment:
            return cls(ProducerKind.DEPLOYMENT, spec.training.deployment)
        return cls(ProducerKind.ESTIMATOR, spec.estimator.factory)

    @classmethod
    def from_tag(cls, tag: str) -> Producer:
        kind, _, reference = tag.partition(":")
        try:
            return cls(ProducerKind(kind), reference)
        except ValueError:
            raise ValueError(f"{PRODUCER_TAG} {tag!r} is not '<{'|'.join(ProducerKind)}>:<reference>'") from None


def resolve_entrypoint(path: str) -> Callable[..., Any]:
    """The function ``package.module:function`` names (``a.b:Class.method`` reaches into attributes)."""
    module_name, _, attribute = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise EntrypointError(
            f"training.entrypoint {path!r}: cannot import module {module_name!r} ({error}); install the team's "
            "package in Steward's environment or put it on PYTHONPATH"
        ) from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise EntrypointError(f"training.entrypoint {path!r}: {target.__name__ if hasattr(target, '__name__') else target!r} "
                                  f"has no attribute {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise EntrypointError(f"training.entrypoint {path!r} is a {type(target).__name__}, not a function")
    return target


def fit_with_entrypoint(
    spec: ModelSpec, train: pd.DataFrame, holdout_features: pd.DataFrame
) -> Any:
    """Call the team's function on the training frame and check that what it returns can predict the hold-out."""
    path = spec.training.entrypoint
    if not path:
        raise EntrypointError("the spec names no training.entrypoint")
    function = resolve_entrypoint(path)
    model = function(train.copy(), spec, dict(spec.training.params))
    if model is None or not callable(getattr(model, "predict", None)):
        raise EntrypointError(
            f"training.entrypoint {path!r} returned {type(model).__name__}, which has no predict(): return the "
            "fitted model (for example a scikit-learn estimator or pipeline that accepts the feature frame)"
        )
    sample = holdout_features.head(5)
    try:
        predictions = model.predict(sample)
    except Exception as error:
        raise EntrypointError(
            f"the model training.entrypoint {path!r} returned cannot predict on the spec's feature frame "
            f"(columns {list(sample.columns)}): {type(error).__name__}: {error}"
        ) from error
    if len(predictions) != len(sample):
        raise EntrypointError(f"the model training.entrypoint {path!r} returned gave {len(predictions)} predictions "
                              f"for {len(sample)} rows: it must return one per row")
    if spec.task.is_classification and not callable(getattr(model, "predict_proba", None)):
        raise EntrypointError(
            f"training.entrypoint {path!r} returned a classifier without predict_proba: the gate, the canary and "
            "health need class probabilities"
        )
    return model


# --- training.deployment: the team's Prefect deployment registers the candidate --------------------------------


@dataclass(frozen=True)
class TrainingRequest:
    """What the retrain asks the team's deployment for: a version of ``model`` trained on the data window.

    The deployment's flow takes these parameters (``parameters()``) and tags the MLflow run it registers the
    version from with ``steward.training_request = <steward_request>``; that tag is how the retrain tells its
    candidate from anything else registered meanwhile.
    """

    model: str
    deployment: str
    request_id: str
    window_start: str | None
    window_end: str | None
    params: dict[str, Any]
    timeout_seconds: float

    def parameters(self) -> dict[str, Any]:
        return {"model": self.model, "window_start": self.window_start, "window_end": self.window_end,
                "steward_request": self.request_id, "params": dict(self.params)}


class TeamRunCode(StrEnum):
    REGISTERED = "registered"  # the run finished and exactly one version carries the request's tag
    WAITING = "waiting"
    RUN_FAILED = "run_failed"  # the deployment's run ended failed, crashed or cancelled
    NO_CANDIDATE = "no_candidate"  # the run completed but registered no version with the tag
    AMBIGUOUS = "ambiguous"  # more than one version carries the tag
    TIMED_OUT = "timed_out"


@dataclass(frozen=True)
class TeamRunVerdict:
    code: TeamRunCode
    reason: str
    version: str | None = None


class TeamTrainingError(RuntimeError):
    """The team's training deployment produced no usable candidate; ``code`` says how, the message what to do."""

    def __init__(self, verdict: TeamRunVerdict) -> None:
        super().__init__(verdict.reason)
        self.code = verdict.code


def judge_team_run(
    request: TrainingRequest, *, run_name: str, run_state: str, run_final: bool, run_completed: bool,
    versions: list[str], waited_seconds: float,
) -> TeamRunVerdict:
    """Where the wait for the team's candidate stands, from the run's state and the versions tagged so far."""
    where = f"training deployment {request.deployment!r} (flow run {run_name!r})"
    tag = f"{TRAINING_REQUEST_TAG}={request.request_id}"
    if len(versions) > 1:
        return TeamRunVerdict(TeamRunCode.AMBIGUOUS, f"{where} registered versions {versions} of {request.model!r} "
                              f"from runs tagged {tag}: register one version per request")
    if run_final and not run_completed:
        return TeamRunVerdict(TeamRunCode.RUN_FAILED, f"{where} ended {run_state} without a candidate: see that "
                              "run's logs in Prefect")
    if run_final and versions:
        return TeamRunVerdict(TeamRunCode.REGISTERED, f"{where} registered {request.model} v{versions[0]}",
                              versions[0])
    if run_final:
        return TeamRunVerdict(TeamRunCode.NO_CANDIDATE, (
            f"{where} completed but registered no version of {request.model!r} from a run tagged {tag}: the flow "
            f"must register the model as {request.model!r} inside an MLflow run that has "
            f"mlflow.set_tag('{TRAINING_REQUEST_TAG}', steward_request)"))
    if waited_seconds >= request.timeout_seconds:
        return TeamRunVerdict(TeamRunCode.TIMED_OUT, (
            f"{where} registered no candidate within training.deployment_timeout_seconds = "
            f"{request.timeout_seconds:g} s (still {run_state}); the run is cancelled. Raise the timeout if its "
            "training takes longer, or check that a worker or runner serves the deployment"))
    return TeamRunVerdict(TeamRunCode.WAITING, f"{where} is {run_state}")


__all__ = [
    "PRODUCER_TAG", "TRAINING_REQUEST_TAG", "EntrypointError", "Producer", "ProducerKind", "fit_with_entrypoint",
    "resolve_entrypoint", "TeamRunCode", "TeamRunVerdict", "TeamTrainingError", "TrainingRequest", "judge_team_run",
]
