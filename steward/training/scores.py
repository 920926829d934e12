"""Which checks need a score per row, and the typed record of one skipped because a model gives labels only.

A classifier's score (a probability of its class) comes from ``predict_proba`` or from an output
column the spec names (``steward.registry.flavors``). A model that answers its label only still has
accuracy, error rate and the drift of its predicted class; what needs a score (ROC AUC, Brier, log
loss, calibration, the label-free accuracy estimate, the drift of the score, the canary's score
distribution) is skipped with a :class:`SkippedCheck`, never computed from a made-up score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from steward.spec import Task

SCORE_METRICS = frozenset({"roc_auc", "brier", "log_loss"})  # need a score per row, not just the label
LABEL_METRIC = "accuracy"  # what a label-only classifier is compared on where its metric needs scores


class SkipCode(StrEnum):
    """Why a check did not run."""

    NO_SCORES = "no_scores"  # the model gives labels only, and the check needs a score per row


class ScoreCheck(StrEnum):
    """The checks that need a score, by what they measure."""

    SCORE_METRICS = "score_metrics"  # model card: roc_auc, brier and log_loss (the gate names its own checks)
    PRIMARY_METRIC = "primary_metric"  # health, model card: a primary metric that needs scores, on labelled traffic
    CALIBRATION = "calibration"  # health: the confidence-accuracy gap against the hold-out's
    ACCURACY_ESTIMATE = "accuracy_estimate"  # health: accuracy estimated from probabilities while labels pend
    SCORE_DRIFT = "score_drift"  # drift: the score's distribution (the predicted class is watched instead)
    SCORE_DISTRIBUTION = "score_distribution"  # canary: live scores against the version's validation scores


@dataclass(frozen=True)
class SkippedCheck:
    """A check that did not run, with a code to act on and the reason in words."""

    check: ScoreCheck
    code: SkipCode
    reason: str
    subject: str | None = None  # the version ("v3") it is about, where the result covers several

    def describe(self) -> str:
        about = f"{self.subject}: " if self.subject else ""
        return f"{about}{self.check.value} skipped ({self.code.value}): {self.reason}"

    def to_payload(self) -> dict[str, str | None]:
        return {"check": self.check.value, "code": self.code.value, "reason": self.reason, "subject": self.subject}


def needs_scores(metric: str) -> bool:
    return metric in SCORE_METRICS


def gives_scores(model: Any, task: Task) -> bool:
    """Whether a loaded model gives a score per row: always for regression (the value), else ``predict_proba``."""
    return task is Task.REGRESSION or hasattr(model, "predict_proba")


def version_gives_scores(tags: Mapping[str, str], metrics: Mapping[str, float], task: Task) -> bool:
    """What a registered version says about its scores without loading it: the ``steward.scores`` tag an
    adopted version carries, else a binary classifier's held-out metrics (a score gives ROC AUC)."""
    if task is Task.REGRESSION:
        return True
    if tags.get("steward.scores") == "none":
        return False
    if task is Task.BINARY_CLASSIFICATION and metrics and "accuracy" in metrics:
        return bool(SCORE_METRICS & set(metrics))
    return True


def no_scores(check: ScoreCheck, what: str, subject: str | None = None) -> SkippedCheck:
    """The skip of ``check`` on a label-only model; ``what`` says what was not measured and what stands in."""
    return SkippedCheck(check, SkipCode.NO_SCORES, f"the model gives labels only: {what}", subject)
