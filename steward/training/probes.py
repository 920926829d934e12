"""Behavioural probes of a model: edge-case inputs and inference speed.

The validation gate uses them to compare a candidate with the champion; each probe
measures, and the gate decides.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from steward.spec import FeatureType, ModelSpec

UNSEEN_CATEGORY = "__steward_unseen__"


@dataclass(frozen=True)
class EdgeCaseOutcome:
    case: str
    must_answer: bool
    answered: bool
    valid_output: bool
    error: str | None

    @property
    def passed(self) -> bool:
        if self.answered:
            return self.valid_output
        return not self.must_answer and self.error is not None

    def describe(self) -> str:
        if self.answered:
            return f"{self.case}: answered" + ("" if self.valid_output else " with invalid output")
        return f"{self.case}: raised {self.error}"


def edge_case_batches(spec: ModelSpec, sample: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, bool]]:
    """Named edge-case batches built from real rows, each with whether the model must answer it.

    The model must answer anything the schema admits: extreme but in-range values, missing
    values in nullable features, categories it has never seen. An empty batch may be
    refused, as long as the refusal is an ordinary exception and not a crash.
    """
    base = sample[spec.feature_names].head(8).reset_index(drop=True)
    cases: dict[str, tuple[pd.DataFrame, bool]] = {"empty_batch": (base.iloc[0:0], False)}

    for bound, pick in (("min", lambda f: f.min), ("max", lambda f: f.max)):
        extreme = base.copy()
        for feature in spec.features:
            if feature.is_numeric:
                observed = sample[feature.name].dropna()
                declared = pick(feature)
                fallback = observed.min() if bound == "min" else observed.max()
                extreme[feature.name] = float(declared if declared is not None else fallback)
        cases[f"extreme_{bound}_values"] = (extreme, True)

    nullable = [f.name for f in spec.features if f.nullable]
    if nullable:
        with_missing = base.copy()
        with_missing[nullable] = np.nan
        cases["missing_nullable_values"] = (with_missing, True)

    categorical = [f.name for f in spec.features if f.type is FeatureType.CATEGORICAL]
    if categorical:
        unseen = base.copy()
        unseen[categorical] = UNSEEN_CATEGORY
        cases["unseen_category"] = (unseen, True)
    return cases


def _valid_output(output: Any, rows: int) -> bool:
    array = np.asarray(output)
    if array.shape[:1] != (rows,):
        return False
    if array.dtype.kind in "fc":
        return bool(np.isfinite(array).all())
    return True


def run_edge_cases(model: Any, spec: ModelSpec, sample: pd.DataFrame) -> list[EdgeCaseOutcome]:
    outcomes = []
    for case, (batch, must_answer) in edge_case_batches(spec, sample).items():
        try:
            output = model.predict(batch)
            if hasattr(model, "predict_proba") and len(batch):
                probabilities = np.asarray(model.predict_proba(batch))
                valid = _valid_output(output, len(batch)) and bool(
                    np.isfinite(probabilities).all() and np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
                )
            else:
                valid = _valid_output(output, len(batch))
            outcomes.append(EdgeCaseOutcome(case, must_answer, True, valid, None))
        except Exception as error:  # the probe's job is to observe any failure the model raises
            outcomes.append(EdgeCaseOutcome(case, must_answer, False, False, f"{type(error).__name__}: {error}"[:300]))
    return outcomes


@dataclass(frozen=True)
class SpeedProfile:
    single_row_p50_ms: float
    single_row_p95_ms: float
    batch_rows: int
    batch_rows_per_second: float


def _time_calls(predict: Callable[[pd.DataFrame], Any], batch: pd.DataFrame, repeats: int) -> list[float]:
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        predict(batch)
        timings.append(time.perf_counter() - start)
    return timings


def compare_speed(
    candidate: Any,
    baseline: Any | None,
    sample: pd.DataFrame,
    *,
    single_row_calls: int = 200,
    batch_rows: int = 2000,
    rounds: int = 7,
    tries_per_row: int = 3,
) -> tuple[SpeedProfile, SpeedProfile | None]:
    """Single-row latency and batch throughput of the candidate and, if given, the baseline.

    The two alternate call by call on the same rows, so a noisy neighbour slows both rather than
    biasing one. Each row's latency is the best of ``tries_per_row`` calls and throughput the best
    of ``rounds`` batches, as ``timeit`` takes it: interference only ever adds time, so the fastest
    call is the model's own cost and the comparison does not depend on the machine's load. Native thread pools are limited to one thread, as in a
    serving process that answers requests concurrently: on a busy host OpenMP's spinning threads
    otherwise dominate small batches.
    """
    rows = sample.sample(n=min(len(sample), single_row_calls), random_state=0, replace=len(sample) < single_row_calls)
    singles = [rows.iloc[[i]] for i in range(len(rows))]
    batch = sample.sample(n=batch_rows, random_state=1, replace=len(sample) < batch_rows)
    models = {"candidate": candidate} | ({"baseline": baseline} if baseline is not None else {})
    single_times: dict[str, list[float]] = {name: [] for name in models}
    batch_times: dict[str, list[float]] = {name: [] for name in models}
    with threadpool_limits(limits=1):
        for model in models.values():  # warm-up: first calls pay for lazy initialisation
            model.predict(batch.head(10))
        for row in singles:
            tries: dict[str, list[float]] = {name: [] for name in models}
            for _ in range(tries_per_row):
                for name, model in models.items():
                    tries[name].extend(_time_calls(model.predict, row, 1))
            for name in models:
                single_times[name].append(min(tries[name]))
        for _ in range(rounds):
            for name, model in models.items():
                batch_times[name].extend(_time_calls(model.predict, batch, 1))

    def profile(name: str) -> SpeedProfile:
        singles_ms = np.array(single_times[name]) * 1000
        return SpeedProfile(
            single_row_p50_ms=float(np.percentile(singles_ms, 50)),
            single_row_p95_ms=float(np.percentile(singles_ms, 95)),
            batch_rows=batch_rows,
            batch_rows_per_second=float(batch_rows / min(batch_times[name])),
        )

    return profile("candidate"), (profile("baseline") if baseline is not None else None)
