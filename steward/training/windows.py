"""The training window chosen by evidence: train on each candidate window, score on the newest rows.

A fixed number of days is a guess: after a change in the world a short window learns the new
world, in a quiet period a long one has less noise. With ``data.candidate_window_days`` the
retrain fits one model per window on that window's rows, all scored on the same newest labelled
slice that none of them trained on, and keeps the best. A window whose data fails the data checks
(too few rows, one class) gives way to the next longer one instead of stopping the retrain.

Given the champion, the choice also says when training is not worth it yet: the chosen window is
the shortest one (the world changed so recently that only its newest rows count), so the newest
slice it was scored on is the hold-out its gate would judge it on, and there it misses the gate's
floor without being better than the champion with confidence (the gate's rescue). The gate would
fail it, or at best keep it pending for rows that would show its gain; either way a retrain on more
of the new world's rows is the better candidate: ``ExpectedBelowFloor`` says to wait for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd

from steward.estimators import build_estimator
from steward.spec import ModelSpec
from steward.training.data import TooFewRows, validate_training_data
from steward.training.evaluation import compute_metrics, higher_is_better, predict_scores
from steward.training.paired import ComparisonError, PairedInterval, paired_difference
from steward.training.train import labelled_frame


class ExpectedBelowFloor(TooFewRows):
    """The chosen window's model would fail the gate's floor on the rows the gate would judge it on: wait for
    more labelled rows of the new world before training."""


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
    champion_score: float | None = None  # the champion on the same newest slice
    against_champion: PairedInterval | None = None  # the chosen window's improvement over the champion there
    shortest: bool = False  # the chosen window is the shortest usable one: the slice is its gate's hold-out

    def describe(self) -> str:
        listed = "; ".join(score.describe() for score in self.scores)
        if not self.evaluation_rows:
            return f"training window {self.days} d, the only one with usable data ({listed})"
        return (f"training window {self.days} d chosen on {self.metric} over the newest {self.evaluation_rows} "
                f"labelled rows ({listed})")


def _window(frame: pd.DataFrame, spec: ModelSpec, end: pd.Timestamp, days: int) -> pd.DataFrame:
    times = pd.to_datetime(frame[spec.timestamp_column], utc=True)
    return frame[times > end - timedelta(days=days)]


def choose_training_window(spec: ModelSpec, frame: pd.DataFrame, end: datetime, champion: Any | None = None
                           ) -> WindowChoice:
    """Pick among ``spec.data.window_candidates`` using ``frame`` (the rows of the longest one, ending at ``end``).

    Windows whose rows fail the data checks are skipped (the next longer one is tried). The newest
    ``training.holdout_fraction`` of the shortest usable window's rows is held out from every
    candidate; each is fitted on the rest of its window and scored there with the primary metric.
    The best score wins; a tie goes to ``data.window_days``, then to the longer window.
    With ``champion`` (a fitted model), raises ``ExpectedBelowFloor`` when ``floor_outlook`` finds the
    chosen window's model would fail the gate's floor.
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
    champion_score, against_champion = None, None
    if champion is not None:
        champion_outputs = predict_scores(champion, newest[spec.feature_names], spec.task)
        champion_score = compute_metrics(spec.task, y_true, *champion_outputs).get(metric, float("nan"))
        try:
            against_champion = paired_difference(metric, spec.task, y_true, outputs[chosen], champion_outputs,
                                                 confidence=spec.gates.confidence,
                                                 resamples=spec.gates.bootstrap_resamples)
        except ComparisonError:
            against_champion = None
    choice = WindowChoice(chosen, frame_chosen, tuple(sorted(scores, key=lambda s: s.days)), metric, len(newest),
                          champion_score, against_champion, chosen == usable[0][0])
    if champion is not None:
        short = floor_outlook(spec, choice)
        if short is not None:
            raise ExpectedBelowFloor(short)
    return choice


def floor_outlook(spec: ModelSpec, choice: WindowChoice) -> str | None:
    """Why the gate would fail the chosen window's model on its floor, or None when it may pass.

    Judged only when the evidence is the gate's own: the chosen window is the shortest usable one, so
    the newest slice is its hold-out. Below the floor, and not rescued by a champion further below it that
    the candidate beats with confidence: the gate would fail it or keep it pending, and waiting for more of
    the new world's rows gives a better candidate than one trained on the shortest window.
    """
    floor = spec.gates.floor
    chosen = next((s for s in choice.scores if s.code is WindowCode.CHOSEN), None)
    if floor is None or not choice.shortest or chosen is None or chosen.score is None or choice.champion_score is None:
        return None
    higher = higher_is_better(choice.metric)

    def meets(value: float) -> bool:
        return value >= floor if higher else value <= floor

    if np.isnan(chosen.score) or meets(chosen.score):
        return None
    interval = choice.against_champion
    if interval is not None and not meets(choice.champion_score) and interval.lower > 0:
        return None
    versus = "" if interval is None else (f", {interval.difference:+.4f} [{interval.lower:+.4f}, "
                                          f"{interval.upper:+.4f}] against the champion's {choice.champion_score:.4f}")
    return (f"the {choice.days} d window (the shortest: the world changed within it) scores {choice.metric} "
            f"{chosen.score:.4f} on its newest {choice.evaluation_rows} labelled rows{versus}: below the gate's floor "
            f"{floor:g} and not better than the champion with confidence, so the gate would not pass it on these rows; "
            "wait for more labelled rows of the new world")
