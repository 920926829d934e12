"""The catalog's deployments and triggers on the session's real Prefect server.

The server's trigger and action services run inside ``prefect_test_harness`` (they are
``RunInEphemeralServers`` services, enabled by default); nothing serves the deployments
here, so a triggered flow run stays scheduled and the test reads its parameters back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from uuid import UUID

import pytest

from steward import events

pytestmark = pytest.mark.slow  # a Prefect server with its trigger services, and waits on them


def _emit(event: str, model: str, labels: dict[str, str] | None = None, **payload) -> None:
    from prefect.events import emit_event

    emit_event(
        event=event,
        resource={"prefect.resource.id": events.resource_id(model), "prefect.resource.name": model, **(labels or {})},
        payload={"model": model, **payload},
    )


def _flush_events() -> None:
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all()


def _runs(deployment_id: UUID) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=100,
        )


def _wait_for_runs(deployment_id: UUID, expected: int, timeout: float = 45.0) -> list:
    deadline = time.monotonic() + timeout
    runs = _runs(deployment_id)
    while len(runs) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
        runs = _runs(deployment_id)
    return runs


def _the_run_started_by(deployment_id: UUID, event: str, model: str, labels: dict[str, str] | None = None,
                        **payload):
    """Emit ``event`` and return the one flow run the deployment's trigger created for it."""
    _emit(event, model, labels, **payload)
    _flush_events()
    runs = _wait_for_runs(deployment_id, 1)
    assert len(runs) == 1
    return runs[0]


@pytest.fixture
def register() -> Callable[..., dict[str, UUID]]:
    """Apply the catalog's deployments (with their triggers) for a spec; returns deployment ids by procedure."""
    from prefect.client.orchestration import get_client

    from deployments.catalog import plan_deployments, runner_deployments

    created: list[UUID] = []

    def apply(spec_path, procedures: list[str]) -> dict[str, UUID]:
        plans = plan_deployments([spec_path], procedures)
        deployments, problems = runner_deployments(plans)
        assert not problems
        ids = {}
        for plan, deployment in zip(plans, deployments, strict=True):
            ids[plan.procedure.key] = deployment.apply()
            created.append(ids[plan.procedure.key])
        time.sleep(1.0)  # the trigger service loads new automations right after the commit
        return ids

    yield apply
    with get_client(sync_client=True) as client:
        for deployment_id in created:
            client.delete_deployment(deployment_id)


WANTED, NOT_NEEDED = events.retrain_label(True), events.retrain_label(False)


def test_a_drift_storm_starts_one_retrain_with_the_spec_path(register, write_spec, model_name):
    spec_path = write_spec()
    ids = register(spec_path, ["retrain"])

    run = _the_run_started_by(ids["retrain"], events.DRIFT_DETECTED, model_name, WANTED, version="3",
                              reason="share of drifted columns 0.45 > 0.30")
    assert run.parameters == {
        "spec_path": str(spec_path),
        "reason": "drift detected: share of drifted columns 0.45 > 0.30",
        "as_of": None,  # the event carried no window_end: the retrain runs at the wall clock
        "trigger_metric": None, "primary_dropped": False, "drift_columns": [], "window_start": None,
        "also_fell": None,
    }

    for i in range(8):  # a storm within the cooldown, and the accuracy loss the same maintenance run found
        _emit(events.DRIFT_DETECTED, model_name, WANTED, version="3", reason=f"again {i}")
        _emit(events.HEALTH_DEGRADED, model_name, {events.HEALTH_AREAS_LABEL: "accuracy", **WANTED}, reason="worse")
    _flush_events()
    time.sleep(8)  # well past the time the first run took to appear
    assert len(_runs(ids["retrain"])) == 1


def test_only_accuracy_degradation_starts_a_retrain(register, write_spec, model_name):
    spec_path = write_spec()
    ids = register(spec_path, ["retrain"])

    _emit(events.HEALTH_DEGRADED, model_name, {events.HEALTH_AREAS_LABEL: "performance,cost", **NOT_NEEDED},
          reason="p95 too high")
    _emit(events.DRIFT_DETECTED, "some-other-model", WANTED, reason="not this model")
    _emit(events.HEALTH_DEGRADED, model_name, {events.HEALTH_AREAS_LABEL: "cost,accuracy", **WANTED},
          reason="accuracy fell 0.08")
    _flush_events()
    runs = _wait_for_runs(ids["retrain"], 1)
    time.sleep(4)
    runs = _runs(ids["retrain"])
    assert [run.parameters["reason"] for run in runs] == ["accuracy degraded: accuracy fell 0.08"]


