"""The simulator must be deterministic and every injected problem must show up exactly in its window."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import Scenario, credit_default_scenario
from steward.simulation.world import CATEGORIES

START = pd.Timestamp("2026-01-01", tz="UTC")
ONSET = START + pd.Timedelta(days=2, hours=6)
END = START + pd.Timedelta(days=4)


def small(*injections: Injection, **overrides) -> Scenario:
    return Scenario(rows_per_day=1000, population=5000, injections=injections, **overrides)


def inject(kind: DriftKind, features: tuple[str, ...], magnitude: float, end=None) -> Injection:
    return Injection(kind=kind, start=ONSET, end=end, features=features, magnitude=magnitude)


def split(frame: pd.DataFrame, at: pd.Timestamp = ONSET) -> tuple[pd.DataFrame, pd.DataFrame]:
    after = frame["event_time"] >= at
    return frame[~after], frame[after]


def test_same_call_gives_identical_frames_and_seed_matters():
    a = small().generate(START, END)
    pd.testing.assert_frame_equal(a, small().generate(START, END))
    assert not a["income"].equals(small(seed=8).generate(START, END)["income"])


def test_day_by_day_equals_whole_range():
    scenario = small(inject(DriftKind.OUTLIERS, ("income",), 0.1))
    whole = scenario.generate(START, END)
    days = pd.concat([scenario.day(d) for d in range(4)], ignore_index=True)
    pd.testing.assert_frame_equal(whole, days)
    part_start, part_end = START + pd.Timedelta(hours=30), START + pd.Timedelta(days=3, hours=2)
    part = scenario.generate(part_start, part_end)
    expected = whole[(whole["event_time"] >= part_start) & (whole["event_time"] < part_end)]
    pd.testing.assert_frame_equal(part, expected.reset_index(drop=True))
    pd.testing.assert_frame_equal(scenario.day(START + pd.Timedelta(days=1, hours=5)), scenario.day(1))


def test_columns_types_and_ranges():
    scenario = small(extra_numeric=3)
    frame = scenario.generate(START, START + pd.Timedelta(days=3))
    assert list(frame.columns) == [
        "entity_id",
        "event_time",
        *scenario.feature_names,
        "default",
        "label_available_at",
    ]
    assert scenario.feature_names[-3:] == ["x01", "x02", "x03"]
    assert scenario.numeric_features[-1] == "x03" and scenario.target == "default"
    assert len(frame) == 3000 and frame["event_time"].is_monotonic_increasing
    assert str(frame["event_time"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["label_available_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["entity_id"].str.fullmatch(r"cust-\d{6}").all()
    assert frame["entity_id"].nunique() < len(frame)
    assert frame["event_time"].dt.hour.nunique() == 24
    ranges = {
        "age": (18, 90),
        "debt_ratio": (0, 3),
        "utilization": (0, 1.5),
        "months_employed": (0, 600),
        "num_late_payments": (0, 30),
        "num_open_accounts": (0, 50),
    }
    for name, (low, high) in ranges.items():
        values = frame[name].dropna()
        assert values.between(low, high).all(), name
    for name in ("age", "months_employed", "num_late_payments", "num_open_accounts"):
        values = frame[name].dropna()
        assert (values == values.round()).all(), name
    assert (frame["income"].dropna() > 0).all() and (frame["credit_limit"] > 0).all()
    assert frame[scenario.numeric_features].dtypes.eq("float64").all()
    assert 0.003 < frame["income"].isna().mean() < 0.02
    assert 0.01 < frame["months_employed"].isna().mean() < 0.035
    for name in scenario.categorical_features:
        assert set(frame[name]) == set(CATEGORIES[name]), name
    assert frame["default"].dtype == np.int64 and set(frame["default"]) == {0, 1}
    assert (
        np.corrcoef(np.log(frame["income"].fillna(frame["income"].median())), np.log(frame["credit_limit"]))[
            0, 1
        ]
        > 0.5
    )
    assert frame["utilization"].corr(frame["num_late_payments"]) > 0.2
    delay = frame["label_available_at"] - frame["event_time"]
    assert (delay >= pd.Timedelta(0)).all()
    assert delay.min() >= pd.Timedelta(days=2) and delay.max() <= pd.Timedelta(days=4) and delay.nunique() > 1


def test_base_rate_and_true_probability():
    scenario = credit_default_scenario(population=20_000)
    frame = scenario.generate_rows(20_000)
    assert 0.15 <= frame["default"].mean() <= 0.25
    probability = scenario.true_default_probability(frame)
    assert probability.shape == (20_000,) and ((probability > 0) & (probability < 1)).all()
    assert abs(probability.mean() - frame["default"].mean()) < 0.015
    assert (
        frame.loc[probability > 0.5, "default"].mean() > frame.loc[probability < 0.1, "default"].mean() + 0.4
    )
    with pytest.raises(ValueError, match="lacks feature columns"):
        scenario.true_default_probability(frame.drop(columns=["income"]))


def test_generate_rows_is_exact_deterministic_and_stamped_at():
    scenario = small(extra_numeric=2)
    at = START + pd.Timedelta(days=10)
    rows = scenario.generate_rows(123, at=at)
    assert len(rows) == 123 and (rows["event_time"] == at).all()
    pd.testing.assert_frame_equal(rows, scenario.generate_rows(123, at=at))
    assert not rows["income"].equals(scenario.generate_rows(123, at=at + pd.Timedelta(days=1))["income"])
    assert len(scenario.generate_rows(0)) == 0
    assert scenario.generate(END, START).empty


def test_timeline_and_active_injections():
    late = Injection(DriftKind.MISSING_SPIKE, "2026-03-01", "2026-03-05", ("income",), 0.3)
    early = Injection(
        DriftKind.COVARIATE_SHIFT, pd.Timestamp("2026-02-01 01:00", tz="Europe/Berlin"), None, "age", 1.0
    )
    scenario = small(late, early)
    assert scenario.timeline() == [early, late]
    assert early.start == pd.Timestamp("2026-02-01 00:00", tz="UTC") and early.features == ("age",)
    assert scenario.active_injections("2026-01-15") == []
    assert scenario.active_injections("2026-03-02") == [early, late]
    assert scenario.active_injections("2026-03-05") == [early]


def test_numeric_covariate_shift_moves_mean_after_onset_only():
    clean = small().generate(START, END)
    frame = small(inject(DriftKind.COVARIATE_SHIFT, ("age", "income"), 1.0)).generate(START, END)
    before, after = split(frame)
    clean_before, clean_after = split(clean)
    pd.testing.assert_frame_equal(before, clean_before)
    assert after["age"].mean() - clean_after["age"].mean() == pytest.approx(15.0, abs=2.0)
    ratio = np.log(after["income"]).mean() - np.log(clean_after["income"]).mean()
    assert ratio == pytest.approx(0.559, abs=0.02)
    assert after["age"].between(18, 90).all()
    assert after["default"].mean() < clean_after["default"].mean()


def test_categorical_covariate_shift_moves_mass_to_rarest_category():
    frame = small(inject(DriftKind.COVARIATE_SHIFT, ("region",), 2.0)).generate(START, END)
    before, after = split(frame)
    assert (before["region"] == "west").mean() < 0.25
    assert (after["region"] == "west").mean() > 0.55


def test_missing_spike_sets_share_missing():
    injection = inject(
        DriftKind.MISSING_SPIKE, ("utilization", "education"), 0.4, end=ONSET + pd.Timedelta(days=1)
    )
    frame = small(injection).generate(START, END)
    before, after = split(frame)
    during, after_end = split(after, injection.end)
    assert before["utilization"].isna().sum() == 0 and before["education"].isna().sum() == 0
    assert after_end["utilization"].isna().sum() == 0
    assert during["utilization"].isna().mean() == pytest.approx(0.4, abs=0.05)
    assert during["education"].isna().mean() == pytest.approx(0.4, abs=0.05)
    assert during["education"].dropna().isin(CATEGORIES["education"]).all()


def test_unseen_category_appears_after_onset():
    frame = small(inject(DriftKind.UNSEEN_CATEGORY, ("region", "employment_type"), 0.2)).generate(START, END)
    before, after = split(frame)
    assert set(before["region"]) == set(CATEGORIES["region"])
    assert set(before["employment_type"]) == set(CATEGORIES["employment_type"])
    assert (after["region"] == "overseas").mean() == pytest.approx(0.2, abs=0.04)
    assert (after["employment_type"] == "contractor").mean() == pytest.approx(0.2, abs=0.04)


def test_outliers_are_extreme_and_leave_labels_alone():
    clean = small().generate(START, END)
    frame = small(inject(DriftKind.OUTLIERS, ("credit_limit",), 0.05)).generate(START, END)
    before, after = split(frame)
    clean_before, clean_after = split(clean)
    threshold = clean["credit_limit"].median() + 9 * clean["credit_limit"].std()
    assert (before["credit_limit"] > threshold).sum() == 0
    assert (after["credit_limit"] > threshold).mean() == pytest.approx(0.05, abs=0.02)
    pd.testing.assert_series_equal(frame["default"], clean["default"])
    unchanged = [c for c in frame.columns if c != "credit_limit"]
    pd.testing.assert_frame_equal(frame[unchanged], clean[unchanged])


def test_concept_drift_changes_truth_not_inputs():
    drift = inject(DriftKind.CONCEPT_DRIFT, ("utilization", "num_late_payments"), 1.0)
    scenario, clean_scenario = small(drift), small()
    frame, clean = scenario.generate(START, END), clean_scenario.generate(START, END)
    inputs = [c for c in frame.columns if c != "default"]
    pd.testing.assert_frame_equal(frame[inputs], clean[inputs])
    before, after = split(frame)
    pd.testing.assert_series_equal(before["default"], split(clean)[0]["default"])
    assert not np.allclose(
        scenario.true_default_probability(frame, at=END),
        clean_scenario.true_default_probability(frame, at=END),
    )
    np.testing.assert_allclose(
        scenario.true_default_probability(frame, at=START),
        clean_scenario.true_default_probability(frame, at=START),
    )
    np.testing.assert_allclose(
        scenario.true_default_probability(after), scenario.true_default_probability(after, at=END)
    )
    assert before["utilization"].corr(before["default"]) > 0.15
    assert after["utilization"].corr(after["default"]) < -0.1


def test_injection_only_touches_its_window():
    injection = inject(DriftKind.COVARIATE_SHIFT, ("debt_ratio",), -2.0, end=ONSET + pd.Timedelta(hours=12))
    frame, clean = small(injection).generate(START, END), small().generate(START, END)
    changed = frame["debt_ratio"] != clean["debt_ratio"]
    times = frame.loc[changed, "event_time"]
    assert changed.any() and times.min() >= injection.start and times.max() < injection.end


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"features": ("salary",)}, r"unknown feature 'salary'; allowed: numeric age, income"),
        ({"features": ()}, "name at least one feature"),
        ({"features": ("age", "age")}, "duplicate feature"),
        ({"kind": "label_flip"}, "unknown kind 'label_flip'; allowed: covariate_shift"),
        ({"magnitude": 1.5}, r"1.5 is out of range for missing_spike; it is a share of rows in \(0, 1\]"),
        ({"magnitude": 0.0}, "out of range"),
        ({"magnitude": "lots"}, "not a number"),
        ({"kind": DriftKind.COVARIATE_SHIFT, "magnitude": 6.0}, r"0 < \|magnitude\| <= 5"),
        ({"kind": DriftKind.CONCEPT_DRIFT, "magnitude": -0.5}, r"strength in \(0, 1\]"),
        ({"end": "2026-01-01"}, r"end .* must be after start .*end=None"),
        ({"start": "not a date"}, "Injection.start: cannot read"),
        ({"kind": DriftKind.UNSEEN_CATEGORY, "features": ("age",)}, "needs categorical features"),
        ({"kind": DriftKind.OUTLIERS, "features": ("region",)}, "needs numeric features"),
    ],
)
def test_bad_injection_is_rejected_with_a_clear_message(kwargs, message):
    arguments = {
        "kind": DriftKind.MISSING_SPIKE,
        "start": "2026-02-01",
        "end": None,
        "features": ("age",),
        "magnitude": 0.5,
    } | kwargs
    with pytest.raises(ValueError, match=message):
        Injection(**arguments)


def test_bad_scenario_is_rejected():
    extra = Injection(DriftKind.OUTLIERS, "2026-02-01", None, ("x05",), 0.1)
    with pytest.raises(ValueError, match=r"names 'x05' but the scenario has extra_numeric=2"):
        Scenario(extra_numeric=2, injections=(extra,))
    Scenario(extra_numeric=5, injections=(extra,))
    with pytest.raises(ValueError, match="extra_numeric: need an int in 0..99"):
        Scenario(extra_numeric=100)
    with pytest.raises(ValueError, match="label_delay: need a duration >= 0"):
        Scenario(label_delay=pd.Timedelta(days=-1))
    with pytest.raises(ValueError, match="rows_per_day: need an int >= 1"):
        Scenario(rows_per_day=0)


def test_calendar_columns_are_read_off_the_clock_and_leave_the_rest_alone():
    plain, calendar = small(), small(calendar_features=True)
    frame = calendar.generate(START, END)
    assert calendar.calendar_columns == ["day_of_week", "day_of_month"]
    assert calendar.feature_names[-2:] == ["day_of_week", "day_of_month"]
    times = frame["event_time"]
    assert (frame["day_of_week"] == times.dt.dayofweek).all() and (frame["day_of_month"] == times.dt.day).all()
    pd.testing.assert_frame_equal(frame.drop(columns=calendar.calendar_columns), plain.generate(START, END))
    np.testing.assert_allclose(calendar.true_default_probability(frame), plain.true_default_probability(frame))


def test_weekly_cycle_moves_the_seasonal_feature_and_the_default_rate_with_the_weekday():
    scenario = Scenario(rows_per_day=4000, population=5000, weekly_cycle=1.0)
    frame = scenario.generate(START, START + pd.Timedelta(days=14))
    assert scenario.seasonal_columns == ["weekly_activity"]
    by_day = frame.groupby(frame["event_time"].dt.dayofweek)
    activity, rate = by_day["weekly_activity"].mean(), by_day["default"].mean()
    assert activity.idxmax() == 5 and activity[5] - activity[1] > 1.5  # Saturday high, Tuesday low
    assert rate[5] > rate[1] + 0.03
    assert frame["weekly_activity"].std() == pytest.approx(np.sqrt(1 + 0.5), abs=0.1)
    plain = Scenario(rows_per_day=4000, population=5000).generate(START, START + pd.Timedelta(days=1))
    pd.testing.assert_series_equal(frame["income"].iloc[:4000], plain["income"])


def test_ramped_covariate_shift_grows_linearly_to_its_magnitude():
    ramp = pd.Timedelta(days=10)
    injection = Injection(DriftKind.COVARIATE_SHIFT, START, None, ("age",), 1.0, ramp=ramp)
    frame = Scenario(rows_per_day=2000, population=5000, injections=(injection,)).generate(
        START, START + pd.Timedelta(days=14)
    )
    clean = Scenario(rows_per_day=2000, population=5000).generate(START, START + pd.Timedelta(days=14))
    moved = (frame["age"] - clean["age"]).groupby(frame["event_time"].dt.floor("D")).mean()
    assert moved.iloc[0] < 1.5 and moved.iloc[4] == pytest.approx(0.45 * 15, abs=1.5)
    assert moved.iloc[12] == pytest.approx(15, abs=1.5)
    assert injection.stream_key() != Injection(DriftKind.COVARIATE_SHIFT, START, None, ("age",), 1.0).stream_key()


def test_ramped_concept_drift_reaches_full_strength_at_the_end_of_the_ramp():
    drift = Injection(DriftKind.CONCEPT_DRIFT, ONSET, None, ("utilization",), 1.0, ramp=pd.Timedelta(days=1))
    sudden = Injection(DriftKind.CONCEPT_DRIFT, ONSET, None, ("utilization",), 1.0)
    frame = small().generate(START, END)
    gradual, full = small(drift), small(sudden)
    np.testing.assert_allclose(
        gradual.true_default_probability(frame, at=ONSET + pd.Timedelta(days=1)),
        full.true_default_probability(frame, at=ONSET),
    )
    halfway = gradual.true_default_probability(frame, at=ONSET + pd.Timedelta(hours=12))
    clean = small().true_default_probability(frame, at=ONSET)
    assert 0 < np.abs(halfway - clean).mean() < np.abs(full.true_default_probability(frame, at=ONSET) - clean).mean()


def test_base_rate_shift_raises_the_default_rate_and_keeps_the_ranking():
    shifted = small(Injection(DriftKind.BASE_RATE_SHIFT, ONSET, None, (), 1.5))
    frame = shifted.generate(START, END)
    before, after = split(frame)
    assert after["default"].mean() > before["default"].mean() + 0.15
    at_end = shifted.true_default_probability(frame, at=END)
    clean = small().true_default_probability(frame, at=END)
    assert (at_end > clean).all() and (np.argsort(at_end) == np.argsort(clean)).all()
    inputs = [c for c in frame.columns if c != "default"]
    pd.testing.assert_frame_equal(frame[inputs], small().generate(START, END)[inputs])


def test_traffic_drop_thins_its_days_and_only_those():
    drop = Injection(DriftKind.TRAFFIC_DROP, START + pd.Timedelta(days=1), START + pd.Timedelta(days=3), (), 0.9)
    frame = small(drop).generate(START, END)
    per_day = frame.groupby(frame["event_time"].dt.floor("D")).size()
    assert per_day.iloc[0] == per_day.iloc[3] == 1000
    assert 60 < per_day.iloc[1] < 140 and 60 < per_day.iloc[2] < 140
    assert len(small(drop).generate_rows(500, at=START + pd.Timedelta(days=2))) == 500
    kept = frame[frame["event_time"] < START + pd.Timedelta(days=1)]
    pd.testing.assert_frame_equal(kept, small().day(0))


def test_label_delay_zero_makes_labels_available_at_once():
    frame = small(label_delay=pd.Timedelta(0)).generate(START, START + pd.Timedelta(days=1))
    assert (frame["label_available_at"] == frame["event_time"]).all()
    week = small(label_delay=pd.Timedelta(days=7)).generate(START, START + pd.Timedelta(days=1))
    delay = week["label_available_at"] - week["event_time"]
    assert delay.min() >= pd.Timedelta(days=5.25) and delay.max() <= pd.Timedelta(days=8.75)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": DriftKind.BASE_RATE_SHIFT, "features": ("age",)}, "names no feature; give features=()"),
        ({"kind": DriftKind.TRAFFIC_DROP, "features": (), "magnitude": 1.0}, r"dropped in \(0, 1\)"),
        ({"ramp": pd.Timedelta(0)}, r"ramp: need a duration > 0"),
        ({"ramp": "soon"}, r"ramp: need a duration > 0"),
    ],
)
def test_new_injection_kinds_reject_bad_input(kwargs, message):
    arguments = {"kind": DriftKind.MISSING_SPIKE, "start": "2026-02-01", "end": None, "features": ("age",),
                 "magnitude": 0.5} | kwargs
    with pytest.raises(ValueError, match=message):
        Injection(**arguments)


def test_bad_weekly_cycle_is_rejected():
    with pytest.raises(ValueError, match="weekly_cycle: need an amplitude in 0..5"):
        Scenario(weekly_cycle=-1.0)
