"""Replay simulated traffic into the prediction log without a gateway.

Monitoring tests and benchmarks need days of logged predictions with known properties
(a drift onset, a slower version, an error spike). Sending that through HTTP would
take minutes; this scores the scenario's rows with the real models and writes the
same records the gateway writes. Each request's latency is drawn from the model's
*measured* single-row latency (its CPU time, so the machine's load does not change the
world), plus ``extra_latency_ms`` where a test plants a slow version. The demo sends its
traffic through the real gateway instead.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from steward.spec import ModelSpec, Task
from steward.store.reader import PredictionStore
from steward.store.records import LabelBatch, label_text, prediction_batch
from steward.store.request_ids import new_request_id
from steward.training.data import prepare_features


@dataclass(frozen=True)
class ReplayArm:
    """One version taking traffic in the replay."""

    arm: str
    version: str
    estimator: Any
    share: float = 1.0
    extra_latency_ms: float = 0.0
    error_rate: float = 0.0
    # Latencies (ms) to draw from instead of measuring the estimator in this replay: a world replayed in
    # parts (a week at a time) measures once, so a planted trend is not buried under the machine's load
    # changing between the parts' measurements.
    measured_latency_ms: tuple[float, ...] | None = None


@dataclass(frozen=True)
class ReplaySummary:
    predictions: int
    labels: int
    per_arm: dict[str, int]


def measure_single_row_latency_ms(estimator: Any, features: pd.DataFrame, samples: int = 50) -> np.ndarray:
    """Real single-row predict times, in ms, over a few rows (one native thread, as when serving).

    The calling thread's CPU time, not the wall clock: on a busy machine the wall clock adds the wait for
    a core (a quiet world's p95 crossed a 100 ms SLO while CI built images beside the tests).
    """
    rows = features.head(samples)
    timings = []
    with threadpool_limits(limits=1):
        estimator.predict(rows.head(1))
        for index in range(len(rows)):
            started = time.thread_time()
            estimator.predict(rows.iloc[[index]])
            timings.append((time.thread_time() - started) * 1000)
    return np.asarray(timings)


def _outputs(estimator: Any, features: pd.DataFrame, task: Task) -> tuple[list[str], list[float]]:
    predictions = np.asarray(estimator.predict(features))
    if task is Task.REGRESSION:
        return [label_text(p) for p in predictions], predictions.astype(float).tolist()
    probabilities = np.asarray(estimator.predict_proba(features))
    scores = probabilities[:, -1] if probabilities.shape[1] == 2 else probabilities.max(axis=1)
    return [label_text(p) for p in predictions], scores.astype(float).tolist()


def replay_to_store(
    store: PredictionStore,
    spec: ModelSpec,
    frame: pd.DataFrame,
    arms: Sequence[ReplayArm],
    *,
    shadow: ReplayArm | None = None,
    labels_until: pd.Timestamp | None = None,
    seed: int = 0,
) -> ReplaySummary:
    """Score every row of ``frame`` (one request per row) with an arm drawn by share, and log it.

    ``frame`` is scenario output: features, ``spec.timestamp_column`` as the request time,
    the target, and ``label_available_at``. Labels are logged for rows whose label is
    available by ``labels_until`` (default: all), timed when they became available.
    """
    if not arms:
        raise ValueError("replay needs at least one arm")
    rng = np.random.default_rng(seed)
    shares = np.asarray([a.share for a in arms], float)
    choice = rng.choice(len(arms), size=len(frame), p=shares / shares.sum())
    features = prepare_features(frame, spec)
    times = pd.to_datetime(frame[spec.timestamp_column], utc=True)
    time_ns = times.astype("int64").to_numpy()
    entities = frame[spec.entity_column].astype(str).tolist() if spec.entity_column else [None] * len(frame)
    # Ids as the gateway makes them (they carry the request time), reproducible from the seed.
    request_ids = [new_request_id(int(at), int(rng.integers(2**63))) for at in time_ns]
    numeric = tuple(spec.numeric_features)

    batches = []
    per_arm: dict[str, int] = {}
    lanes = [(index, arm, True) for index, arm in enumerate(arms)]
    if shadow is not None:
        lanes.append((-1, shadow, False))
    for index, arm, served in lanes:
        positions = np.arange(len(frame)) if not served else np.flatnonzero(choice == index)
        if len(positions) == 0:
            continue
        subset = features.iloc[positions]
        predictions, scores = _outputs(arm.estimator, subset, spec.task)
        measured = (np.asarray(arm.measured_latency_ms) if arm.measured_latency_ms
                    else measure_single_row_latency_ms(arm.estimator, subset))
        latencies = rng.choice(measured, size=len(positions)) + arm.extra_latency_ms
        failed = rng.random(len(positions)) < arm.error_rate
        columns = {name: subset[name].tolist() for name in spec.feature_names}
        for offset, position in enumerate(positions):
            ok = not failed[offset]
            batches.append(
                prediction_batch(
                    request_ids[position], int(time_ns[position]), spec.name, arm.version, arm.arm,
                    served=served, status="ok" if ok else "error", rows=(0,),
                    features={name: (_plain(values[offset]),) for name, values in columns.items()},
                    numeric=numeric,
                    predictions=(predictions[offset],) if ok else None,
                    scores=(scores[offset],) if ok else None,
                    latency_ms=float(latencies[offset]),
                    entities=(entities[position],),
                )
            )
        per_arm[arm.arm if served else f"shadow:{arm.arm}"] = len(positions)

    labels = 0
    if spec.target in frame.columns and "label_available_at" in frame.columns:
        available = pd.to_datetime(frame["label_available_at"], utc=True)
        mask = np.ones(len(frame), bool) if labels_until is None else (available <= labels_until).to_numpy()
        targets = frame[spec.target].to_numpy()
        available_ns = available.astype("int64").to_numpy()
        for position in np.flatnonzero(mask):
            batches.append(
                LabelBatch(spec.name, int(available_ns[position]), (request_ids[position],), (0,),
                           (label_text(targets[position]),))
            )
            labels += 1
    store.write_batches(batches, flush_id=f"replay-{uuid.uuid4().hex[:12]}")
    return ReplaySummary(predictions=sum(per_arm.values()), labels=labels, per_arm=per_arm)


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value
