"""The training window chosen by evidence: train on each candidate window, score on the newest rows.

A fixed number of days is a guess: after a change in the world a short window learns the new
world, in a quiet period a long one has less noise. With ``data.candidate_window_days`` the
retrain fits one model per window on that window's rows, all scored on the same newest labelled
slice that none of them trained on, and keeps the best. A window whose data fails the data checks
(too few rows, one class) gives way to the next longer one instead of stopping the retrain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import numpy as np
import pandas as pd

from steward.estimators import build_estimator
from steward.spec import ModelSpec
from steward.training.data import TooFewRows, validate_training_data
from steward.training.evaluation import compute_metrics, higher_is_better, predict_scores
from steward.training.paired import ComparisonError, PairedInterval, paired_difference
from steward.training.train import labelled_frame


class WindowCode(StrEnum):
    CHOSEN = "chosen"
    COMPARED = "compared"  # trained and scored, not the best
    TOO_LITTLE_DATA = "too_little_data"  # its rows fail the data checks: the next longer window is tried


@dataclass(frozen=True)
class WindowScore:
    days: int
    rows: int
    code: WindowCode
    score: float | None = None  # primary metric on the shared newest slice
    against_chosen: PairedInterval | None = None  # this window's improvement over the chosen one
    reason: str = ""

    def describe(self) -> str:
        if self.code is WindowCode.TOO_LITTLE_DATA:
            return f"{self.days} d: {self.rows} rows, skipped ({self.reason})"
        if self.score is None:
            return f"{self.days} d: {self.rows} rows ({self.code.value}: {self.reason})"
        versus = "" if self.against_chosen is None else (
            f", vs chosen {self.against_chosen.difference:+.4f} "
            f"[{self.against_chosen.lower:+.4f}, {self.against_chosen.upper:+.4f}]"
        )
        return f"{self.days} d: {self.rows} rows, {self.score:.4f}{versus}" + (" (chosen)" if self.code is
                                                                                 WindowCode.CHOSEN else "")


@dataclass(frozen=True)
class WindowChoice:
    days: int
    frame: pd.DataFrame
    scores: tuple[WindowScore, ...]
    metric: str
    evaluation_rows: int

    def describe(self) -> str:
        listed = "; ".join(score.describe() for score in self.scores)
        if not self.evaluation_rows:
            return f"training window {self.days} d, the only one with usable data ({listed})"
        return (f"training window {self.days} d chosen on {self.metric} over the newest {self.evaluation_rows} "
                f"labelled rows ({listed})")


def _window(frame: pd.DataFrame, spec: ModelSpec, end: pd.Timestamp, days: int) -> pd.DataFrame:
    times = pd.to_datetime(frame[spec.timestamp_column], utc=True)
    return frame[times > end - timedelta(days=days)]


def choose_training_window(spec: ModelSpec, frame: pd.DataFrame, end: datetime) -> WindowChoice:
    """Pick among ``spec.data.window_candidates`` using ``frame`` (the rows of the longest one, ending at ``end``).

    Windows whose rows fail the data checks are skipped (the next longer one is tried). The newest
    ``training.holdout_fraction`` of the shortest usable window's rows is held out from every
    candidate; each is fitted on the rest of its window and scored there with the primary metric.
    The best score wins; a tie goes to ``data.window_days``, then to the longer window.
    """
    end_time = pd.Timestamp(end).tz_convert("UTC") if pd.Timestamp(end).tzinfo else pd.Timestamp(end, tz="UTC")
    ordered = frame.sort_values(spec.timestamp_column, kind="stable")
    metric = spec.primary_metric
    scores: list[WindowScore] = []
    usable: list[tuple[int, pd.DataFrame]] = []
    for days in spec.data.window_candidates:
        rows = _window(ordered, spec, end_time, days)
        report = validate_training_data(rows, spec)
        if report.passed:
            usable.append((days, rows))
        else:
            failed = ", ".join(check.describe() for check in report.failures)
            scores.append(WindowScore(days, len(rows), WindowCode.TOO_LITTLE_DATA, reason=failed))
    if not usable:
        listed = "; ".join(score.describe() for score in scores)
        raise TooFewRows(f"no candidate training window has usable data ({listed}): wait for more labelled "
                        "traffic, or add a longer window to data.candidate_window_days")
    if len(usable) == 1:
        days, rows = usable[0]
        scores.append(WindowScore(days, len(rows), WindowCode.CHOSEN, reason="the only window with usable data"))
        return WindowChoice(days, rows, tuple(sorted(scores, key=lambda s: s.days)), metric, 0)

    held_out_rows = max(1, int(round(len(usable[0][1]) * spec.training.holdout_fraction)))
    newest = labelled_frame(ordered.tail(held_out_rows), spec)
    cut = pd.to_datetime(ordered.tail(held_out_rows)[spec.timestamp_column], utc=True).min()
    y_true = newest[spec.target].to_numpy()
    outputs: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}
    values: dict[int, float] = {}
    for days, rows in usable:
        train = labelled_frame(rows[pd.to_datetime(rows[spec.timestamp_column], utc=True) < cut], spec)
        model = build_estimator(spec).fit(train[spec.feature_names], train[spec.target])
        outputs[days] = predict_scores(model, newest[spec.feature_names], spec.task)
        values[days] = compute_metrics(spec.task, y_true, *outputs[days]).get(metric, float("nan"))

    sign = 1 if higher_is_better(metric) else -1
    preferred = spec.data.window_days
    chosen = max(values, key=lambda d: (np.nan_to_num(sign * values[d], nan=-np.inf), d == preferred, d))
    for days, rows in usable:
        against = None
        if days != chosen:
            try:
                against = paired_difference(metric, spec.task, y_true, outputs[days], outputs[chosen],
                                            confidence=spec.gates.confidence,
                                            resamples=spec.gates.bootstrap_resamples)
            except ComparisonError:
                against = None
        code = WindowCode.CHOSEN if days == chosen else WindowCode.COMPARED
        scores.append(WindowScore(days, len(rows), code, values[days], against))
    frame_chosen = dict(usable)[chosen]
    return WindowChoice(chosen, frame_chosen, tuple(sorted(scores, key=lambda s: s.days)), metric, len(newest))
