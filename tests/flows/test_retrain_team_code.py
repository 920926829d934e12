"""The retrain with the team's own code: an entrypoint, and a Prefect deployment served by the team's runner
(a separate process on the test's Prefect server) that registers the candidate with plain MLflow code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flows.retrain import retrain
from flows.validate import validate
from steward.registry.history import CHAMPION
from steward.simulation.examples import example_spec_text
from steward.training.entrypoints import PRODUCER_TAG, TRAINING_REQUEST_TAG, TeamRunCode, TeamTrainingError
from steward.training.train import RetrainSkip
from tests.support.polling import wait_until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def team_spec(tmp_path: Path, frame, name: str, **training) -> Path:
    """The example spec with the team's training code instead of Steward's estimator."""
    document = yaml.safe_load(example_spec_text())
    document.pop("estimator")
    document.update(name=name)
    document["data"]["path"] = "train.parquet"
    document["data_validation"]["min_rows"] = 500
    document["training"] = {**document.get("training", {}), **training}
    frame.to_parquet(tmp_path / "train.parquet", index=False)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def team_runner(prefect_server, tmp_path_factory):
    """The team's runner serving its two deployments, in its own process, against the test's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PREFECT_RUNNER_POLL_FREQUENCY": "1",
           "PYTHONPATH": str(REPO)}
    log = (tmp_path_factory.mktemp("team-runner") / "runner.log").open("w")
    runner = subprocess.Popen([sys.executable, "tests/support/team_flows.py"], cwd=REPO, env=env,
                              stdout=log, stderr=subprocess.STDOUT)

    def deployed() -> bool:
        assert runner.poll() is None, f"the team's runner exited with {runner.returncode}"
        with get_client(sync_client=True) as client:
            for name in ("team-train/nightly", "team-train-stuck/nightly"):
                try:
                    client.read_deployment_by_name(name)
                except ObjectNotFound:
                    return False
        return True

    try:
        wait_until(deployed, "the team's runner to serve its deployments", timeout=300, every=1)
        yield runner
    finally:
        runner.terminate()
        runner.wait(timeout=60)
        log.close()


def test_retrain_runs_the_team_deployment_and_its_candidate_goes_through_the_gate(
    team_runner, tmp_path, example_frame, registry, model_name, model_events
):
    spec_path = team_spec(tmp_path, example_frame, model_name, deployment="team-train/nightly",
                          params={"data_path": str(tmp_path / "train.parquet"), "C": 0.5})
    result = retrain(spec_path=str(spec_path), reason="team code")
    assert result.registered and (result.version, result.semver) == ("1", "1.0.0")
    assert result.metrics["roc_auc"] > 0.7

    info = registry.get_version(model_name, "1", with_metrics=True)
    assert info.tags[PRODUCER_TAG] == "deployment:team-train/nightly" and info.tags[TRAINING_REQUEST_TAG]
    assert info.stage == "candidate" and info.digest and info.metrics["roc_auc"] == result.metrics["roc_auc"]
    assert "trained by deployment:team-train/nightly" in info.tags["steward.data_source"]
    holdout = registry.load_dataset(model_name, "1", "holdout")
    assert len(holdout) == round(0.2 * len(example_frame))
    team_run = __import__("mlflow").get_run(info.run_id)
    assert team_run.data.params["C"] == "0.5"  # training.params reached the team's flow
    assert team_run.data.tags[TRAINING_REQUEST_TAG] == info.tags[TRAINING_REQUEST_TAG]
    # the training window the team was given ends where Steward's hold-out begins
    assert info.tags["steward.data_window_start"] == str(example_frame["event_time"].min().isoformat())

    outcome = validate(spec_path=str(spec_path))
    assert outcome.passed and outcome.action == "champion"
    assert registry.alias_version(model_name, CHAMPION) == "1"
    assert [e.payload["version"] for e in model_events(model_name, expected=2)][:1] == ["1"]


def test_a_team_deployment_that_never_registers_times_out_by_name(team_runner, tmp_path, example_frame, registry,
                                                                   model_name):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    spec_path = team_spec(tmp_path, example_frame, model_name, deployment="team-train-stuck/nightly",
                          deployment_timeout_seconds=5, params={"sleep_seconds": 600})
    with pytest.raises(TeamTrainingError, match=(
        r"training deployment 'team-train-stuck/nightly' \(flow run '[\w-]+'\) registered no candidate within "
        r"training.deployment_timeout_seconds = 5 s")) as caught:
        retrain(spec_path=str(spec_path))
    assert caught.value.code is TeamRunCode.TIMED_OUT
    assert not registry.model_exists(model_name)

    def cancelled() -> bool:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(limit=200, sort=FlowRunSort.START_TIME_DESC)
        stuck = [r for r in runs if r.parameters.get("model") == model_name]
        return bool(stuck) and all(r.state.name in ("Cancelling", "Cancelled") for r in stuck)

    wait_until(cancelled, "the stuck team run to be cancelled", timeout=120, every=1)


def test_an_unknown_deployment_is_named(tmp_path, example_frame, registry, model_name):
    spec_path = team_spec(tmp_path, example_frame, model_name, deployment="no-such-flow/nightly")
    with pytest.raises(TeamTrainingError, match="'no-such-flow/nightly' is not a deployment on this Prefect server"):
        retrain(spec_path=str(spec_path))
    assert not registry.model_exists(model_name)


def test_retrain_through_an_entrypoint_records_the_producer(tmp_path, example_frame, registry, model_name):
    spec_path = team_spec(tmp_path, example_frame, model_name, entrypoint="tests.support.team_training:fit")
    result = retrain(spec_path=str(spec_path))
    assert result.registered and result.metrics["roc_auc"] > 0.7
    tags = registry.get_version(model_name, result.version).tags
    assert tags[PRODUCER_TAG] == "entrypoint:tests.support.team_training:fit"


def test_too_few_rows_skips_the_retrain_with_a_ledger_entry(write_spec, example_frame, registry, model_name):
    from tasks.common import ledger

    spec_path = write_spec(frame=example_frame.head(300))  # min_rows is 500
    result = retrain(spec_path=str(spec_path))
    assert not result.registered and result.skip is RetrainSkip.TOO_FEW_ROWS
    assert "min_rows: FAILED: 300 rows, at least 500 needed" in result.skipped_because
    entries = ledger().entries(model_name)
    assert [e.id for e in entries] == [result.ledger_entry_id]
    assert entries[0].title == "retrain skipped: too few labelled rows" and entries[0].is_open
    assert not registry.model_exists(model_name)
