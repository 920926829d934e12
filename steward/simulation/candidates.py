"""Candidate models for canary scenarios: good ones and ones bad in one real way, and machine-load noise.

Every candidate is a real fitted model: good ones are trained on fresh rows of the simulated
world (after a concept drift, for one of them), the subtly worse one on fewer rows with noisy
labels, the inverted one on flipped labels. Faults that training cannot produce are wrappers
around a trained model that do real work when they answer: ``ErrorProneClassifier`` raises on the
rows of one category (a lost lookup entry: a quarter of the traffic, and a retry fails the same way),
``SlowerClassifier`` adds a fixed amount of computation to every call, and
``LoadSensitiveClassifier`` adds computation that grows with how many calls it received in the
last moment, so it is as fast as the champion at a trickle and several times slower under
concurrent traffic. ``steward.simulation.load.cpu_hog`` keeps every core busy (one busy-looping process per core) to put
machine-load noise under a canary.

The wrappers are scikit-learn estimators of this module, so MLflow's skops serialisation must
trust them: register them through a ``Registry`` given ``TRUSTED_TYPES``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import Scenario, credit_default_scenario
from steward.spec import ModelSpec
from steward.training.data import frame_sha256, split_train_holdout
from steward.training.train import TrainedModel, train_model

TRUSTED_TYPES: tuple[str, ...] = (
    "steward.simulation.candidates.ErrorProneClassifier",
    "steward.simulation.candidates.SlowerClassifier",
    "steward.simulation.candidates.LoadSensitiveClassifier",
)


class CandidateKind(StrEnum):
    GOOD = "good"
    GOOD_AFTER_CONCEPT_DRIFT = "good_after_concept_drift"
    SUBTLY_WORSE = "subtly_worse"  # about 2 accuracy points below the champion
    INVERTED_LABELS = "inverted_labels"
    ERROR_PRONE = "error_prone"
    SLOWER = "slower"
    SLOWER_UNDER_LOAD = "slower_under_load"

    @property
    def bad(self) -> bool:
        return self not in (CandidateKind.GOOD, CandidateKind.GOOD_AFTER_CONCEPT_DRIFT)


# ---------------------------------------------------------------------------------------- real work
_WORK = np.linspace(0.0, 1.0, 4096)


def burn(units: int) -> float:
    """``units`` fixed pieces of numerical work (tens of microseconds each); the same work whatever the load."""
    total = 0.0
    for _ in range(units):
        total += float(np.sin(_WORK).sum())
    return total


def units_for(milliseconds: float, trials: int = 5) -> int:
    """How many ``burn`` units take ``milliseconds`` on this machine now (the fastest of a few trials)."""
    best = float("inf")
    for _ in range(trials):
        started = time.perf_counter()
        burn(50)
        best = min(best, time.perf_counter() - started)
    return max(1, round(milliseconds / 1000 / (best / 50)))


class _Wrapper(ClassifierMixin, BaseEstimator):
    """A fitted classifier behind another one: same classes, same scores, plus a fault."""

    def __init__(self, model: Any = None) -> None:
        self.model = model

    def fit(self, X: Any, y: Any) -> _Wrapper:  # noqa: N803 - scikit-learn's names
        self.model.fit(X, y)
        return self

    @property
    def classes_(self) -> np.ndarray:
        return self.model.classes_

    def _before(self, X: Any) -> None:  # noqa: N803
        """The wrapper's fault, applied before the inner model answers."""

    def predict_proba(self, X: Any) -> np.ndarray:  # noqa: N803
        self._before(X)
        return self.model.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        self._before(X)
        return self.model.predict(X)


class ErrorProneClassifier(_Wrapper):
    """Raises on rows whose ``column`` holds one of ``values``: a lookup the candidate lost for some category
    (with the credit world's region ``east``, about a quarter of the traffic)."""

    def __init__(self, model: Any = None, column: str = "region", values: tuple[str, ...] = ("east",)) -> None:
        super().__init__(model)
        self.column = column
        self.values = values

    def _before(self, X: Any) -> None:  # noqa: N803
        if pd.DataFrame(X)[self.column].astype(str).isin(self.values).any():
            raise KeyError(f"ErrorProneClassifier: no entry for {self.column} in {list(self.values)}")


class SlowerClassifier(_Wrapper):
    """Does ``work_units`` of ``burn`` on every call: a model with more to compute than the champion."""

    def __init__(self, model: Any = None, work_units: int = 100) -> None:
        super().__init__(model)
        self.work_units = work_units

    def _before(self, X: Any) -> None:  # noqa: N803
        burn(self.work_units)


_RECENT_CALLS: dict[int, deque[float]] = {}  # per wrapper object: its calls' times (not saved with the model)
_RECENT_LOCK = threading.Lock()


class LoadSensitiveClassifier(_Wrapper):
    """Does ``work_units`` of ``burn`` for each other call it received in the last ``window_seconds``.

    A model whose cost grows with concurrency (a shared cache or lock that contends under load): at
    a trickle it answers like its inner model, under concurrent traffic several times slower.
    """

    def __init__(self, model: Any = None, work_units: int = 40, window_seconds: float = 0.2) -> None:
        super().__init__(model)
        self.work_units = work_units
        self.window_seconds = window_seconds

    def _before(self, X: Any) -> None:  # noqa: N803
        now = time.monotonic()
        with _RECENT_LOCK:
            calls = _RECENT_CALLS.setdefault(id(self), deque())
            while calls and now - calls[0] > self.window_seconds:
                calls.popleft()
            recent = len(calls)
            calls.append(now)
        burn(self.work_units * recent)


