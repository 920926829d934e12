"""The backtest: its event-time clock, the decisions it replays on simulated histories, and bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
import yaml

from steward.backtest import (
    ActionKind,
    BacktestConfig,
    BacktestError,
    Strategy,
    check_history,
    load_history,
    run_backtest,
)
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import credit_default_scenario
from steward.training.gates import TRAINED_AS_OF_TAG, RetrainCode, decide_retrain, trained_as_of
from steward.training.retrain_decision import RetrainKind

START = pd.Timestamp("2026-01-01", tz="UTC")
WEEK = pd.Timedelta(days=7)
FIRST_WINDOW = START + 4 * WEEK


# ---------------------------------------------------------------------- the clock

def test_the_cooldown_is_judged_at_the_event_time_not_the_wall_clock():
    as_of = datetime(2026, 2, 3, tzinfo=UTC)  # a backfill of February, run in December
    earlier = [as_of - timedelta(hours=2)]
    backfill = decide_retrain(as_of, earlier, cooldown_hours=24, max_per_week=3)
    assert backfill.code is RetrainCode.COOLDOWN and backfill.as_of == as_of
    assert decide_retrain(None, earlier, cooldown_hours=24, max_per_week=3).code is RetrainCode.WITHIN_BUDGET
    assert decide_retrain(as_of + timedelta(hours=25), earlier, cooldown_hours=24, max_per_week=3).allowed


def test_retrains_after_the_event_time_had_not_happened_yet():
    as_of = datetime(2026, 2, 3, tzinfo=UTC)
    later = [as_of + timedelta(hours=1), as_of + timedelta(days=2)]
    assert decide_retrain(as_of, later, cooldown_hours=24, max_per_week=1).code is RetrainCode.WITHIN_BUDGET


def test_the_weekly_budget_counts_the_week_before_the_event_time():
    as_of = datetime(2026, 2, 10, tzinfo=UTC)
    week = [as_of - timedelta(days=d) for d in (1.5, 3, 5)]
    assert decide_retrain(as_of, week, cooldown_hours=24, max_per_week=3).code is RetrainCode.WEEKLY_BUDGET_SPENT
    assert decide_retrain(as_of + timedelta(days=3), week, cooldown_hours=24, max_per_week=3).allowed


def test_a_version_is_counted_at_the_event_time_it_was_trained_at():
    created = datetime(2026, 12, 3, 20, tzinfo=UTC)
    assert trained_as_of({}, created) == created  # versions registered before the tag existed
    stamp = datetime(2026, 2, 3, tzinfo=UTC)
    assert trained_as_of({TRAINED_AS_OF_TAG: stamp.isoformat()}, created) == stamp


# ---------------------------------------------------------------------- histories

@pytest.fixture(scope="module")
def spec():
    """The example spec with a small model and a training-data minimum a week of small traffic meets."""
    from steward.simulation.examples import example_spec_text
    from steward.spec import parse_spec

    document = yaml.safe_load(example_spec_text())
    document["estimator"]["params"]["max_iter"] = 20
    document["data_validation"]["min_rows"] = 500
    return parse_spec(document)


def history(weeks: int, *injections: Injection, rows_per_day: int = 200) -> pd.DataFrame:
    world = credit_default_scenario(rows_per_day=rows_per_day, injections=tuple(injections))
    return world.generate(START, FIRST_WINDOW + weeks * WEEK)


@pytest.fixture(scope="module")
def concept_drift(spec):
    """Risk's dependence on utilization, late payments and debt ratio reverses at the second window."""
    onset = FIRST_WINDOW + WEEK
    frame = history(5, Injection(DriftKind.CONCEPT_DRIFT, onset, None,
                                 ("utilization", "num_late_payments", "debt_ratio"), 1.0))
    config = BacktestConfig(label_time_column="label_available_at", training_window=timedelta(days=7))
    return run_backtest(spec, frame, config)


