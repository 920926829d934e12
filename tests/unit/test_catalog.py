"""The deployment catalog: every procedure per model, valid UTC cron schedules, triggers, prefect.yaml."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from deployments.catalog import (
    MAINTENANCE_CRONS,
    PROCEDURES,
    SCHEDULE_TIMEZONE,
    plan_deployments,
    prefect_yaml,
    procedure,
)
from steward import events

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_SPEC = "examples/credit_default/spec.yaml"
ISSUE_PROCEDURES = {
    "health-check", "drift-report", "retrain", "validate", "canary-promote", "rollback", "ab-test",
    "daily-maintenance", "weekly-maintenance", "monthly-maintenance", "quarterly-maintenance",
}


@pytest.fixture
def two_specs(write_spec):
    return [write_spec(name="model-a"), write_spec(name="model-b", retrain={"cooldown_hours": 6, "max_per_week": 3})]


def test_every_procedure_has_a_deployment_per_model(two_specs):
    plans = plan_deployments(two_specs)
    assert {p.key for p in PROCEDURES} >= ISSUE_PROCEDURES
    assert {(plan.model, plan.procedure.key) for plan in plans} == {
        (model, p.key) for model in ("model-a", "model-b") for p in PROCEDURES
    }
    for plan in plans:
        assert plan.tags == ["steward", f"model:{plan.model}", f"procedure:{plan.procedure.key}"]
        assert plan.model in plan.description and len(plan.procedure.description) > 40
        if plan.procedure.model_parameter == "spec_path":
            assert plan.parameters["spec_path"] == str(two_specs[0 if plan.model == "model-a" else 1])
        else:
            assert plan.parameters == {"model": plan.model}


def test_every_entrypoint_exists_and_takes_the_model_parameter():
    import ast

    for item in PROCEDURES:
        path, function = item.entrypoint.split(":")
        source = ROOT / path
        if not source.exists():  # written by a colleague; the serve process names it as not served
            pytest.skip(f"{path} does not exist yet")
        tree = ast.parse(source.read_text())
        functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert function in functions, item.entrypoint
        assert item.model_parameter in [a.arg for a in functions[function].args.args], item.entrypoint


def _next_runs(cron: str, n: int) -> list[datetime]:
    from prefect.server.schemas.schedules import CronSchedule

    schedule = CronSchedule(cron=cron, timezone=SCHEDULE_TIMEZONE)  # raises on an invalid cron
    return asyncio.run(schedule.get_dates(n=n, start=datetime(2026, 2, 1, tzinfo=UTC)))


def test_schedules_are_valid_cron_in_utc(two_specs):
    plans = plan_deployments(two_specs)
    scheduled = {plan.procedure.key for plan in plans if plan.crons}
    assert scheduled == {"compact-log", "daily-maintenance", "weekly-maintenance", "monthly-maintenance",
                         "quarterly-maintenance"}
    assert SCHEDULE_TIMEZONE == "UTC"
    compaction = _next_runs(MAINTENANCE_CRONS["compact-log"], 1)[0]
    assert (compaction.hour, compaction.minute) == (1, 30)  # before the daily checks read yesterday
    daily = _next_runs(MAINTENANCE_CRONS["daily-maintenance"], 2)
    assert [(d.day, d.hour, d.utcoffset().total_seconds()) for d in daily] == [(1, 2, 0), (2, 2, 0)]
    weekly = _next_runs(MAINTENANCE_CRONS["weekly-maintenance"], 2)
    assert {d.weekday() for d in weekly} == {0} and (weekly[1] - weekly[0]).days == 7
    monthly = _next_runs(MAINTENANCE_CRONS["monthly-maintenance"], 3)
    assert [(d.month, d.day) for d in monthly] == [(2, 1), (3, 1), (4, 1)]
    quarterly = _next_runs(MAINTENANCE_CRONS["quarterly-maintenance"], 3)
    assert [(d.year, d.month, d.day) for d in quarterly] == [(2026, 4, 1), (2026, 7, 1), (2026, 10, 1)]
    for deployment in prefect_yaml(plans)["deployments"]:
        for schedule in deployment["schedules"]:
            assert schedule["timezone"] == "UTC"
            _next_runs(schedule["cron"], 1)


def test_a_scheduled_refresh_runs_the_retrain_daily_with_refresh_set(write_spec):
    from deployments.catalog import REFRESH_CRON, runner_deployments

    spec = write_spec(name="model-r", retrain={"refresh_after_days": 90})
    (plan,) = plan_deployments([spec], procedures=["retrain"])
    assert plan.crons == [REFRESH_CRON] and plan.schedule_parameters == {"refresh": True,
                                                                          "reason": "daily refresh schedule"}
    assert plan.triggers, "the drift and accuracy trigger stays beside the schedule"
    (document,) = prefect_yaml([plan])["deployments"]
    assert document["schedules"][0]["parameters"] == {"refresh": True, "reason": "daily refresh schedule"}
    assert "refresh" not in document["parameters"]  # a manual or triggered run is no refresh
    (deployment,), _ = runner_deployments([plan])
    assert deployment.schedules[0].parameters == {"refresh": True, "reason": "daily refresh schedule"}


def test_a_model_trained_on_the_production_log_gets_the_daily_refresh_schedule_for_its_catch_up(write_spec):
    from deployments.catalog import REFRESH_CRON

    log = {"kind": "production", "window_days": 14}
    (plan,) = plan_deployments([write_spec(name="model-l", data=log)], procedures=["retrain"])
    assert plan.crons == [REFRESH_CRON] and plan.schedule_parameters["refresh"] is True
    off = write_spec(name="model-n", data=log, retrain={"catch_up_lagging_labels": False})
    (plan,) = plan_deployments([off], procedures=["retrain"])
    assert plan.crons == [] and plan.schedule_parameters == {} and plan.triggers
    (plan,) = plan_deployments([write_spec(name="model-f")], procedures=["retrain"])  # a file's rows never lag
    assert plan.crons == []


def test_drift_and_accuracy_share_one_trigger_debounced_by_the_model_cooldown(two_specs):
    plans = {(p.model, p.procedure.key): p for p in plan_deployments(two_specs)}
    (retrain,) = plans[("model-b", "retrain")].triggers
    assert retrain["expect"] == sorted([events.DRIFT_DETECTED, events.HEALTH_DEGRADED])
    assert retrain["match"] == {"prefect.resource.id": "steward.model.model-b", events.RETRAIN_LABEL: "wanted"}
    assert (retrain["posture"], retrain["threshold"], retrain["within"]) == ("Reactive", 1, 6 * 3600)
    assert retrain["for_each"] == ["prefect.resource.id"]
    assert plans[("model-a", "retrain")].triggers[0]["within"] == 24 * 3600
    assert "force" not in retrain["parameters"]  # a trigger never bypasses the flow's cooldown and budget


def test_trigger_parameters_from_the_payload_are_typed():
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    plan = next(p for p in plan_deployments([EXAMPLE_SPEC]) if p.procedure.key == "notify")
    trigger = plan.triggers[0]
    DeploymentEventTrigger(**trigger)  # the shape Prefect accepts
    event = {"event": events.PROMOTED, "occurred": datetime(2026, 1, 2, 3, 4, 5),
             "payload": {"model": "credit-default", "version": "4", "steps": [1, 5], "share": 0.25}}

    class Event(dict):
        __getattr__ = dict.__getitem__

    context = HydrationContext(render_jinja=True, jinja_context={"event": Event(event)})
    values = hydrate(trigger["parameters"], context)
    assert values["payload"] == event["payload"]
    assert values["version"] == "4" and values["event"] == events.PROMOTED
    assert values["occurred"] == "2026-01-02T03:04:05"
    del event["payload"]["version"]
    assert hydrate(trigger["parameters"], context)["version"] is None


def test_the_notification_says_what_happened_to_which_version_and_why():
    from deployments.notify import notification_text

    occurred = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert notification_text("credit-default", events.ROLLED_BACK, "2", "error spike", occurred) == (
        "credit-default: rolled back to v2 at 2026-01-02 03:04:05 UTC. Why: error spike")
    assert notification_text("credit-default", events.PROMOTED, None, None, None) == (
        "credit-default: promoted. Why: no reason given")


def test_unknown_procedures_and_duplicate_models_are_refused(write_spec):
    spec = write_spec(name="model-c")
    with pytest.raises(KeyError, match="unknown procedures"):
        plan_deployments([spec], ["retrain", "retrian"])
    with pytest.raises(ValueError, match="more than one spec"):
        plan_deployments([spec, spec])
    with pytest.raises(KeyError):
        procedure("nope")


def test_prefect_yaml_agrees_with_the_catalog():
    on_disk = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    from deployments.catalog import COMPOSE_GATEWAY_URL

    assert on_disk == prefect_yaml(plan_deployments([EXAMPLE_SPEC], gateway_url=COMPOSE_GATEWAY_URL)), (
        "prefect.yaml is out of date: uv run python -m deployments.catalog examples/credit_default/spec.yaml > prefect.yaml"
    )
    assert {d["work_pool"]["name"] for d in on_disk["deployments"]} == {"steward-pool"}
    assert len({(d["entrypoint"], d["name"]) for d in on_disk["deployments"]}) == len(PROCEDURES)


def test_prefect_yaml_deployments_load_as_prefect_deployments():
    """The trigger and schedule shapes in prefect.yaml are the ones `prefect deploy` accepts."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron

    on_disk = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in on_disk["deployments"]:
        for trigger in deployment.get("triggers", []):
            DeploymentEventTrigger(**trigger)
        for schedule in deployment["schedules"]:
            Cron(schedule["cron"], timezone=schedule["timezone"])
