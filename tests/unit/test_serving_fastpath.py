"""The gateway's compiled scoring path gives bit for bit what the fitted pipeline gives."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from steward.estimators import build_estimator, tabular_pipeline
from steward.serving.arms import LoadedArm, ModelInput, check_rows, loaded_arm
from steward.serving.inference import Job, score_jobs
from steward.serving.schema import InputSchema, Payload
from steward.simulation.examples import example_spec_text
from steward.spec import ModelSpec, OutOfRangePolicy, Task, parse_spec
from steward.training.data import DataError, prepare_arrays, prepare_features


def example_spec(**changes) -> ModelSpec:
    document = yaml.safe_load(example_spec_text())
    document.update(changes)
    return parse_spec(document)


def arm_of(estimator, spec: ModelSpec, version: str = "1") -> LoadedArm:
    schema = InputSchema(spec, out_of_range=OutOfRangePolicy.ALLOW)
    return loaded_arm(spec.name, version, "digest", estimator, spec, schema)


def plain(arm: LoadedArm) -> LoadedArm:
    return dataclasses.replace(arm, compiled=None, plain_reason="test")


def request_columns(spec: ModelSpec, frame: pd.DataFrame, start: int, n: int, seed: int) -> dict[str, list]:
    """Validated request columns from the example rows, with missing values and unseen categories mixed in."""
    part = frame.iloc[start:start + n][spec.feature_names].astype(object)
    records = part.where(part.notna(), None).to_dict(orient="records")
    rng = np.random.default_rng(seed)
    for record in records:
        for feature in spec.features:
            draw = rng.random()
            if feature.nullable and draw < 0.2:
                record[feature.name] = None
            elif feature.categories and draw > 0.9:
                record[feature.name] = f"unseen-{int(draw * 1000) % 3}"
    payload = Payload({name: [r[name] for r in records] for name in spec.feature_names}, len(records))
    return InputSchema(spec, out_of_range=OutOfRangePolicy.ALLOW).validate(payload)


def same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def assert_same_scores(compiled: LoadedArm, reference: LoadedArm, prepared: ModelInput) -> None:
    got, expected = compiled.predict(prepared), reference.predict(prepared)
    assert got.predictions == expected.predictions
    assert got.labels == expected.labels
    assert same(got.scores, expected.scores)
    if expected.probabilities is not None:
        assert same(got.probabilities, expected.probabilities)


@pytest.fixture(scope="module")
def frame(example_frame):
    return example_frame.head(3000).reset_index(drop=True)


def _fit(spec: ModelSpec, frame: pd.DataFrame, target: pd.Series, estimator=None):
    model = estimator if estimator is not None else build_estimator(spec)
    return model.fit(prepare_features(frame, spec), target)


@pytest.fixture(scope="module")
def models(frame):
    """The example model (HistGradientBoosting), a logistic regression, a Ridge regression, a
    multiclass model, and a hand-built pipeline using more of what the compiler replays."""
    example = example_spec()
    logistic = example_spec(estimator={"factory": "steward.estimators:tabular_pipeline",
                                       "params": {"estimator": "sklearn.linear_model.LogisticRegression",
                                                  "max_iter": 500}})
    regression = logistic.model_copy(update={"task": Task.REGRESSION})
    multiclass = logistic.model_copy(update={"task": Task.MULTICLASS_CLASSIFICATION})
    target = frame[example.target]
    three_classes = pd.cut(frame["debt_ratio"], [-1, 0.3, 0.6, 10], labels=["low", "mid", "high"]).astype(str)
    numeric, categorical = example.numeric_features, example.categorical_features
    custom = Pipeline([
        ("preprocess", ColumnTransformer(
            [("numeric", Pipeline([("impute", SimpleImputer(strategy="mean")),
                                   ("scale", StandardScaler(with_mean=False))]), numeric),
             ("categorical", Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                                       ("encode", OneHotEncoder(drop="first", handle_unknown="infrequent_if_exist",
                                                                min_frequency=400, sparse_output=False))]),
              categorical),
             ("region_again", OneHotEncoder(handle_unknown="ignore"), ["region"])],
            transformer_weights={"numeric": 0.5},
        )),
        ("rescale", StandardScaler()),
        ("model", LogisticRegression(max_iter=500)),
    ])
    return {
        "example": (example, arm_of(_fit(example, frame, target), example)),
        "logistic": (logistic, arm_of(_fit(logistic, frame, target), logistic)),
        "regression": (regression, arm_of(
            _fit(regression, frame, target.astype(float), tabular_pipeline(regression, "sklearn.linear_model.Ridge")),
            regression)),
        "multiclass": (multiclass, arm_of(_fit(multiclass, frame, three_classes), multiclass)),
        "custom": (logistic, arm_of(_fit(logistic, frame, target, custom), logistic)),
    }


# The hand-built pipeline drops a category while encoding unseen ones as infrequent, for which
# scikit-learn warns on every call; the compiled path repeats the warning as the encoder does.
pytestmark = pytest.mark.filterwarnings("ignore:Found unknown categories:UserWarning")


@pytest.mark.parametrize("name", ["example", "logistic", "regression", "multiclass", "custom"])
def test_compiled_scores_equal_the_pipelines_bit_for_bit(models, frame, name):
    spec, arm = models[name]
    assert arm.compiled is not None, arm.plain_reason
    reference = plain(arm)
    for n, start in ((1, 0), (1, 7), (3, 11), (16, 40), (64, 100), (300, 500)):
        assert_same_scores(arm, reference, arm.prepare(request_columns(spec, frame, start, n, seed=start)))
    checks = check_rows(spec)
    assert_same_scores(arm, reference, arm.prepare(checks))
    # A slice of a shared batch (two arms in one batch score their own rows of it).
    prepared = arm.prepare(request_columns(spec, frame, 1000, 50, seed=1))
    for start, stop in ((0, 1), (3, 20), (20, 50)):
        assert_same_scores(arm, reference, prepared.rows(start, stop))


def test_a_batch_holding_both_arms_scores_as_the_pipelines_do(models, frame):
    spec, champion = models["logistic"]
    _, challenger = models["custom"]
    challenger = dataclasses.replace(challenger, version="2")

    def run(arms):
        results: dict[int, object] = {}
        jobs = []
        for i in range(24):
            columns = request_columns(spec, frame, 200 + 3 * i, 1 + i % 3, seed=i)
            rows = len(next(iter(columns.values())))
            jobs.append(Job(arms[i % 5 == 0], columns, rows, lambda result, i=i: results.__setitem__(i, result)))
        assert score_jobs(jobs) == 2
        return results

    fast = run({False: champion, True: challenger})
    slow = run({False: plain(champion), True: plain(challenger)})
    assert fast.keys() == slow.keys() == set(range(24))
    for i in fast:
        assert fast[i].predictions == slow[i].predictions and same(fast[i].scores, slow[i].scores)


def test_unseen_categories_are_encoded_by_the_encoder_and_remembered(models, frame):
    spec, arm = models["custom"]
    columns = request_columns(spec, frame, 0, 20, seed=3)
    columns["region"] = ["atlantis"] * 10 + ["north"] * 10
    columns["education"] = ["atlantis"] * 20
    for _ in range(2):  # the second call reads what the first learned
        assert_same_scores(arm, plain(arm), arm.prepare(columns))


def test_a_compiled_version_survives_pickling_for_the_shadow_process(models, frame):
    spec, arm = models["logistic"]
    copy = pickle.loads(pickle.dumps(arm))
    assert copy.compiled is not None
    prepared = copy.prepare(request_columns(spec, frame, 0, 30, seed=5))
    assert_same_scores(copy, plain(arm), prepared)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_pipelines_it_cannot_replay_are_scored_through_scikit_learn(frame):
    spec = example_spec(estimator={"factory": "steward.estimators:tabular_pipeline",
                                   "params": {"estimator": "sklearn.linear_model.LogisticRegression"}})
    preprocess = tabular_pipeline(spec).steps[0][1]
    with_pca = Pipeline([("preprocess", preprocess), ("pca", PCA(3)), ("model", LogisticRegression())])
    arm = arm_of(_fit(spec, frame, frame[spec.target], with_pca), spec)
    assert arm.compiled is None and "PCA" in arm.plain_reason
    assert arm.describe()["scoring"].startswith("pipeline (")
    numeric_only = spec.model_copy(update={"features": tuple(f for f in spec.features if f.is_numeric)})
    bare = arm_of(LogisticRegression().fit(prepare_features(frame, numeric_only).fillna(0), frame[spec.target]),
                  numeric_only)
    assert bare.compiled is None and "not a scikit-learn Pipeline" in bare.plain_reason
    scored = arm.score(request_columns(spec, frame, 0, 5, seed=0))
    assert len(scored.predictions) == 5


def test_prepare_arrays_equals_prepare_features(frame):
    spec = example_spec()
    validated = request_columns(spec, frame, 0, 40, seed=9)
    odd = {name: list(values) for name, values in validated.items()}
    odd["age"] = [int(v) for v in odd["age"][:39]] + [np.float32(30.5)]  # not the validated float form
    odd["region"] = [np.nan, *odd["region"][1:]]
    for columns in (validated, odd):
        arrays = prepare_arrays(columns, spec)
        expected = prepare_features(pd.DataFrame(columns), spec)
        for name in spec.feature_names:
            got, want = arrays[name], expected[name].to_numpy()
            assert got.dtype == want.dtype, name
            if got.dtype == object:
                assert [v if isinstance(v, str) else "NaN" for v in got] == [
                    v if isinstance(v, str) else "NaN" for v in want], name
            else:
                assert same(got, want), name
    with pytest.raises(DataError, match="missing feature columns"):
        prepare_arrays({k: v for k, v in validated.items() if k != "age"}, spec)
