"""Procedures' tasks run on in-memory services: the decisions of retrain, validate and rollback, fast.

The tasks' own functions (``.fn``) with ``use_services`` (the ``fake_services`` fixture): real
gates, real alias policy, real ledger and prediction log on ``memory://``; no Prefect server, no MLflow.
"""

from __future__ import annotations

import pandas as pd
import pytest

from steward.monitoring.ledger import EntryStatus, MaintenanceKind, Priority
from steward.registry.errors import ArtifactIntegrityError, RegistryError
from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind
from steward.registry.traffic import DEFAULT_PLAN, TrafficPlan
from tasks import rollback, training, validation
from tests.support.models import register_trained, set_champion_and_challenger


def retrain(spec, trained) -> str:
    """What the retrain flow does once the model is fitted: judge the duration, register the candidate."""
    return training.register_candidate.fn(spec, trained, training.judge_duration.fn(spec, trained)).version


def validate(spec, version: str | None = None) -> str:
    """The validate flow's tasks in its order; returns the action recorded (champion, challenger, rejected)."""
    candidate_version = validation.pick_candidate.fn(spec, version)
    champion_info = validation.registry().champion(spec.name)
    candidate = validation.load_contender.fn(spec, candidate_version)
    champion = validation.load_contender.fn(spec, champion_info.version) if champion_info else None
    holdout = validation.load_holdout.fn(spec, candidate_version)
    report = validation.run_gate.fn(spec, candidate, champion, holdout)
    return validation.record_validation.fn(spec, report)


def test_first_candidate_bootstraps_the_champion_the_next_becomes_challenger_a_weak_one_is_rejected(
    fake_services, quick_spec, quick_model
):
    registry, model = fake_services.registry, quick_spec.name
    with pytest.raises(RegistryError, match="steward train"):
        validation.pick_candidate.fn(quick_spec, None)
    assert training.check_retrain_allowance.fn(quick_spec).allowed

    first = retrain(quick_spec, quick_model)
    assert (first, registry.get_version(model, first).semver) == ("1", "1.0.0")
    assert validate(quick_spec) == "champion"
    assert registry.alias_version(model, CHAMPION) == "1"
    assert [e.kind for e in registry.history(model)] == [ChangeKind.BOOTSTRAP]
    assert not training.check_retrain_allowance.fn(quick_spec).allowed  # within the cooldown

    second = retrain(quick_spec, quick_model)
    assert validate(quick_spec) == "challenger"
    tags = registry.get_version(model, second).tags
    assert tags["steward.validation.status"] == "passed" and tags["steward.validation.against"] == "1"
    assert (registry.alias_version(model, CHAMPION), registry.alias_version(model, CHALLENGER)) == ("1", second)

    strict = quick_spec.model_copy(update={"gates": quick_spec.gates.model_copy(update={"floor": 0.99})})
    third = retrain(strict, quick_model)
    before = registry.history(model)
    assert validate(strict) == "rejected"
    assert registry.get_version(model, third).stage == "rejected"
    assert registry.history(model) == before  # a failed gate moves no alias
    assert (registry.alias_version(model, CHAMPION), registry.alias_version(model, CHALLENGER)) == ("1", second)


