"""Every Steward deployment, per model: parameters, schedules, tags and event triggers.

One catalog feeds both ways of running the flows, so they cannot disagree:

* the embedded mode: :func:`runner_deployments` turns the plans into ``RunnerDeployment``
  objects for ``prefect.serve`` (``deployments/serve.py``, ``steward deployments``);
* at scale: :func:`prefect_yaml` renders the same plans as ``prefect.yaml`` for
  ``prefect deploy`` to a process, Docker or Kubernetes work pool
  (``python -m deployments.catalog examples/credit_default/spec.yaml > prefect.yaml``).

The flows' own signatures give the typed parameters the Prefect UI renders as a form.

The plans themselves are plain data (:class:`DeploymentPlan`) built from the model specs
without importing Prefect or the flows; only :func:`runner_deployments` imports them.

Triggers (docs/operations.md explains them):

* ``steward.model.drift-detected`` and an accuracy ``steward.model.health-degraded`` (both carry
  the resource label ``steward.retrain: wanted``) start ``retrain`` for that model through one
  trigger, **debounced**: a reactive trigger with ``threshold=1`` and ``within`` = the spec's
  retrain cooldown fires on the first event and then ignores the model's events until the
  window ends (one bucket per model via ``for_each``), so drift and an accuracy loss found by
  the same maintenance run start one retrain. The retrain flow enforces the cooldown and the
  weekly budget again, so a misfire cannot exceed them. The trigger passes the event's ``window_end`` as the
  retrain's ``as_of``, so that check runs on the event time of the check that fired it (a backfill of a
  past window is judged as it would have been then); the debounce itself is on the server's clock.
* ``steward.model.candidate-registered`` (emitted by retrain) starts ``validate`` for that version;
  ``steward.model.candidate-validated`` starts ``canary-promote`` for the validated version.
* ``steward.model.promoted`` and ``steward.model.rolled-back`` start ``notify``.

Payload values reach the flows typed: a parameter is ``{"__prefect_kind": "json", "value":
{"__prefect_kind": "jinja", "template": "{{ event.payload.get('x') | tojson }}"}}``, which the
server renders to JSON text and parses back, so numbers, nulls, lists and objects stay what
they were in the event instead of becoming strings.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import inspect
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from steward import events
from steward.spec import load_spec
from steward.training.retrain_decision import catches_up

#: The one place the maintenance cadences are decided: cron expressions, evaluated in UTC.
SCHEDULE_TIMEZONE = "UTC"
MAINTENANCE_CRONS: dict[str, str] = {
    "compact-log": "30 1 * * *",  # 01:30 every day, so the daily checks read compacted days
    "daily-maintenance": "0 2 * * *",  # 02:00 every day
    "weekly-maintenance": "0 3 * * 1",  # 03:00 on Mondays
    "monthly-maintenance": "0 4 1 * *",  # 04:00 on the 1st
    "quarterly-maintenance": "0 5 1 1,4,7,10 *",  # 05:00 on the 1st of each quarter
}
#: The retrain's daily schedule for a scheduled refresh (retrain.refresh_after_days) or a catch-up
#: (retrain.catch_up_lagging_labels): it retrains only when one is due (after the daily checks, so a drift
#: retrain of the same night comes first).
REFRESH_CRON = "30 2 * * *"
REFRESH_PARAMETERS: dict[str, Any] = {"refresh": True, "reason": "daily refresh schedule"}

DEFAULT_WORK_POOL = "steward-pool"

#: Job variables of the Docker work pool (prefect-docker): every flow run is a container of the worker
#: image built on this engine, on host networking, with the data folder (specs, their data, the
#: prediction log) bound at the same path as on the host. ``prefect deploy`` fills the ``{{ $VAR }}``
#: from its environment (the compose file's ``deploy`` service sets them). A process pool ignores them.
DOCKER_JOB_VARIABLES: dict[str, Any] = {
    "image": "steward-worker:{{ $STEWARD_VERSION }}",
    "image_pull_policy": "Never",  # built here by `steward images build`, never pulled
    "network_mode": "host",
    "volumes": ["{{ $STEWARD_DATA_DIR }}:{{ $STEWARD_DATA_DIR }}"],
    "env": {
        "STEWARD_TRACKING_URI": "{{ $STEWARD_TRACKING_URI }}",
        "MLFLOW_TRACKING_URI": "{{ $STEWARD_TRACKING_URI }}",
        "STEWARD_ARTIFACT_ROOT": "{{ $STEWARD_ARTIFACT_ROOT }}",
        "STEWARD_STORE_URI": "{{ $STEWARD_STORE_URI }}",
        "STEWARD_ADMIN_TOKEN": "{{ $STEWARD_ADMIN_TOKEN }}",
        # MLflow's account; Prefect's auth string needs no line: the worker passes its Prefect settings on
        "MLFLOW_TRACKING_USERNAME": "{{ $MLFLOW_TRACKING_USERNAME }}",
        "MLFLOW_TRACKING_PASSWORD": "{{ $MLFLOW_TRACKING_PASSWORD }}",
        "STEWARD_HOME_ACCESS": "group",  # the data folder is shared with the host's operators
    },
    "labels": {"org.steward.role": "flow-run"},
    "auto_remove": True,
    "stream_output": True,
}
COMPOSE_GATEWAY_URL = "http://127.0.0.1:8080"  # gateway-1 of deployments/docker-compose.yml (host networking)


@dataclass(frozen=True)
class Procedure:
    """One maintenance procedure: which flow runs it and how a deployment identifies the model."""

    key: str
    entrypoint: str  # "<file>:<function>", relative to the repository root
    description: str
    model_parameter: Literal["spec_path", "model"] = "spec_path"
    concurrency_limit: int | None = None
    uses_gateway: bool = False  # takes ``gateway_url``; the catalog fills it in when it knows the gateway

    @property
    def module(self) -> str:
        return self.entrypoint.split(":")[0].removesuffix(".py").replace("/", ".")

    @property
    def function(self) -> str:
        return self.entrypoint.split(":")[1]


PROCEDURES: tuple[Procedure, ...] = (
    Procedure("health-check", "flows/health_check.py:health_check",
              "Check the model's performance, data quality, accuracy, infrastructure and cost over a recent "
              "window; records findings and emits steward.model.health-degraded when something is wrong.",
              uses_gateway=True),
    Procedure("drift-report", "flows/drift_report.py:drift_report",
              "Compare recent traffic with the training data (Evidently report); emits "
              "steward.model.drift-detected when the drift is material."),
    Procedure("retrain", "flows/retrain.py:retrain",
              "Train a new candidate version on fresh data with full lineage. Respects the spec's cooldown "
              "and weekly budget unless 'force' is ticked. Started automatically by drift and accuracy events.",
              concurrency_limit=1),
    Procedure("validate", "flows/validate.py:validate",
              "Gate a candidate against the current champion on the same held-out data; a pass makes it "
              "challenger and emits steward.model.candidate-validated."),
    Procedure("adopt", "flows/adopt.py:adopt",
              "Bring a version registered by plain MLflow code under maintenance: its signature checked against "
              "the spec, the 'reference' and 'holdout' sets (paths or fsspec URLs) against the schema, its lineage "
              "and artifact digest recorded, then the bootstrap gate. Other versions, aliases and tags are left "
              "as they were."),
    Procedure("canary-promote", "flows/canary_promote.py:canary_promote",
              "Shift traffic to the challenger step by step (the spec's canary plan), analysing each step; "
              "promote at the end or roll back on harm. Started automatically when a candidate is validated.",
              concurrency_limit=1),
    Procedure("rollback", "flows/rollback.py:rollback",
              "Return the champion alias to the previous champion now. Say why in 'reason'.",
              model_parameter="model", concurrency_limit=1),
    Procedure("ab-test", "flows/ab_test.py:ab_test",
              "Sticky A/B test of the challenger against the champion: 'start' it (traffic share), 'analyse' it "
              "(always-valid sequential test, sample-ratio check) or 'stop' it."),
    Procedure("blue-green", "flows/blue_green.py:blue_green",
              "Smoke-test the challenger as the idle colour, switch all traffic to it at once, watch it against "
              "the champion's last window, and switch back on harm.", uses_gateway=True, concurrency_limit=1),
    Procedure("shadow-analysis", "flows/shadow.py:shadow_analysis",
              "Shadow the challenger on live traffic ('start', 'analyse', 'stop'); compare its answers and latency "
              "with the champion's without serving them."),
    Procedure("backtest", "flows/backtest.py:backtest",
              "Replay a labelled history (the spec's data.path or 'data') window by window through Steward's "
              "health, drift, retrain and gate decisions on an event-time clock, beside frozen, retrain-every-window "
              "and oracle baselines; publishes the summary and writes an HTML report."),
    Procedure("compact-log", "flows/compaction.py:compact_log",
              "Merge each finished day of the model's prediction log and labels into a few large, time-sorted "
              "files; safe while gateways write and checks read. Replaced files go on a later run, after "
              "'grace_minutes'.", model_parameter="model", concurrency_limit=1),
    Procedure("daily-maintenance", "flows/maintenance.py:daily_maintenance",
              "Daily maintenance: health check, drift report, clean-up past retention, critical alerts."),
    Procedure("weekly-maintenance", "flows/maintenance.py:weekly_maintenance",
              "Weekly maintenance: performance trends, data quality assessment, cost analysis."),
    Procedure("monthly-maintenance", "flows/maintenance.py:monthly_maintenance",
              "Monthly maintenance: accuracy and drift trend, infrastructure review, security audit."),
    Procedure("quarterly-maintenance", "flows/maintenance.py:quarterly_maintenance",
              "Quarterly maintenance: comprehensive evaluation and model card, technology review."),
    Procedure("notify", "deployments/notify.py:notify",
              "Tell people that a model was promoted or rolled back (log, artifact, optional webhook). "
              "Started automatically by steward.model.promoted and steward.model.rolled-back.",
              model_parameter="model"),
)


def procedure(key: str) -> Procedure:
    for item in PROCEDURES:
        if item.key == key:
            return item
    raise KeyError(f"no procedure {key!r}; known: {[p.key for p in PROCEDURES]}")


@dataclass(frozen=True)
class ModelEntry:
    """What the catalog needs to know about one model, read from its spec."""

    name: str
    spec_path: str
    cooldown_hours: float
    refresh_after_days: float | None = None
    catches_up: bool = False  # retrain_decision.catches_up: a catch-up may be due

    @classmethod
    def from_spec(cls, spec_path: str | Path) -> ModelEntry:
        spec = load_spec(spec_path)
        return cls(name=spec.name, spec_path=str(spec_path), cooldown_hours=spec.retrain.cooldown_hours,
                   refresh_after_days=spec.retrain.refresh_after_days,
                   catches_up=catches_up(spec))

    @property
    def refreshes(self) -> bool:
        """Whether its retrain needs the daily refresh schedule: a scheduled refresh or a catch-up may be due."""
        return self.refresh_after_days is not None or self.catches_up


@dataclass(frozen=True)
class DeploymentPlan:
    """One deployment as plain data: the same dict shapes prefect.yaml uses."""

    procedure: Procedure
    model: str
    parameters: dict[str, Any]
    tags: list[str]
    crons: list[str] = field(default_factory=list)
    triggers: list[dict[str, Any]] = field(default_factory=list)
    schedule_parameters: dict[str, Any] = field(default_factory=dict)  # what a scheduled run sets besides

    @property
    def name(self) -> str:
        return self.model

    @property
    def description(self) -> str:
        return f"{self.procedure.description} (model: {self.model})"


def typed(expression: str) -> dict[str, Any]:
    """A trigger parameter that keeps the JSON type of ``expression`` (a Jinja expression over ``event``)."""
    return {"__prefect_kind": "json", "value": {"__prefect_kind": "jinja", "template": f"{{{{ {expression} | tojson }}}}"}}


def text(template: str) -> dict[str, Any]:
    """A trigger parameter rendered as a string (a Jinja template over ``event``)."""
    return {"__prefect_kind": "jinja", "template": template}


def payload_value(key: str) -> dict[str, Any]:
    """The event payload's ``key``, typed; ``null`` when the event does not carry it."""
    return typed(f"event.payload.get('{key}')")