@pytest.mark.slow
def test_concept_drift_raises_an_alarm_a_retrain_and_a_promotion_after_which_steward_beats_frozen(concept_drift):
    windows = concept_drift.windows
    assert [w.start for w in windows] == [(FIRST_WINDOW + i * WEEK).to_pydatetime() for i in range(5)]
    assert not windows[0].actions  # before the drift: nothing to do
    alarmed = next(w for w in windows if w.did(ActionKind.HEALTH_ALARM))
    assert alarmed.index >= 1 and "accuracy_drop" in alarmed.health_codes
    assert alarmed.did(ActionKind.RETRAINED)
    promoted = next(w for w in windows if w.did(ActionKind.PROMOTED))
    assert promoted.did(ActionKind.GATE_PASSED)
    after = [w for w in windows if w.index > promoted.index]
    assert after and all(w.served_version != "1" for w in after)
    for w in after:
        assert w.metrics[Strategy.STEWARD]["roc_auc"] > w.metrics[Strategy.FROZEN]["roc_auc"] + 0.1
        assert w.metrics[Strategy.ORACLE]["roc_auc"] > w.metrics[Strategy.FROZEN]["roc_auc"]
    summary = concept_drift.summary()
    steward = summary.strategies[Strategy.STEWARD]
    assert steward.retrains >= 1 and steward.promotions >= 1 and steward.alarms >= 1
    assert steward.mean_primary > summary.strategies[Strategy.FROZEN].mean_primary
    assert summary.strategies[Strategy.EVERY_WINDOW].retrains == len(windows) - 1  # the last would never serve
    assert summary.strategies[Strategy.FROZEN].retrains == 0


@pytest.mark.slow
def test_a_retrain_inside_the_cooldown_is_skipped_on_event_time(spec):
    """Daily windows after a concept drift: the accuracy alarm asks every day; a 72 h cooldown answers."""
    frame = history(1, Injection(DriftKind.CONCEPT_DRIFT, FIRST_WINDOW, None,
                                 ("utilization", "num_late_payments", "debt_ratio"), 1.0), rows_per_day=400)
    slow = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"cooldown_hours": 72})})
    config = BacktestConfig(cadence=timedelta(days=1), training_window=timedelta(days=2),
                            strategies=(Strategy.STEWARD,))
    result = run_backtest(slow, frame, config)

    def answer(window) -> RetrainCode | RetrainKind | None:
        """A skip's allowance code; a retrain that ran says what it built (it was within the budget)."""
        for action in window.actions:
            if action.kind is ActionKind.RETRAIN_SKIPPED:
                return RetrainCode(action.code)
            if action.kind is ActionKind.RETRAINED:
                assert "cooldown respected" in action.detail  # the allowance it ran under, for a reader
                return RetrainKind(action.code)
        return None

    # the first champion was trained at the first window's start: 24 h and 48 h later the cooldown holds,
    # at 72 h the retrain runs, and the next 48 h are inside the cooldown again
    cooldown, trained = RetrainCode.COOLDOWN, RetrainKind.TRAIN
    assert [answer(w) for w in result.windows[:3]] == [cooldown, cooldown, trained]
    assert all(answer(w) in (None, cooldown) for w in result.windows[3:5])
    assert all(w.did(ActionKind.HEALTH_ALARM) for w in result.windows[:3])