def test_rollback_restores_the_previous_champion_resets_traffic_and_opens_a_critical_incident(
    fake_services, quick_spec, quick_model
):
    registry, model = fake_services.registry, quick_spec.name
    with pytest.raises(RegistryError, match="no champion"):
        rollback.rollback_target.fn(model)
    versions = [register_trained(registry, quick_spec, quick_model, validated=True).version for _ in range(3)]
    registry.promote(model, versions[0], reason="first")
    with pytest.raises(RegistryError, match="no earlier champion"):
        rollback.rollback_target.fn(model)
    set_champion_and_challenger(registry, model, versions[1], versions[2])
    registry.set_traffic_plan(model, TrafficPlan(mode="canary", challenger_percent=5), reason="canary step 1")

    assert rollback.rollback_target.fn(model) == (versions[1], versions[0])
    assert rollback.stop_rollouts.fn(model, "error spike") == ()
    entry = rollback.restore_champion.fn(model, "error spike", "oncall")
    rollback.reset_traffic.fn(model, "rollback: error spike", "oncall")
    incident_id = rollback.record_rollback_incident.fn(entry)

    assert (entry.kind, entry.from_version, entry.to_version, entry.actor) == (
        ChangeKind.ROLLBACK, versions[1], versions[0], "oncall")
    assert registry.alias_version(model, CHAMPION) == versions[0]
    assert registry.get_version(model, versions[1]).stage == "rolled_back"
    assert registry.get_traffic_plan(model) == DEFAULT_PLAN
    [incident] = fake_services.ledger.entries(model)
    assert (incident.id, incident.incident, incident.priority, incident.kind, incident.status) == (
        incident_id, True, Priority.CRITICAL, MaintenanceKind.CORRECTIVE, EntryStatus.OPEN)
    assert [(e.kind, e.to_version) for e in registry.history(model) if e.alias == CHAMPION] == [
        (ChangeKind.BOOTSTRAP, versions[0]), (ChangeKind.PROMOTE, versions[1]), (ChangeKind.ROLLBACK, versions[0])]
    with pytest.raises(RegistryError, match="no earlier champion"):  # the rolled-back version is not a target
        rollback.rollback_target.fn(model)


def test_retention_task_archives_by_tag_and_keeps_the_champion(fake_services, quick_spec, quick_model):
    registry, model = fake_services.registry, quick_spec.name
    versions = [register_trained(registry, quick_spec, quick_model, validated=True).version for _ in range(6)]
    registry.promote(model, versions[0], reason="first")
    assert training.archive_old_versions.fn(quick_spec) == (versions[1], versions[2])
    assert {v.version for v in registry.list_versions(model) if v.archived} == {versions[1], versions[2]}
    with pytest.raises(RegistryError, match="archived"):
        registry.promote(model, versions[1], reason="bring it back")


def test_a_changed_artifact_is_refused_on_load(fake_services, quick_spec, quick_model):
    registry, model = fake_services.registry, quick_spec.name
    version = register_trained(registry, quick_spec, quick_model).version
    assert validation.load_contender.fn(quick_spec, version).version == version
    registry.tamper(model, version)
    with pytest.raises(ArtifactIntegrityError, match="changed since registration"):
        validation.load_contender.fn(quick_spec, version)


def test_the_prediction_log_and_the_ledger_work_in_memory(fake_services, quick_spec, quick_model, example_frame):
    from steward.simulation.replay import ReplayArm, replay_to_store
    from tasks.common import ledger, store

    traffic = example_frame.tail(300).assign(label_available_at=lambda f: f["event_time"])
    start = pd.Timestamp(traffic["event_time"].min()).floor("D")
    summary = replay_to_store(store(), quick_spec, traffic, [ReplayArm("champion", "1", quick_model.estimator)])
    logged = store().read_predictions(quick_spec.name, start, start + pd.Timedelta(days=30))
    assert len(logged) == summary.predictions == len(traffic) and set(logged["version"]) == {"1"}
    assert len(store().read_labels(quick_spec.name)) == summary.labels == len(traffic)

    opened = ledger().record(quick_spec.name, "drift on utilization", kind=MaintenanceKind.ADAPTIVE,
                             priority=Priority.MEDIUM, source="drift")
    again = ledger().record(quick_spec.name, "drift on utilization", kind=MaintenanceKind.ADAPTIVE,
                            priority=Priority.HIGH, source="drift")
    assert again.id == opened.id and again.occurrences == 2 and again.priority is Priority.HIGH
    assert [e.id for e in fake_services.ledger.entries(quick_spec.name)] == [opened.id]
