"""Per-arm evidence for delivery decisions, read from a window of the prediction log, and the scores
a version gives its own validation hold-out (what its live scores are judged against)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from steward.delivery.decisions import ArmEvidence
from steward.spec import ModelSpec, Task
from steward.training.data import prepare_features
from steward.training.scores import ScoreCheck, SkippedCheck, no_scores


def _losses(labelled: pd.DataFrame, task: Task) -> np.ndarray:
    ok = labelled[labelled["status"] == "ok"]
    if task is Task.REGRESSION:
        predicted = pd.to_numeric(ok["prediction"], errors="coerce")
        actual = pd.to_numeric(ok["label"], errors="coerce")
        return np.abs(predicted - actual).dropna().to_numpy(float)
    return (ok["prediction"].astype(str) != ok["label"].astype(str)).to_numpy(float)


def _epoch_seconds(times: pd.Series) -> np.ndarray:
    if not len(times):
        return np.empty(0)
    return (pd.to_datetime(times, utc=True) - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(float)


def validation_scores(model: Any, holdout: pd.DataFrame, spec: ModelSpec) -> np.ndarray:
    """The score the gateway logs, for each row of the version's hold-out: P(positive class) for a binary
    classifier, the top class's probability for a multiclass one, the predicted value for regression."""
    features = prepare_features(holdout, spec)
    if spec.task is Task.REGRESSION or not hasattr(model, "predict_proba"):
        return np.asarray(model.predict(features), float) if spec.task is Task.REGRESSION else np.empty(0)
    probabilities = np.asarray(model.predict_proba(features), float)
    return probabilities[:, 1] if probabilities.shape[1] == 2 else probabilities.max(axis=1)


def score_checks_skipped(evidence: Mapping[str, ArmEvidence]) -> tuple[SkippedCheck, ...]:
    """The score-distribution check, skipped for each classifier arm that answered with labels only."""
    label_only = [arm for arm, e in evidence.items()
                  if e.binary_losses and e.requests > e.errors and not len(e.scores)]
    return tuple(no_scores(ScoreCheck.SCORE_DISTRIBUTION, "its live scores cannot be compared with its validation "
                                                         "scores; errors, latency and accuracy on labels are judged",
                           arm) for arm in label_only)


def arm_evidence(
    predictions: pd.DataFrame,
    spec: ModelSpec,
    *,
    versions: Mapping[str, str],
    labelled: pd.DataFrame | None = None,
    served_only: bool = True,
    reference_scores: Mapping[str, np.ndarray] | None = None,
) -> dict[str, ArmEvidence]:
    """What each arm did in the window, counting only rows its expected version answered.

    ``versions`` maps arm to the version that arm should be serving (a plan change in the
    window must not mix two versions' evidence). Requests are counted once however many rows
    they carried; latencies are per answered request: a failed request is the error test's
    evidence, and a slow failure path must not read as a slow model as well. ``compute_ms`` is each
    answered request's time inside its version's model call (NaN where the gateway did not record
    it). ``labelled`` is ``join_labels`` of the same window; without it the arms have no losses.
    ``reference_scores`` maps arm to its version's ``validation_scores``.
    """
    evidence = {}
    for arm, version in versions.items():
        mask = (predictions["arm"] == arm) & (predictions["version"] == str(version))
        if served_only:
            mask &= predictions["served"]
        rows = predictions[mask]
        requests = rows.drop_duplicates("request_id")
        errored_ids = rows.loc[rows["status"] == "error", "request_id"].unique()
        answered = requests[~requests["request_id"].isin(errored_ids)]
        losses = np.empty(0)
        if labelled is not None and len(labelled):
            arm_labelled = labelled[(labelled["arm"] == arm) & (labelled["version"] == str(version))]
            if served_only:
                arm_labelled = arm_labelled[arm_labelled["served"]]
            losses = _losses(arm_labelled, spec.task)
        evidence[arm] = ArmEvidence(
            requests=len(requests),
            errors=len(errored_ids),
            latencies_ms=answered["latency_ms"].to_numpy(float),
            times_s=_epoch_seconds(answered["time"]),
            compute_ms=(answered["compute_ms"].to_numpy(float) if "compute_ms" in answered.columns
                        else np.full(len(answered), np.nan)),
            scores=rows["score"].dropna().to_numpy(float),
            losses=losses,
            binary_losses=spec.task is not Task.REGRESSION,
            reference_scores=(reference_scores or {}).get(arm, np.empty(0)),
        )
    return evidence
