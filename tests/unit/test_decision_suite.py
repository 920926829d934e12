"""The decision scenario suite: its catalogue's ground truth and the scoring rules (on hand-made traces)."""

from __future__ import annotations

import pandas as pd
import pytest

from steward.simulation.scoring import DecisionTrace, WindowDecision, score_case
from steward.simulation.suite import CaseKind, SuiteSize, catalogue, scenario_spec

DAY = pd.Timedelta(days=1)


def case(name: str, size: SuiteSize | None = None):
    return next(c for c in catalogue(size or SuiteSize.quick()) if c.name == name)


def trace(first: pd.Timestamp, n: int, *, alarms=(), retrains=(), gaps=None) -> DecisionTrace:
    gaps = gaps or [0.0] * n
    return DecisionTrace("steward", tuple(
        WindowDecision(first + i * DAY, first + (i + 1) * DAY, i in alarms, i in retrains, 0.8 - gaps[i], 0.8, 400)
        for i in range(n)
    ))


def test_the_catalogue_covers_the_issue_and_the_quick_subset_is_small():
    full = catalogue(SuiteSize.full())
    kinds = {c.kind for c in full}
    assert kinds == set(CaseKind)
    names = {c.name for c in full}
    assert {"covariate_0.25std", "covariate_0.5std", "covariate_1std"} <= names
    assert {f"concept_{how}_{p}pt" for how in ("sudden", "gradual") for p in (3, 5, 10)} <= names
    quiet = [c for c in full if c.kind in (CaseKind.QUIET, CaseKind.SEASONAL, CaseKind.UNIMPORTANT_SHIFT)]
    assert all((c.end - c.first_window).days >= 90 and not c.material for c in quiet)
    assert 4 <= sum(c.in_quick for c in full) <= 8


def test_a_scenario_spec_takes_every_column_of_its_world():
    seasonal = case("quiet_seasonal_calendar")
    spec = scenario_spec(seasonal.scenario, 14)
    assert spec.feature_names == seasonal.scenario.feature_names
    assert spec.feature("day_of_week").type == "integer" and spec.data.window_days == 14


def test_quiet_case_counts_every_alarm_as_false_per_90_days():
    quiet = case("quiet")
    score = score_case(quiet, trace(quiet.first_window, 30, alarms={4, 20}))
    assert score.detected is None and score.false_alarms == 2
    assert score.false_alarms_per_90_days == pytest.approx(6.0)


def test_material_drift_scores_detection_delay_retrains_and_recovery():
    drift = case("concept_sudden_10pt")
    onset = (drift.onset - drift.first_window).days
    gaps = [0.0] * onset + [0.10, 0.10, 0.02, 0.0, 0.0, 0.0, 0.0]
    score = score_case(drift, trace(drift.first_window, len(gaps), alarms={1, onset + 1}, retrains={onset + 1},
                                    gaps=gaps))
    assert score.false_alarms == 1 and score.quiet_days == onset
    assert score.detected and score.delay_cycles == 1 and not score.detected_in_time
    assert score.retrains == 1
    assert score.accuracy_lost == pytest.approx(0.22 / 7)
    assert score.cycles_to_recover == 2


def test_a_missed_drift_is_not_detected_and_never_recovers():
    drift = case("concept_sudden_10pt")
    onset = (drift.onset - drift.first_window).days
    gaps = [0.0] * onset + [0.1] * 7
    score = score_case(drift, trace(drift.first_window, len(gaps), gaps=gaps))
    assert score.detected is False and score.delay_cycles is None and score.cycles_to_recover is None


def test_a_gradual_drift_counts_its_delay_from_when_it_became_material():
    gradual = case("gradual_covariate")
    material = (gradual.material_start - gradual.first_window) // DAY
    score = score_case(gradual, trace(gradual.first_window, 14, alarms={material + 1}))
    assert score.detected and score.delay_cycles == 1
    early = score_case(gradual, trace(gradual.first_window, 14, alarms={material - 1}))
    assert early.delay_cycles == 0 and early.false_alarms == 0


# --------------------------------------------------------------------------------------------------
# The quick mode's decisions (benchmarks/decisions.py --quick): Steward on the simulator, daily cadence.
# They hold the issue's goals; a decision that misses one is the product's to fix, not the test's.


@pytest.fixture(scope="module")
def quick_runs():
    from steward.simulation.suite_run import run_case

    size = SuiteSize.quick()
    cache: dict[str, object] = {}

    def run(name: str):
        if name not in cache:
            cache[name] = run_case(case(name, size), size, seed=7, weekly=False, evidently=False)
        return cache[name]

    return run


QUIET = ("quiet", "quiet_seasonal_calendar", "quiet_unimportant_shift")


@pytest.mark.slow
@pytest.mark.parametrize("name", QUIET)
def test_a_quiet_period_raises_at_most_one_alarm_per_90_days(quick_runs, name):
    score = quick_runs(name).scores["steward"]
    assert score.false_alarms_per_90_days <= 1.0, f"{score.false_alarms} alarms in {score.quiet_days:.0f} quiet days"
    assert score.retrains == 0


@pytest.mark.slow
def test_an_important_feature_shift_of_one_std_is_detected_within_one_cycle(quick_runs):
    score = quick_runs("covariate_1std").scores["steward"]
    assert score.detected and score.delay_cycles == 0


@pytest.mark.slow
def test_a_ten_point_concept_drift_leads_to_a_retrain_and_accuracy_back_near_the_oracle(quick_runs):
    run = quick_runs("concept_sudden_10pt")
    steward, frozen = run.scores["steward"], run.scores["frozen"]
    # Costly: 4.3 points against the oracle in the quick world (the oracle of a day right after a sudden
    # change knows only half a day of the new concept, so the ~10 points it costs show as less).
    assert frozen.accuracy_lost > 0.03
    assert steward.detected and steward.delay_cycles == 0
    # The first day of the new world is too little for a model the gate could pass: the window choice
    # finds it below the floor on the gate's own rows and waits; the next day's retrain is promoted
    # (3 retrains before: the first one failed the floor).
    skipped = [a for w in run.daily.windows for a in w.actions if a.kind.value == "retrain_skipped"]
    assert [a.code for a in skipped][:1] == ["expected_below_floor"]
    assert steward.retrains == 2 and steward.promotions == 2
    assert steward.cycles_to_recover is not None and steward.cycles_to_recover <= 2


@pytest.mark.slow
def test_a_threshold_shift_that_keeps_auc_is_caught_and_repaired(quick_runs):
    run = quick_runs("threshold_shift")
    steward = run.scores["steward"]
    assert run.scores["frozen"].accuracy_lost > 0.03
    assert steward.detected and steward.delay_cycles == 0
    # The champion's threshold is re-fitted on the first day of the new world and the gate judges it on
    # accuracy, the metric whose drop triggered it: one retrain, promoted (3 retrains, none promoted before).
    assert steward.retrains == 1 and steward.promotions == 1
    assert steward.cycles_to_recover is not None and steward.cycles_to_recover <= 2


@pytest.mark.slow
def test_a_retrain_without_gain_is_not_repeated_for_the_same_drift(quick_runs):
    run = quick_runs("covariate_1std")
    steward = run.scores["steward"]
    assert steward.detected and steward.delay_cycles == 0
    # The first retrain's gate expected no gain; the later accuracy alarm brought no new evidence on the
    # judged metric, so it folds into the open entry (2 retrains, none promoted, before).
    assert steward.retrains == 1
    folded = [a for w in run.daily.windows for a in w.actions if a.kind.value == "retrain_folded"]
    assert folded and all(a.code == "no_new_evidence" for a in folded)
