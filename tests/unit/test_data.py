from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from steward.simulation.examples import example_spec_text
from steward.spec import parse_spec
from steward.training.data import (
    DataError,
    frame_sha256,
    prepare_features,
    split_train_holdout,
    validate_training_data,
)


@pytest.fixture(scope="module")
def spec():
    document = yaml.safe_load(example_spec_text())
    document["data_validation"]["min_rows"] = 100
    return parse_spec(document)


@pytest.fixture(scope="module")
def frame(example_frame):
    return example_frame.head(2000).copy()


def failed(report) -> dict[str, str]:
    return {check.name: check.detail for check in report.failures}


def test_clean_data_passes(spec, frame):
    report = validate_training_data(frame, spec)
    assert report.passed, report.summary()


def test_missing_share_over_limit_names_feature_and_margin(spec, frame):
    broken = frame.copy()
    broken.loc[broken.index[:200], "utilization"] = np.nan  # 10% on a non-nullable feature
    report = validate_training_data(broken, spec)
    assert "missing:utilization" in failed(report)
    assert "10.0% missing (limit 5%)" in failed(report)["missing:utilization"]
    assert "missing:utilization" in report.summary()


def test_nullable_feature_may_be_missing(spec, frame):
    with_gaps = frame.copy()
    with_gaps.loc[with_gaps.index[:300], "income"] = np.nan
    assert validate_training_data(with_gaps, spec).passed


def test_out_of_range_and_unknown_category(spec, frame):
    broken = frame.copy()
    broken.loc[broken.index[:100], "age"] = 400
    broken.loc[broken.index[:100], "region"] = "atlantis"
    problems = failed(validate_training_data(broken, spec))
    assert "range:age" in problems and "categories:region" in problems
    assert "atlantis" in problems["categories:region"]


def test_class_balance_and_min_rows(spec, frame):
    one_class = frame.assign(default=0)
    assert "class_balance" in failed(validate_training_data(one_class, spec))
    assert "min_rows" in failed(validate_training_data(frame.head(50), spec))


def test_missing_columns_stop_early(spec, frame):
    report = validate_training_data(frame.drop(columns=["income", "default"]), spec)
    assert not report.passed
    assert "income" in failed(report)["schema"] and "default" in failed(report)["schema"]


def test_time_split_holds_out_the_latest_rows(spec, frame):
    split = split_train_holdout(frame.sample(frac=1, random_state=0), spec)
    assert split.method == "time"
    assert split.train["event_time"].max() <= split.holdout["event_time"].min()
    assert len(split.holdout) == pytest.approx(0.2 * len(frame), abs=1)


def test_random_split_without_timestamp(spec, frame):
    no_time = spec.model_copy(update={"timestamp_column": None})
    split = split_train_holdout(frame, no_time)
    assert split.method == "random" and split.train_window is None


def test_prepare_features_normalises_types(spec, frame):
    raw = frame.head(3).copy()
    raw["age"] = raw["age"].astype(str)
    raw.loc[raw.index[0], "region"] = None
    prepared = prepare_features(raw, spec)
    assert list(prepared.columns) == spec.feature_names
    assert prepared["age"].dtype == np.float64
    assert pd.isna(prepared["region"].iloc[0]) and prepared["region"].iloc[0] is not None


def test_prepare_features_rejects_text_in_numeric(spec, frame):
    raw = frame.head(3).copy().astype({"age": object})
    raw.loc[raw.index[1], "age"] = "forty"
    with pytest.raises(DataError, match="age.*forty"):
        prepare_features(raw, spec)


def test_frame_hash_is_content_based(frame):
    assert frame_sha256(frame) == frame_sha256(frame.copy().reset_index(drop=True))
    changed = frame.copy()
    changed.iloc[0, changed.columns.get_loc("age")] += 1
    assert frame_sha256(changed) != frame_sha256(frame)


def production_spec(**data):
    document = yaml.safe_load(example_spec_text())
    document["data"] = {"kind": "production", **data}
    document["data_validation"]["min_rows"] = 500
    return parse_spec(document)


@pytest.fixture(scope="module")
def drifted_history():
    """30 days of 300 rows; from day 22 late payments and debt ratio work the other way round."""
    from steward.simulation.injections import DriftKind, Injection
    from steward.simulation.scenario import credit_default_scenario

    start = pd.Timestamp("2026-02-01", tz="UTC")
    drift = Injection(DriftKind.CONCEPT_DRIFT, start + pd.Timedelta(days=22), None,
                      ("num_late_payments", "debt_ratio"), 1.0)
    scenario = credit_default_scenario(rows_per_day=300, start=start, injections=(drift,))
    frame = scenario.generate(start, start + pd.Timedelta(days=30)).drop(columns=["label_available_at"])
    return frame, start + pd.Timedelta(days=30)


def test_training_window_is_chosen_by_evidence_after_a_concept_drift(drifted_history):
    from steward.training.windows import WindowCode, choose_training_window

    frame, end = drifted_history
    spec = production_spec(window_days=30, candidate_window_days=[7])
    choice = choose_training_window(spec, frame, end.to_pydatetime())
    assert choice.days == 7  # the short window has learnt the reversed effect; 30 days mostly the old world
    codes = {score.days: score.code for score in choice.scores}
    assert codes == {7: WindowCode.CHOSEN, 30: WindowCode.COMPARED}
    thirty = next(score for score in choice.scores if score.days == 30)
    assert thirty.against_chosen is not None and thirty.against_chosen.upper < 0
    assert "training window 7 d chosen on roc_auc" in choice.describe()


def test_a_window_with_too_little_data_gives_way_to_the_next_longer_one(drifted_history):
    from steward.training.windows import WindowCode, choose_training_window

    frame, end = drifted_history
    spec = production_spec(window_days=1, candidate_window_days=[7])  # one day is 300 rows, 500 needed
    choice = choose_training_window(spec, frame, end.to_pydatetime())
    assert choice.days == 7 and len(choice.frame) == 7 * 300
    skipped = choice.scores[0]
    assert (skipped.days, skipped.code) == (1, WindowCode.TOO_LITTLE_DATA) and "min_rows" in skipped.reason
    assert choice.describe().startswith("training window 7 d, the only one with usable data (1 d: 300 rows, skipped")
    with pytest.raises(DataError, match="no candidate training window has usable data"):
        choose_training_window(production_spec(window_days=1), frame, end.to_pydatetime())


def test_candidate_windows_need_production_data():
    from steward.spec import SpecError

    document = yaml.safe_load(example_spec_text())
    document["data"]["candidate_window_days"] = [7, 14]
    with pytest.raises(SpecError, match="candidate_window_days compares windows of production data"):
        parse_spec(document)
    assert production_spec(window_days=14, candidate_window_days=[28, 7]).data.window_candidates == (7, 14, 28)