# ---------------------------------------------------------------------------------------- worlds and candidates
SUBTLY_WORSE_ROW_SHARE = 4  # the subtly worse candidate learns from the newest quarter of the training rows
SUBTLY_WORSE_NOISE = 0.2  # with this share of their labels flipped
CHAMPION_DAYS = (0, 20)  # the champion's training days
CANDIDATE_DAYS = (30, 50)  # fresh days a retrain learns from
TRAFFIC_DAY = 60  # the day the canary's traffic is replayed from
DRIFT_DAY = 25  # the concept drift's onset, in the drifted world


@dataclass(frozen=True)
class CandidateWorld:
    """The simulated world of one candidate scenario: what each model learns from, what the canary serves."""

    scenario: Scenario
    champion_rows: pd.DataFrame
    candidate_rows: pd.DataFrame
    traffic: pd.DataFrame


def candidate_world(kind: CandidateKind, *, seed: int, rows_per_day: int = 1000) -> CandidateWorld:
    """The credit world, with a concept drift (and a covariate shift) between the champion's days and the
    candidate's for ``GOOD_AFTER_CONCEPT_DRIFT``, stationary otherwise."""
    injections: tuple[Injection, ...] = ()
    if kind is CandidateKind.GOOD_AFTER_CONCEPT_DRIFT:
        onset = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=DRIFT_DAY)
        injections = (
            Injection(DriftKind.COVARIATE_SHIFT, onset, None, ("utilization", "debt_ratio"), 1.5),
            Injection(DriftKind.CONCEPT_DRIFT, onset, None, ("num_late_payments", "debt_ratio"), 1.0),
        )
    scenario = credit_default_scenario(seed=seed, rows_per_day=rows_per_day, injections=injections)

    def days(first: int, last: int) -> pd.DataFrame:
        start = scenario.start + pd.Timedelta(days=first)
        frame = scenario.generate(start, scenario.start + pd.Timedelta(days=last))
        return frame.drop(columns=["label_available_at"], errors="ignore")

    return CandidateWorld(scenario, days(*CHAMPION_DAYS), days(*CANDIDATE_DAYS), days(TRAFFIC_DAY, TRAFFIC_DAY + 1))


def train_on(spec: ModelSpec, frame: pd.DataFrame, source: str) -> TrainedModel:
    """Fit ``spec``'s model on ``frame`` with the time-aware split, as a retrain does."""
    return train_model(spec, split_train_holdout(frame, spec), data_sha256=frame_sha256(frame), data_source=source)


@dataclass(frozen=True)
class CandidateCosts:
    """The added work of the slow wrappers, in ``burn`` units (measured once on a quiet machine: ``costs_for``)."""

    slower_units: int
    per_recent_call_units: int


def costs_for(slower_ms: float = 6.0, per_recent_call_ms: float = 2.0) -> CandidateCosts:
    """A slower candidate adds ``slower_ms`` to every call; a load-sensitive one ``per_recent_call_ms`` per call
    in its last window. Measure before any load starts: the units are then fixed work."""
    return CandidateCosts(units_for(slower_ms), units_for(per_recent_call_ms))


def build_candidate(
    kind: CandidateKind, spec: ModelSpec, world: CandidateWorld, *, seed: int, costs: CandidateCosts,
) -> TrainedModel:
    """The candidate of ``kind``: trained on the world's fresh rows, or a trained model behind a fault."""
    fresh = world.candidate_rows
    if kind is CandidateKind.SUBTLY_WORSE:
        # Learns from fewer rows with noisy labels; judged on the same clean, newest hold-out as a good retrain.
        split = split_train_holdout(fresh, spec)
        few = split.train.iloc[-max(len(split.train) // SUBTLY_WORSE_ROW_SHARE, 1500):]
        noisy = replace(split, train=noisy_labels(few, spec.target, SUBTLY_WORSE_NOISE, seed))
        return train_model(spec, noisy, data_sha256=frame_sha256(noisy.train),
                           data_source="candidate: fewer rows, noisy labels")
    if kind is CandidateKind.INVERTED_LABELS:
        return train_on(spec, inverted_labels(fresh, spec.target), "candidate: labels inverted by a faulty join")
    trained = train_on(spec, fresh, f"candidate {kind.value}: fresh rows")
    wrapped = {
        CandidateKind.ERROR_PRONE: lambda m: ErrorProneClassifier(m),
        CandidateKind.SLOWER: lambda m: SlowerClassifier(m, work_units=costs.slower_units),
        CandidateKind.SLOWER_UNDER_LOAD: lambda m: LoadSensitiveClassifier(m, work_units=costs.per_recent_call_units),
    }.get(kind)
    if wrapped is None:
        return trained
    return replace(trained, estimator=wrapped(trained.estimator))


# ---------------------------------------------------------------------------------------- training data
def noisy_labels(frame: pd.DataFrame, target: str, share: float, seed: int) -> pd.DataFrame:
    """``frame`` with ``share`` of its binary labels flipped at random."""
    flip = np.random.default_rng(seed).random(len(frame)) < share
    return frame.assign(**{target: np.where(flip, 1 - frame[target].to_numpy(), frame[target].to_numpy())})


def inverted_labels(frame: pd.DataFrame, target: str) -> pd.DataFrame:
    return frame.assign(**{target: 1 - frame[target]})
