"""The team's own training code: a spec's training.entrypoint, and which producer made a version."""

from __future__ import annotations

import pytest
import yaml

from steward.simulation.examples import example_spec_text
from steward.spec import SpecError, parse_spec
from steward.training.data import frame_sha256, split_train_holdout
from steward.training.entrypoints import EntrypointError, Producer, ProducerKind, resolve_entrypoint
from steward.training.train import train_model


def team_spec(**training) -> dict:
    document = yaml.safe_load(example_spec_text())
    document.pop("estimator")
    document["data"]["path"] = "train.parquet"
    document["data_validation"]["min_rows"] = 100
    document["training"] = {**document.get("training", {}), **training}
    return document


@pytest.fixture(scope="module")
def frame(example_frame):
    return example_frame.head(2000)


def train(spec, frame):
    return train_model(spec, split_train_holdout(frame, spec), data_sha256=frame_sha256(frame), data_source="test")


def test_entrypoint_trains_the_version_and_lineage_names_it(frame):
    spec = parse_spec(team_spec(entrypoint="tests.support.team_training:fit", params={"C": 0.5}))
    trained = train(spec, frame)
    assert trained.producer == Producer(ProducerKind.ENTRYPOINT, "tests.support.team_training:fit")
    assert trained.producer.tag == "entrypoint:tests.support.team_training:fit"
    assert trained.estimator.named_steps["classify"].C == 0.5  # the spec's training.params reached the code
    assert trained.lineage.params["producer"] == trained.producer.tag
    assert trained.lineage.params["training.C"] == 0.5 and "estimator.factory" not in trained.lineage.params
    assert trained.metrics["roc_auc"] > 0.7 and set(trained.metrics) >= {"accuracy", "brier", "log_loss"}
    assert Producer.from_tag(trained.producer.tag) == trained.producer


def test_default_producer_is_the_estimator_factory(frame, quick_spec):
    spec = quick_spec.model_copy(update={"data_validation": quick_spec.data_validation.model_copy(
        update={"min_rows": 100})})
    trained = train(spec, frame)
    assert trained.producer.tag == "estimator:steward.estimators:tabular_pipeline"


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        ("tests.support.no_such_module:fit", "cannot import module 'tests.support.no_such_module'"),
        ("tests.support.team_training:no_such_function", "has no attribute 'no_such_function'"),
        ("tests.support.team_training:NOT_A_FUNCTION", "is a int, not a function"),
        ("tests.support.team_training:returns_nothing", "returned NoneType, which has no predict()"),
        ("tests.support.team_training:expects_other_columns", "cannot predict on the spec's feature frame"),
    ],
)
def test_unusable_training_code_is_refused_with_what_to_fix(frame, entrypoint, message):
    spec = parse_spec(team_spec(entrypoint=entrypoint))
    with pytest.raises(EntrypointError, match=message) as caught:
        train(spec, frame)
    assert entrypoint in str(caught.value)


def test_resolve_reaches_into_attributes():
    assert resolve_entrypoint("steward.training.entrypoints:Producer.of") == Producer.of


@pytest.mark.parametrize(
    ("training", "message"),
    [
        ({"entrypoint": "no_colon"}, "is not an import path"),
        ({"deployment": "only-a-flow"}, "is not a deployment name"),
        ({"deployment": "a/b/c"}, "is not a deployment name"),
        ({"entrypoint": "a:b", "deployment": "f/d"}, "both name the training code: keep one"),
    ],
)
def test_spec_refuses_unclear_training_code(training, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(team_spec(**training))


def test_spec_refuses_an_estimator_beside_the_team_code():
    document = team_spec(entrypoint="tests.support.team_training:fit")
    document["estimator"] = {"factory": "steward.estimators:tabular_pipeline"}
    with pytest.raises(SpecError, match="remove the estimator section"):
        parse_spec(document)


def test_deployment_spec_is_not_fitted_in_process(frame):
    spec = parse_spec(team_spec(deployment="team-train/nightly"))
    assert Producer.of(spec).tag == "deployment:team-train/nightly"
    with pytest.raises(ValueError, match="registers its own versions"):
        train(spec, frame)


# --- waiting for the candidate a team's deployment registers ----------------------------------------------------

from steward.training.entrypoints import TeamRunCode, TrainingRequest, judge_team_run  # noqa: E402

REQUEST = TrainingRequest(model="credit", deployment="team-train/nightly", request_id="r1", window_start=None,
                          window_end=None, params={"C": 1}, timeout_seconds=60)


@pytest.mark.parametrize(
    ("state", "final", "completed", "versions", "waited", "code"),
    [
        ("Running", False, False, [], 10, TeamRunCode.WAITING),
        ("Running", False, False, ["3"], 10, TeamRunCode.WAITING),  # registered, but the run is not done yet
        ("Completed", True, True, ["3"], 10, TeamRunCode.REGISTERED),
        ("Completed", True, True, [], 10, TeamRunCode.NO_CANDIDATE),
        ("Failed", True, False, [], 10, TeamRunCode.RUN_FAILED),
        ("Crashed", True, False, ["3"], 10, TeamRunCode.RUN_FAILED),
        ("Completed", True, True, ["3", "4"], 10, TeamRunCode.AMBIGUOUS),
        ("Running", False, False, [], 60, TeamRunCode.TIMED_OUT),
        ("Scheduled", False, False, [], 61, TeamRunCode.TIMED_OUT),
    ],
)
def test_judge_team_run(state, final, completed, versions, waited, code):
    verdict = judge_team_run(REQUEST, run_name="brave-fox", run_state=state, run_final=final, run_completed=completed,
                             versions=versions, waited_seconds=waited)
    assert verdict.code is code
    assert "'team-train/nightly' (flow run 'brave-fox')" in verdict.reason
    if code is TeamRunCode.REGISTERED:
        assert verdict.version == "3"
    if code is TeamRunCode.TIMED_OUT:
        assert "training.deployment_timeout_seconds = 60 s" in verdict.reason
    if code is TeamRunCode.NO_CANDIDATE:
        assert "mlflow.set_tag('steward.training_request', steward_request)" in verdict.reason


def test_the_request_parameters_are_what_the_team_flow_takes():
    assert REQUEST.parameters() == {"model": "credit", "window_start": None, "window_end": None,
                                    "steward_request": "r1", "params": {"C": 1}}