@pytest.mark.slow
def test_labels_that_arrive_days_later_are_judged_in_the_window_they_arrive_in(spec):
    """Issue 15's label-delay cases: labels 3 days late, a daily check. Each window's health check reads the
    earlier windows' predictions whose labels arrived in it, so a concept drift at the first window is seen
    once its labels arrive; without the look-back no check ever sees a label."""
    frame = history(1, Injection(DriftKind.CONCEPT_DRIFT, FIRST_WINDOW, None,
                                 ("utilization", "num_late_payments", "debt_ratio"), 1.0), rows_per_day=400)
    config = BacktestConfig(cadence=timedelta(days=1), training_window=timedelta(days=7),
                            strategies=(Strategy.STEWARD,), label_delay=timedelta(days=3),
                            end=(FIRST_WINDOW + pd.Timedelta(days=5)).to_pydatetime())
    result = run_backtest(spec, frame, config)
    windows = result.windows
    assert all(w.labels_known_at_end == 0 for w in windows)  # no window's own labels arrive by its end
    assert [w.late_labels > 0 for w in windows] == [False, False, False, True, True]
    alarmed = [w.index for w in windows if "accuracy_drop" in w.health_codes]
    assert alarmed and alarmed[0] == 3  # the first window whose labels have arrived
    # its retrain learnt the change from one day of labels, 3 days behind: a day later it is caught up (0038)
    assert windows[3].did(ActionKind.PROMOTED)
    (catch_up,) = [a for a in windows[4].actions if a.kind is ActionKind.RETRAINED]
    assert "catch-up on lagging labels" in catch_up.detail and catch_up.code == RetrainKind.TRAIN.value

    blind = spec.model_copy(update={"health": spec.health.model_copy(update={"label_lookback_days": 0})})
    unseen = run_backtest(blind, frame, config)
    assert all(w.late_labels == 0 and not w.health_codes for w in unseen.windows)


@pytest.mark.slow
def test_a_quiet_history_leads_to_no_retrain(spec):
    config = BacktestConfig(strategies=(Strategy.STEWARD, Strategy.FROZEN), label_delay=timedelta(days=2))
    result = run_backtest(spec, history(3), config)
    assert len(result.windows) == 3
    assert not any(w.did(ActionKind.RETRAINED) or w.did(ActionKind.PROMOTED) for w in result.windows)
    assert {w.served_version for w in result.windows} == {"1"}
    assert all(w.labels_known_at_end < w.labelled_rows for w in result.windows)  # two days of labels pending
    summary = result.summary()
    assert set(summary.strategies) == {Strategy.STEWARD, Strategy.FROZEN}
    assert summary.strategies[Strategy.STEWARD].retrains == 0
    assert summary.strategies[Strategy.STEWARD].mean_primary == summary.strategies[Strategy.FROZEN].mean_primary


@pytest.mark.slow
def test_a_quiet_history_with_a_scheduled_refresh_retrains_the_old_champion_and_promotes_it(spec):
    refreshing = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"refresh_after_days": 14})})
    config = BacktestConfig(strategies=(Strategy.STEWARD,), label_delay=timedelta(days=2))
    result = run_backtest(refreshing, history(3), config)  # a refresh trains on 4 weeks, as the champion did
    # the first champion is trained at the first window's start: 7 days old at its end, 14 at the second's
    assert not any(w.did(ActionKind.RETRAINED) for w in result.windows[:1])
    refreshed = result.windows[1]
    retrained = next(a for a in refreshed.actions if a.kind is ActionKind.RETRAINED)
    assert "scheduled refresh" in retrained.detail
    assert refreshed.did(ActionKind.GATE_PASSED) and refreshed.did(ActionKind.PROMOTED)
    assert result.windows[2].served_version != "1" and not result.windows[2].did(ActionKind.RETRAINED)


@pytest.mark.slow
def test_a_re_fitted_threshold_keeps_its_models_age_so_the_refresh_still_comes_on_time(spec):
    refreshing = spec.model_copy(update={"retrain": spec.retrain.model_copy(update={"refresh_after_days": 20}),
                                         "data": spec.data.model_copy(update={"window_days": 7})})
    config = BacktestConfig(strategies=(Strategy.STEWARD,), label_delay=timedelta(hours=1))
    shifted = history(3, Injection(DriftKind.BASE_RATE_SHIFT, FIRST_WINDOW, None, (), 1.0), rows_per_day=400)
    first, second, third = run_backtest(refreshing, shifted, config).windows
    refit = next(a for a in first.actions if a.kind is ActionKind.RETRAINED)
    assert refit.code == RetrainKind.REFIT_THRESHOLD.value
    assert second.did(ActionKind.PROMOTED)  # the re-fit, once its rows arrived; a second re-fit there fails
    assert next(a for a in second.actions if a.kind is ActionKind.RETRAINED).code == RetrainKind.REFIT_THRESHOLD.value
    # the served re-fit is 14 days old at the third window's end, its model 21: the refresh is due, and the
    # failed re-fit does not fold it (it never tried a fresh model)
    refresh = next(a for a in third.actions if a.kind is ActionKind.RETRAINED)
    assert "scheduled refresh" in refresh.detail and refresh.code == RetrainKind.TRAIN.value


