"""Run the team's own training deployment (``training.deployment``) and take in the candidate it registers.

The retrain starts the deployment with the data window, waits (up to ``training.deployment_timeout_seconds``)
for the run to finish and for the one version it registered from an MLflow run tagged with the request, then
brings that version under Steward: hold-out and reference data, digest, lineage, hold-out metrics. Validation
and the canary then treat it like any other candidate.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from prefect import get_run_logger, task

from steward.registry.adapter import VersionInfo
from steward.registry.lineage import Lineage, package_versions
from steward.spec import ModelSpec
from steward.training.data import Split, prepare_features
from steward.training.entrypoints import (
    PRODUCER_TAG,
    TRAINING_REQUEST_TAG,
    Producer,
    TeamRunCode,
    TeamRunVerdict,
    TeamTrainingError,
    TrainingRequest,
    judge_team_run,
)
from steward.training.evaluation import evaluate
from steward.training.gates import TRAINED_AS_OF_TAG
from steward.training.retrain_decision import TRIGGER_METRIC_TAG
from steward.training.train import labelled_frame, reference_sample
from tasks.common import registry

POLL_SECONDS = 2.0


@dataclass(frozen=True)
class TeamRun:
    """The deployment run a request started."""

    request: TrainingRequest
    flow_run_id: str
    flow_run_name: str


@dataclass(frozen=True)
class TeamCandidate:
    info: VersionInfo
    metrics: dict[str, float]
    training_seconds: float


def training_request(spec: ModelSpec, split: Split) -> TrainingRequest:
    """The deployment's parameters: the window of the rows Steward would have trained on (the hold-out after it
    stays Steward's, for the gate)."""
    window = split.train_window
    return TrainingRequest(
        model=spec.name, deployment=spec.training.deployment or "", request_id=uuid.uuid4().hex,
        window_start=window[0].isoformat() if window else None, window_end=window[1].isoformat() if window else None,
        params=dict(spec.training.params), timeout_seconds=spec.training.deployment_timeout_seconds,
    )


@task(name="start-team-training")
def start_team_training(spec: ModelSpec, split: Split) -> TeamRun:
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    request = training_request(spec, split)
    try:
        run = run_deployment(name=request.deployment, parameters=request.parameters(), timeout=0)
    except ObjectNotFound:
        raise TeamTrainingError(TeamRunVerdict(
            TeamRunCode.RUN_FAILED,
            f"training.deployment {request.deployment!r} is not a deployment on this Prefect server: deploy the "
            "team's flow (`prefect deploy`, or flow.serve(name=...)) or fix the name (`prefect deployment ls`)",
        )) from None
    get_run_logger().info("%s: started %s as flow run %s (request %s)", spec.name, request.deployment, run.name,
                          request.request_id)
    return TeamRun(request, str(run.id), run.name)


@task(name="wait-for-team-candidate")
def wait_for_team_candidate(team_run: TeamRun) -> str:
    """The version the run registered; raises TeamTrainingError (with its code) when there is none, cancelling
    the run at the timeout so a late candidate cannot appear unannounced."""
    from prefect.client.orchestration import get_client

    request = team_run.request
    started = time.monotonic()
    while True:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(team_run.flow_run_id).state
        versions = [v.version for v in registry().versions_of_run_tag(request.model, TRAINING_REQUEST_TAG,
                                                                         request.request_id)]
        verdict = judge_team_run(
            request, run_name=team_run.flow_run_name,
            run_state=(f"{state.name} ({state.message})" if state.message else state.name) if state else "unknown",
            run_final=bool(state and state.is_final()), run_completed=bool(state and state.is_completed()),
            versions=versions, waited_seconds=time.monotonic() - started,
        )
        if verdict.code is TeamRunCode.REGISTERED:
            return verdict.version
        if verdict.code is TeamRunCode.TIMED_OUT:
            _cancel(team_run.flow_run_id)
        if verdict.code is not TeamRunCode.WAITING:
            raise TeamTrainingError(verdict)
        time.sleep(POLL_SECONDS)


def _cancel(flow_run_id: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.states import Cancelling

    with get_client(sync_client=True) as client:
        client.set_flow_run_state(flow_run_id, Cancelling(message="Steward's retrain stopped waiting for it"),
                                  force=True)


def _run_seconds(flow_run_id: str) -> float:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return float(run.total_run_time.total_seconds()) if run.total_run_time else 0.0


@task(name="take-in-team-candidate", retries=2, retry_delay_seconds=[2, 5])
def take_in_team_candidate(
    spec: ModelSpec, team_run: TeamRun, version: str, split: Split, data_sha256: str, data_source: str,
    as_of: datetime | None = None, trigger_metric: str | None = None,
) -> TeamCandidate:
    """Store the hold-out and reference with the version, hash its files, tag its lineage, and measure it on the
    hold-out from its verified copy, as if Steward had trained it."""
    request = team_run.request
    producer = Producer.of(spec)
    train, holdout = labelled_frame(split.train, spec), labelled_frame(split.holdout, spec)
    window = split.train_window
    seconds = _run_seconds(team_run.flow_run_id)
    lineage = Lineage(
        data_sha256=data_sha256,
        data_rows=len(split.train) + len(split.holdout),
        data_source=f"{data_source}; trained by {producer.tag} (flow run {team_run.flow_run_name})",
        data_window_start=window[0].isoformat() if window else None,
        data_window_end=(split.holdout_window or window)[1].isoformat() if window else None,
        params={"producer": producer.tag, **{f"training.{k}": v for k, v in spec.training.params.items()}},
        code_version=f"the team's, via {producer.tag}",
        packages=package_versions(),
        training_seconds=seconds,
        schema_fingerprint=spec.schema_fingerprint(),
        spec_yaml=spec.to_yaml(),
    )
    features = prepare_features(holdout, spec)
    reg = registry()
    reg.take_in_version(
        spec.name, version, lineage=lineage,
        datasets={"holdout": holdout, "reference": reference_sample(train, spec.training.reference_sample_rows,
                                                                    spec.training.random_state)},
        input_schema={column: str(dtype) for column, dtype in features.dtypes.items()},
        tags={PRODUCER_TAG: producer.tag, TRAINING_REQUEST_TAG: request.request_id,
              TRAINED_AS_OF_TAG: (as_of or datetime.now(UTC)).astimezone(UTC).isoformat(),
              "steward.training_flow_run": team_run.flow_run_id,
              **({TRIGGER_METRIC_TAG: trigger_metric} if trigger_metric else {})},
    )
    metrics = evaluate(reg.load_model(spec.name, version).model, holdout, spec)
    reg.log_version_metrics(spec.name, version, metrics)
    return TeamCandidate(reg.get_version(spec.name, version, with_metrics=True), metrics, seconds)
