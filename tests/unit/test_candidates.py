"""The candidate builders of the canary scenarios: each bad candidate is bad in its one way, and saves."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from steward.simulation.candidates import (
    _RECENT_CALLS,
    TRUSTED_TYPES,
    CandidateKind,
    ErrorProneClassifier,
    LoadSensitiveClassifier,
    SlowerClassifier,
    burn,
    candidate_world,
    inverted_labels,
    noisy_labels,
)
from steward.training.data import prepare_features


@pytest.fixture(scope="module")
def features(quick_model, example_spec) -> pd.DataFrame:
    return prepare_features(quick_model.holdout_frame, example_spec)


def test_error_prone_candidate_fails_exactly_on_its_categorys_rows(quick_model, features):
    wrapped = ErrorProneClassifier(quick_model.estimator)
    east, elsewhere = features[features["region"] == "east"], features[features["region"] != "east"]
    assert len(east) and len(elsewhere)
    with pytest.raises(KeyError, match="region"):
        wrapped.predict_proba(east.head(1))
    np.testing.assert_array_equal(wrapped.predict_proba(elsewhere), quick_model.estimator.predict_proba(elsewhere))
    assert list(wrapped.classes_) == list(quick_model.estimator.classes_)


def test_slow_candidates_answer_like_their_model_and_the_load_sensitive_one_works_more_under_concurrency(
    quick_model, features
):
    slower = SlowerClassifier(quick_model.estimator, work_units=5)
    np.testing.assert_array_equal(slower.predict_proba(features), quick_model.estimator.predict_proba(features))
    sensitive = LoadSensitiveClassifier(quick_model.estimator, work_units=1, window_seconds=60)
    for _ in range(3):
        sensitive.predict_proba(features.head(1))
    assert len(_RECENT_CALLS[id(sensitive)]) == 3  # the next call does 3 units of work: one per recent call
    assert burn(2) == pytest.approx(2 * burn(1))


def test_wrappers_save_with_skops_when_trusted(quick_model):
    import skops.io

    for wrapper in (ErrorProneClassifier(quick_model.estimator), SlowerClassifier(quick_model.estimator, 3),
                    LoadSensitiveClassifier(quick_model.estimator, 3)):
        blob = skops.io.dumps(wrapper)
        untrusted = set(skops.io.get_untrusted_types(data=blob))
        assert f"steward.simulation.candidates.{type(wrapper).__name__}" in untrusted
        assert untrusted - set(TRUSTED_TYPES) <= {"numpy.dtype", "sklearn.tree._tree.Tree",
                                                   "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
                                                   "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
                                                   "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss.link.LogitLink",
                                                   "sklearn._loss._loss.CyHalfBinomialLoss"}


def test_label_faults_and_the_drifted_world():
    frame = pd.DataFrame({"default": [0, 1] * 500})
    assert (inverted_labels(frame, "default")["default"] == 1 - frame["default"]).all()
    flipped = (noisy_labels(frame, "default", 0.2, seed=1)["default"] != frame["default"]).mean()
    assert 0.15 < flipped < 0.25
    drifted = candidate_world(CandidateKind.GOOD_AFTER_CONCEPT_DRIFT, seed=7, rows_per_day=200)
    steady = candidate_world(CandidateKind.GOOD, seed=7, rows_per_day=200)
    assert steady.champion_rows.equals(drifted.champion_rows)  # the drift starts after the champion's days
    assert not steady.candidate_rows.equals(drifted.candidate_rows)
    assert CandidateKind.SLOWER.bad and not CandidateKind.GOOD_AFTER_CONCEPT_DRIFT.bad
