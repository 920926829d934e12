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


# --- labels of any type (positive_label, classes) -----------------------------------------------------------

from sklearn import metrics as skm  # noqa: E402

from steward.findings import CheckStatus  # noqa: E402
from steward.training.data import RANDOM_SPLIT_FINDING, SplitMethod  # noqa: E402
from steward.training.labels import LabelError, binary_target, label_key, same_labels  # noqa: E402


def relabelled(spec, frame, mapping: dict, **spec_fields):
    """The frame with the 0/1 target mapped to other label values, and the spec saying so."""
    return frame.assign(default=frame["default"].map(mapping)), spec.model_copy(update=spec_fields)


@pytest.fixture(scope="module")
def small_spec(quick_spec):
    return quick_spec.model_copy(update={"data_validation": quick_spec.data_validation.model_copy(
        update={"min_rows": 100})})


@pytest.fixture(scope="module")
def baseline(small_spec, frame):
    from tests.support.models import train_spec

    return train_spec(small_spec, frame, "0/1 labels")


@pytest.mark.parametrize(
    ("mapping", "positive"),
    [({0: "good", 1: "bad"}, "bad"), ({0: 1, 1: 2}, 2), ({0: False, 1: True}, None), ({0: "no", 1: "yes"}, "yes")],
    ids=["strings", "one-two", "booleans", "yes-no"],
)
def test_any_label_type_trains_and_scores_like_zero_one(small_spec, frame, baseline, mapping, positive):
    from steward.training.validation import Contender, validate_candidate
    from tests.support.models import train_spec

    data, spec = relabelled(small_spec, frame, mapping, positive_label=positive)
    assert validate_training_data(data, spec).passed
    trained = train_spec(spec, data, "relabelled")
    holdout, model = trained.holdout_frame, trained.estimator
    assert {label_key(c) for c in model.classes_} == {label_key(v) for v in mapping.values()}
    positive_class = mapping[1] if positive is None else positive
    is_positive = (holdout["default"] == positive_class).to_numpy()
    score = model.predict_proba(holdout[spec.feature_names])[:, list(model.classes_).index(positive_class)]
    predicted = model.predict(holdout[spec.feature_names]) == positive_class
    expected = {"roc_auc": skm.roc_auc_score(is_positive, score), "precision": skm.precision_score(is_positive, predicted),
                "recall": skm.recall_score(is_positive, predicted), "brier": skm.brier_score_loss(is_positive, score)}
    assert {m: trained.metrics[m] for m in expected} == pytest.approx(expected)
    assert trained.metrics["roc_auc"] == pytest.approx(baseline.metrics["roc_auc"], abs=0.03)  # learns as well
    report = validate_candidate(spec, Contender(trained.estimator, "2", {}), Contender(trained.estimator, "1", {}),
                                trained.holdout_frame)
    assert report.candidate_metrics == pytest.approx(trained.metrics)  # the gate reads labels as training did
    primary = next(c for c in report.checks if c.name == "metric_vs_champion")
    assert primary.status is not CheckStatus.FAILED  # the same model against itself (400 rows: inconclusive)


def test_positive_label_picks_the_class_the_metrics_are_about(small_spec, frame, baseline):
    from tests.support.models import train_spec

    data, bad_spec = relabelled(small_spec, frame, {0: "good", 1: "bad"}, positive_label="bad")
    good_spec = bad_spec.model_copy(update={"positive_label": "good"})
    bad, good = train_spec(bad_spec, data, "bad is positive"), train_spec(good_spec, data, "good is positive")
    assert good.metrics["roc_auc"] == pytest.approx(bad.metrics["roc_auc"])  # the same model; AUC is symmetric
    assert good.metrics["recall"] > 0.9 > bad.metrics["recall"]  # most rows are good: recall of the other class


def test_string_target_without_positive_label_is_refused_before_training(small_spec, frame):
    data, spec = relabelled(small_spec, frame, {0: "good", 1: "bad"})
    report = validate_training_data(data, spec)
    assert failed(report)["labels"].startswith("target 'default' has classes ['bad', 'good']: set positive_label")
    with pytest.raises(LabelError, match="set positive_label"):
        binary_target(spec, ["good", "bad"])


