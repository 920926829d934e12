"""The training-window choice says when the gate would fail a retrain on its floor: wait for new-world rows."""

from __future__ import annotations

import pandas as pd
import pytest

from steward.training.paired import PairedInterval
from steward.training.windows import WindowChoice, WindowCode, WindowScore, floor_outlook


def _choice(score: float, champion: float, lower: float, *, shortest: bool = True, days: int = 1) -> WindowChoice:
    interval = PairedInterval("roc_auc", score, champion, score - champion, lower, lower + 0.3, 0.08, 0.95, 60,
                              "DeLong")
    scores = (WindowScore(1, 300, WindowCode.CHOSEN if days == 1 else WindowCode.COMPARED, 0.55),
              WindowScore(2, 600, WindowCode.CHOSEN if days == 2 else WindowCode.COMPARED, score if days == 2 else 0.5))
    if days == 1:
        scores = (WindowScore(1, 300, WindowCode.CHOSEN, score), scores[1])
    return WindowChoice(days, pd.DataFrame(), scores, "roc_auc", 60, champion, interval, shortest)


@pytest.fixture
def floored(example_spec):
    return example_spec.model_copy(update={"gates": example_spec.gates.model_copy(update={"floor": 0.7})})


def test_one_day_of_a_new_world_below_the_floor_waits_for_more_rows(floored):
    # the quick suite's sudden concept drift, the day after the onset: 1 d chosen, 0.553 on the newest 60 rows,
    # +0.141 [-0.092, +0.374] against the champion: the gate failed that retrain on its floor
    reason = floor_outlook(floored, _choice(0.553, 0.412, -0.092))
    assert reason is not None and "below the gate's floor 0.7" in reason and "wait for more" in reason


def test_the_floor_outlook_lets_a_retrain_go_when_the_gate_could_pass_it(floored, example_spec):
    assert floor_outlook(floored, _choice(0.796, 0.40, 0.2)) is None  # at the floor
    assert floor_outlook(floored, _choice(0.65, 0.40, 0.04)) is None  # rescued: the champion is further below
    assert floor_outlook(floored, _choice(0.60, 0.40, -0.1, shortest=False, days=2)) is None  # not the gate's rows
    assert floor_outlook(example_spec.model_copy(update={"gates": example_spec.gates.model_copy(
        update={"floor": None})}), _choice(0.55, 0.41, -0.09)) is None  # no floor