# ---------------------------------------------------------------------- bad input

def test_missing_columns_are_named(spec):
    frame = history(1).drop(columns=["default", "income"])
    with pytest.raises(BacktestError, match=r"target \['default'\]; features \['income'\]"):
        check_history(spec, frame)
    with pytest.raises(BacktestError, match=r"timestamp \['event_time'\]"):
        check_history(spec, history(1).drop(columns=["event_time"]))
    with pytest.raises(BacktestError, match=r"label time \['known_at'\]"):
        check_history(spec, history(1), "known_at")


def test_a_spec_without_a_timestamp_column_cannot_be_replayed(spec):
    with pytest.raises(BacktestError, match="timestamp_column"):
        check_history(spec.model_copy(update={"timestamp_column": None}), history(1))


def test_labels_known_before_their_rows_are_refused(spec):
    frame = history(1)
    frame["label_available_at"] = frame["event_time"] - pd.Timedelta(hours=1)
    with pytest.raises(BacktestError, match="before their event time"):
        check_history(spec, frame, "label_available_at")


def test_too_few_rows_before_the_first_window_says_what_to_do(spec):
    with pytest.raises(BacktestError, match=r"(?s)first champion cannot be trained.*min_rows.*--initial"):
        run_backtest(spec, history(1, rows_per_day=10), BacktestConfig())


def test_a_history_that_ends_before_the_first_window(spec):
    frame = history(0)
    with pytest.raises(BacktestError, match="before the first window starts"):
        run_backtest(spec, frame[frame["event_time"] < START + 2 * WEEK], BacktestConfig())


def test_load_history_reads_csv_and_explains_a_missing_file(spec, tmp_path):
    path = tmp_path / "history.csv"
    history(0).head(50).to_csv(path, index=False)
    loaded = load_history(spec, str(path), "label_available_at")
    assert len(loaded) == 50 and str(loaded["event_time"].dt.tz) == "UTC"
    with pytest.raises(BacktestError, match="not found"):
        load_history(spec, str(tmp_path / "nope.parquet"))


def test_the_cli_prints_the_summary_and_writes_the_report(spec, tmp_path):
    from typer.testing import CliRunner

    from steward.cli import app

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(spec.to_yaml())
    history(2).to_parquet(tmp_path / "history.parquet", index=False)
    out = tmp_path / "report" / "backtest.html"
    result = CliRunner().invoke(app, [
        "backtest", str(spec_path), "--data", str(tmp_path / "history.parquet"), "--cadence", "7d",
        "--initial", "4w", "--label-time-column", "label_available_at", "--out", str(out),
    ])
    assert result.exit_code == 0, result.output
    assert "every_window" in result.output and "oracle" in result.output
    page = out.read_text()
    assert "Plotly.newPlot" in page and "<h2>Windows</h2>" in page
    assert "<script src=" not in page and len(page) > 1_000_000  # plotly.js inline: no network when viewed
    import json

    document = json.loads(out.with_suffix(".json").read_text())
    assert len(document["windows"]) == 2 and document["summary"]["primary_metric"] == "roc_auc"

    bad = CliRunner().invoke(app, ["backtest", str(spec_path), "--data", str(tmp_path / "history.parquet"),
                                   "--cadence", "weekly"])
    assert bad.exit_code == 1 and "not a duration" in bad.output