def test_label_outside_the_spec_classes_is_refused(small_spec, frame):
    data, spec = relabelled(small_spec, frame, {0: "good", 1: "bad"}, positive_label="bad", classes=("good", "bad"))
    assert validate_training_data(data, spec).passed
    data.loc[data.index[:5], "default"] = "Bad"
    detail = failed(validate_training_data(data, spec))["labels"]
    assert detail == ("target 'default' has values ['Bad'] that are not in the spec's classes ['good', 'bad']: "
                      "fix the data or add them to `classes`")


def test_positive_label_absent_from_the_data_and_too_many_classes(small_spec, frame):
    data, spec = relabelled(small_spec, frame, {0: "good", 1: "bad"}, positive_label="fraud")
    assert "positive_label 'fraud' never occurs" in failed(validate_training_data(data, spec))["labels"]
    three = data.assign(default=np.resize(np.array(["a", "b", "c"]), len(data)))
    assert "has 3 classes" in failed(validate_training_data(three, spec))["labels"]


def test_spec_refuses_a_positive_label_outside_its_classes(example_spec):
    from steward.spec import SpecError

    document = yaml.safe_load(example_spec.to_yaml())
    document.update(positive_label="fraud", classes=["good", "bad"])
    with pytest.raises(SpecError, match=r"positive_label 'fraud' is not one of classes \['good', 'bad'\]"):
        parse_spec(document)
    document.update(task="regression", classes=None)
    with pytest.raises(SpecError, match="the task is regression"):
        parse_spec(document)


def test_label_keys_match_what_the_prediction_log_stores():
    from steward.store.records import label_text

    for value in (True, False, 1, 0, 2, 1.0, np.int64(2), np.float64(0.0), np.bool_(True), "bad"):
        assert label_key(value) == label_text(value), value
    assert same_labels([True, "1", 2.0, "good"], ["true", 1, "2", "good"]).all()


# --- the split without a timestamp ------------------------------------------------------------------------------


def test_random_split_is_said_and_row_order_can_stand_in_for_time(spec, frame):
    no_time = spec.model_copy(update={"timestamp_column": None})
    report = validate_training_data(frame, no_time)
    assert report.passed and report.findings == (RANDOM_SPLIT_FINDING,)
    assert "note: no timestamp_column and no data.order_by" in report.summary()

    document = yaml.safe_load(no_time.to_yaml())
    document["data"]["order_by"] = "row"
    by_row = parse_spec(document)
    assert validate_training_data(frame, by_row).findings == ()
    split = split_train_holdout(frame, by_row)
    assert split.method is SplitMethod.ROW_ORDER
    assert list(split.holdout.index) == list(frame.index[-len(split.holdout):])  # the file's last rows

    document["data"]["order_by"] = "random"
    assert validate_training_data(frame, parse_spec(document)).findings == ()
    document["timestamp_column"] = "event_time"
    from steward.spec import SpecError

    with pytest.raises(SpecError, match="data.order_by orders rows without a timestamp"):
        parse_spec(document)


def test_logged_outcomes_read_the_positive_label_and_turn_the_score_round():
    from steward.monitoring.health.outcomes import metric_value, outcomes
    from steward.spec import Task

    # the log keeps text and the score of the model's last class ("good" of ["bad", "good"])
    labelled = pd.DataFrame({"label": ["bad", "good", "bad", "good"], "prediction": ["bad", "good", "good", "good"],
                             "score": [0.2, 0.9, 0.6, 0.7]})
    bad = outcomes(labelled, Task.BINARY_CLASSIFICATION, "bad")
    assert bad.y.tolist() == [1, 0, 1, 0] and bad.prediction.tolist() == [1, 0, 0, 0]
    assert bad.score.tolist() == pytest.approx([0.8, 0.1, 0.4, 0.3])
    assert metric_value("recall", bad) == 0.5 and metric_value("precision", bad) == 1.0
    good = outcomes(labelled, Task.BINARY_CLASSIFICATION)
    assert good.y.tolist() == [0, 1, 0, 1] and good.score.tolist() == [0.2, 0.9, 0.6, 0.7]
    assert metric_value("roc_auc", bad) == metric_value("roc_auc", good)
    booleans = pd.DataFrame({"label": ["1", "0"], "prediction": ["1", "1"], "score": [0.8, 0.6]})
    assert outcomes(booleans, Task.BINARY_CLASSIFICATION, True).y.tolist() == [1, 0]