def _event_trigger(name: str, description: str, model: str, expect: Sequence[str], *, within_seconds: float,
                   parameters: dict[str, Any], extra_match: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "type": "event",
        "name": name,
        "description": description,
        "enabled": True,
        "match": {"prefect.resource.id": events.resource_id(model), **(extra_match or {})},
        "expect": sorted(expect),
        "for_each": ["prefect.resource.id"],
        "posture": "Reactive",
        "threshold": 1,
        "within": int(within_seconds),
        "parameters": parameters,
    }


def _triggers(key: str, entry: ModelEntry) -> list[dict[str, Any]]:
    cooldown = max(entry.cooldown_hours * 3600.0, 60.0)
    model = entry.name
    if key == "retrain":
        return [
            _event_trigger(
                f"retrain {model} on drift or accuracy loss",
                f"Drift on {model}, or a health check that found its accuracy degraded, starts one retrain; "
                f"further such events are ignored for the retrain cooldown ({entry.cooldown_hours:g} h).",
                model, [events.DRIFT_DETECTED, events.HEALTH_DEGRADED], within_seconds=cooldown,
                extra_match={events.RETRAIN_LABEL: "wanted"},
                parameters={
                    "reason": text(
                        f"{{{{ 'drift detected' if event.event == '{events.DRIFT_DETECTED}' else 'accuracy degraded' }}}}: "
                        "{{ event.payload.get('reason', 'no reason given') }}"
                    ),
                    # the event time of the check that fired: a backfill's retrain is judged (cooldown,
                    # budget, data window) at its past window end, not at the wall clock
                    "as_of": payload_value("window_end"),
                    # what the check found, so the retrain decides as the backtest does (one code path):
                    # the metric that fell (health), the announced columns (drift), the window read again
                    "trigger_metric": payload_value("trigger_metric"),
                    "primary_dropped": typed("event.payload.get('primary_dropped', false)"),
                    "also_fell": payload_value("also_fell"),
                    "drift_columns": typed("event.payload.get('columns', []) | map(attribute='column') | list"),
                    "window_start": payload_value("window_start"),
                },
            ),
        ]
    if key == "validate":
        return [
            _event_trigger(
                f"validate {model} when a candidate is registered",
                f"A candidate of {model} registered by retrain is validated against the champion.",
                model, [events.CANDIDATE_REGISTERED], within_seconds=0,
                parameters={"version": payload_value("version")},
            )
        ]
    if key == "canary-promote":
        return [
            _event_trigger(
                f"canary {model} when a candidate is validated",
                f"A validated candidate of {model} starts a canary rollout of that version.",
                model, [events.CANDIDATE_VALIDATED], within_seconds=0,
                parameters={"version": payload_value("version")},
            )
        ]
    if key == "notify":
        return [
            _event_trigger(
                f"notify on {model} promotion or rollback",
                f"Tell people when {model} is promoted or rolled back.",
                model, [events.PROMOTED, events.ROLLED_BACK], within_seconds=0,
                parameters={
                    "event": typed("event.event"),
                    "version": payload_value("version"),
                    "reason": payload_value("reason"),
                    "payload": typed("event.payload"),
                    "occurred": typed("event.occurred.isoformat()"),
                },
            )
        ]
    return []