def test_promotion_notifies_with_typed_payload_values(register, write_spec, model_name):
    spec_path = write_spec()
    ids = register(spec_path, ["notify"])

    payload = {"version": "4", "champion_version": "4", "reason": "canary passed", "steps": [1, 5, 25],
               "metrics": {"roc_auc": 0.81}, "traffic_percent": 100, "forced": False}
    parameters = _the_run_started_by(ids["notify"], events.PROMOTED, model_name, **payload).parameters
    assert parameters["model"] == model_name
    assert parameters["event"] == events.PROMOTED
    assert parameters["version"] == "4"
    assert parameters["payload"] == {"model": model_name, **payload}  # numbers, lists, booleans stay typed
    assert isinstance(parameters["payload"]["traffic_percent"], int)
    assert parameters["occurred"]  # an ISO timestamp the flow parses as a datetime

    _emit(events.ROLLED_BACK, model_name, reason="error spike")  # no version in the payload -> null
    _flush_events()
    runs = _wait_for_runs(ids["notify"], 2)
    rolled_back = next(run for run in runs if run.parameters["event"] == events.ROLLED_BACK)
    assert rolled_back.parameters["version"] is None
    assert rolled_back.parameters["reason"] == "error spike"


def test_a_validated_candidate_starts_its_canary(register, write_spec, model_name):
    from deployments.catalog import FlowUnavailable, load_flow, procedure

    try:
        load_flow(procedure("canary-promote"))
    except FlowUnavailable as error:
        pytest.skip(str(error))
    spec_path = write_spec()
    ids = register(spec_path, ["canary-promote"])

    run = _the_run_started_by(ids["canary-promote"], events.CANDIDATE_VALIDATED, model_name, version="7",
                              champion_version="6", reason="gate passed")
    assert run.parameters["version"] == "7"
    assert run.parameters["spec_path"] == str(spec_path)


def test_the_notify_flow_tells_what_happened(model_name):
    from deployments.notify import notify

    message = notify(model=model_name, event=events.ROLLED_BACK, version="2", reason="error spike")
    assert message.startswith(f"{model_name}: rolled back to v2")
    assert "error spike" in message


def test_a_registered_candidate_is_validated(register, write_spec, model_name):
    spec_path = write_spec()
    ids = register(spec_path, ["validate"])

    run = _the_run_started_by(ids["validate"], events.CANDIDATE_REGISTERED, model_name, version="3", semver="1.2.0",
                              reason="retrained: drift")
    assert run.parameters == {"spec_path": str(spec_path), "version": "3"}


def test_a_past_drift_check_starts_a_retrain_judged_at_that_window_end(register, write_spec, model_name, registry,
                                                                        settings, example_frame):
    """A backfill's drift check at a past ``as_of`` fires a retrain whose cooldown is judged at that time."""
    from datetime import timedelta

    import pandas as pd

    from flows.drift_report import drift_report
    from flows.retrain import retrain
    from steward.simulation.injections import DriftKind, Injection
    from steward.simulation.replay import ReplayArm, replay_to_store
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore
    from steward.training.gates import TRAINED_AS_OF_TAG, RetrainCode, trained_as_of
    from tasks.training import check_retrain_allowance
    from tests.support.models import register_champion, train_spec

    start, day = pd.Timestamp("2026-02-01", tz="UTC"), pd.Timedelta(days=1)
    spec_path = write_spec(drift={"window_days": 1, "method": "share", "share_threshold": 0.05},
                           estimator__params={"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                              "max_iter": 15, "random_state": 0})
    spec = load_spec(spec_path)
    trained = train_spec(spec, example_frame, str(spec_path))
    champion = register_champion(registry, spec, trained)
    world = credit_default_scenario(rows_per_day=1000, injections=(
        Injection(DriftKind.COVARIATE_SHIFT, start + day, None, ("income",), 1.5),))
    replay_to_store(PredictionStore.from_settings(settings), spec, world.generate(start, start + 2 * day),
                    [ReplayArm("champion", champion.version, trained.estimator)])
    ids = register(spec_path, ["retrain"])

    window_end = (start + 2 * day).to_pydatetime()
    # the champion was trained 2 h of event time before that window's end: inside the 24 h cooldown then,
    # ten months before now on the wall clock
    registry.set_version_tags(model_name, champion.version,
                              {TRAINED_AS_OF_TAG: (window_end - timedelta(hours=2)).isoformat()})
    outcome = drift_report(spec_path=str(spec_path), as_of=window_end)
    assert outcome.material and outcome.announced
    _flush_events()

    runs = _wait_for_runs(ids["retrain"], 1)
    assert len(runs) == 1
    parameters = runs[0].parameters
    assert parameters["as_of"] == window_end.isoformat()  # the window end of the check that fired

    assert check_retrain_allowance.fn(spec).code is RetrainCode.WITHIN_BUDGET  # the wall clock would retrain
    skipped = retrain(**parameters)
    assert (skipped.registered, skipped.allowance) == (False, RetrainCode.COOLDOWN)
    assert skipped.as_of == window_end

    registry.set_version_tags(model_name, champion.version,
                              {TRAINED_AS_OF_TAG: (window_end - timedelta(hours=30)).isoformat()})
    done = retrain(**parameters)
    assert (done.registered, done.allowance) == (True, RetrainCode.WITHIN_BUDGET)
    new = registry.get_version(model_name, done.version)
    assert trained_as_of(new.tags, new.created) == window_end  # the next check counts it at its event time