def plan_deployments(spec_paths: Iterable[str | Path], procedures: Iterable[str] | None = None,
                     gateway_url: str | None = None) -> list[DeploymentPlan]:
    """Every deployment of every model (or only the named ``procedures``).

    ``gateway_url`` becomes the default ``gateway_url`` of the procedures that talk to the gateway.
    """
    entries = [ModelEntry.from_spec(path) for path in spec_paths]
    names = [entry.name for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"more than one spec names the model(s) {duplicates}; each model needs one spec")
    wanted = set(procedures) if procedures is not None else None
    if wanted is not None:
        unknown = wanted - {p.key for p in PROCEDURES}
        if unknown:
            raise KeyError(f"unknown procedures {sorted(unknown)}; known: {[p.key for p in PROCEDURES]}")
    plans = []
    for entry in entries:
        for item in PROCEDURES:
            if wanted is not None and item.key not in wanted:
                continue
            parameters: dict[str, Any] = (
                {"spec_path": entry.spec_path} if item.model_parameter == "spec_path" else {"model": entry.name}
            )
            if item.uses_gateway and gateway_url:
                parameters["gateway_url"] = gateway_url
            crons = [MAINTENANCE_CRONS[item.key]] if item.key in MAINTENANCE_CRONS else []
            refreshes = item.key == "retrain" and entry.refreshes
            plans.append(DeploymentPlan(
                procedure=item, model=entry.name, parameters=parameters,
                tags=["steward", f"model:{entry.name}", f"procedure:{item.key}"],
                crons=[REFRESH_CRON] if refreshes else crons, triggers=_triggers(item.key, entry),
                schedule_parameters=dict(REFRESH_PARAMETERS) if refreshes else {},
            ))
    return plans


# --- prefect.yaml -------------------------------------------------------------------------------

def prefect_yaml(plans: Sequence[DeploymentPlan], work_pool: str = DEFAULT_WORK_POOL,
                 job_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``prefect.yaml`` document for ``prefect deploy --all`` (code baked into the worker image).

    ``job_variables`` (default: :data:`DOCKER_JOB_VARIABLES`) go to every deployment's work pool.
    """
    job_variables = DOCKER_JOB_VARIABLES if job_variables is None else job_variables
    deployments = []
    for plan in plans:
        document: dict[str, Any] = {
            "name": plan.name,
            "entrypoint": plan.procedure.entrypoint,
            "description": plan.description,
            "tags": list(plan.tags),
            "parameters": dict(plan.parameters),
            "work_pool": {"name": work_pool, "job_variables": copy.deepcopy(job_variables)},
            "schedules": [{"cron": cron, "timezone": SCHEDULE_TIMEZONE, "active": True,
                           **({"parameters": dict(plan.schedule_parameters)} if plan.schedule_parameters else {})}
                          for cron in plan.crons],
        }
        if plan.procedure.concurrency_limit:
            document["concurrency_limit"] = plan.procedure.concurrency_limit
        if plan.triggers:
            document["triggers"] = [dict(trigger) for trigger in plan.triggers]
        deployments.append(document)
    return {
        "name": "steward",
        "prefect-version": "3.8.8",
        "build": None,
        "push": None,
        # The worker image holds the code at /opt/steward (deployments/docker/Dockerfile.worker).
        "pull": [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/steward"}}],
        "deployments": deployments,
    }


PREFECT_YAML_HEADER = """\
# Generated by deployments/catalog.py; do not edit by hand. Regenerate with
#   uv run python -m deployments.catalog examples/credit_default/spec.yaml > prefect.yaml
# tests/unit/test_catalog.py checks that this file and the catalog agree.
# Deploy to a work pool:  prefect work-pool create steward-pool --type docker   (or process / kubernetes)
#                         prefect deploy --all      (with the environment docs/operations.md names)
"""


def render_prefect_yaml(plans: Sequence[DeploymentPlan], work_pool: str = DEFAULT_WORK_POOL,
                        job_variables: dict[str, Any] | None = None) -> str:
    return PREFECT_YAML_HEADER + yaml.safe_dump(prefect_yaml(plans, work_pool, job_variables), sort_keys=False,
                                                width=110)


# --- RunnerDeployments for prefect.serve ------------------------------------------------------

class FlowUnavailable(RuntimeError):
    """A procedure's flow cannot be imported (not written yet, or broken)."""


def load_flow(item: Procedure) -> Any:
    """Import the procedure's flow and check it takes the model parameter the catalog passes."""
    try:
        module = importlib.import_module(item.module)
    except ModuleNotFoundError as error:
        if error.name != item.module:
            raise
        raise FlowUnavailable(f"{item.key}: {item.entrypoint} does not exist") from error
    flow = getattr(module, item.function, None)
    if flow is None:
        raise FlowUnavailable(f"{item.key}: {item.module} has no {item.function}")
    parameters = inspect.signature(flow.fn).parameters
    if item.model_parameter not in parameters:
        raise FlowUnavailable(
            f"{item.key}: {item.entrypoint} takes {list(parameters)}, not {item.model_parameter!r} as the catalog expects"
        )
    return flow


def runner_deployments(plans: Sequence[DeploymentPlan], *, skip_unavailable: bool = False) -> tuple[list, list[str]]:
    """``RunnerDeployment`` objects for ``prefect.serve``; also the problems of the procedures left out.

    With ``skip_unavailable`` a procedure whose flow cannot be imported is left out and named in
    the returned problems (the caller must show them); otherwise it raises :class:`FlowUnavailable`.
    """
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.schedules import Cron

    built, problems = [], []
    flows: dict[str, Any] = {}
    for plan in plans:
        key = plan.procedure.key
        if key not in flows:
            try:
                flows[key] = load_flow(plan.procedure)
            except FlowUnavailable as error:
                if not skip_unavailable:
                    raise
                flows[key] = None
                problems.append(str(error))
        flow = flows[key]
        if flow is None:
            continue
        built.append(flow.to_deployment(
            name=plan.name,
            description=plan.description,
            tags=list(plan.tags),
            parameters=dict(plan.parameters),
            schedules=[Cron(cron, timezone=SCHEDULE_TIMEZONE, parameters=dict(plan.schedule_parameters))
                       for cron in plan.crons] or None,
            triggers=[DeploymentEventTrigger(**trigger) for trigger in plan.triggers] or None,
            concurrency_limit=plan.procedure.concurrency_limit,
        ))
    return built, problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print prefect.yaml for the given model specs.")
    parser.add_argument("specs", nargs="+", help="model spec paths, as the workers will see them")
    parser.add_argument("--work-pool", default=DEFAULT_WORK_POOL)
    parser.add_argument("--gateway-url", default=COMPOSE_GATEWAY_URL, help="the gateway as the workers reach it")
    args = parser.parse_args(argv)
    sys.stdout.write(render_prefect_yaml(plan_deployments(args.specs, gateway_url=args.gateway_url), args.work_pool))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
