"""``steward demo``: the whole maintenance loop, on the scenario simulator, against the real local stack.

1. ``steward up``'s Prefect and MLflow servers start; v1 is trained from a file, validated and
   made champion (in this process, as flow runs on that Prefect server).
2. The gateway and the deployments process start. Simulated days are replayed through the
   gateway over HTTP, each request at its own time (the admin event-time header) and each
   day's labels at the day's end: the labels arrive after the predictions, as in production.
3. After each day the daily maintenance flow runs with ``as_of`` = the day's end (the demo's
   clock). On the drift day a recession starts: customers carry more debt and use more of their
   limit, and the old signs of risk stop meaning what they did. Maintenance finds it and emits
   the events.
4. The Prefect trigger, not this program, starts ``retrain`` in the deployments process; the
   candidate-registered trigger validates the candidate, the candidate-validated trigger
   canaries it to 100% while live traffic (with prompt labels) flows.
5. Someone then retrains by hand, through the retrain deployment, from a file export whose
   labels a faulty join inverted. Judged on its own held-out rows the candidate looks fine, so
   the triggers validate and canary it; live traffic shows otherwise and the canary rolls it
   back at its first step.
6. The timeline, where the reports are, and the URLs of the UIs; the stack stays up.

Every wait is bounded and says what it waited for; :class:`DemoOutcome` (also written as
JSON) is what the test of the demo asserts on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from steward import stack
from steward.config import Settings
from steward.credentials import PREFECT_AUTH_ENV
from steward.simulation.demo import (
    MODEL,
    DemoConfig,
    DemoError,
    DemoOutcome,
    TimelineEntry,
    brief,
    broken_export,
    demo_scenario,
    demo_specs,
    ensure_admin_token,
)
from steward.simulation.examples import EXAMPLE_DAYS

RETRAIN_DEPLOYMENT = f"retrain/{MODEL}"
VALIDATION_TAG = "steward.validation.status"
AUTOMATION_EXECUTED = "prefect.automation.action.executed"


# --------------------------------------------------------------------------------------- reading
class PrefectAPI:
    """The few reads the demo makes of the Prefect server, posted directly (see docs/operations.md)."""

    def __init__(self, api_url: str) -> None:
        # a server with an API auth string (the compose stack) wants it as HTTP basic auth, as Prefect's client sends it
        user, _, password = os.environ.get(PREFECT_AUTH_ENV, "").partition(":")
        self.client = httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=30,
                                   auth=(user, password) if user else None)

    def flow_runs(self, since: datetime) -> list[dict[str, Any]]:
        body = {"flow_runs": {"expected_start_time": {"after_": since.isoformat()}},
                "sort": "EXPECTED_START_TIME_ASC", "limit": 200, "offset": 0}
        runs = self.client.post("flow_runs/filter", json=body).raise_for_status().json()
        flows = {f["id"]: f["name"] for f in
                 self.client.post("flows/filter", json={"limit": 200, "offset": 0}).raise_for_status().json()}
        for run in runs:
            run["flow_name"] = flows.get(run["flow_id"], "?")
        return runs

    def automation_runs(self, since: datetime) -> dict[str, str]:
        """Flow run id -> name of the automation whose action created it."""
        made: dict[str, str] = {}
        for event in self.events(AUTOMATION_EXECUTED, since):
            automation = event["resource"].get("prefect.resource.name", "an automation")
            for related in event.get("related", []):
                if related.get("prefect.resource.role") == "flow-run":
                    made[related["prefect.resource.id"].removeprefix("prefect.flow-run.")] = automation
        return made

    def events(self, name: str, since: datetime) -> list[dict[str, Any]]:
        """Events called ``name`` since ``since``, newest page only (50: more than a demo emits)."""
        until = datetime.now(UTC) + timedelta(minutes=1)
        body = {"filter": {"occurred": {"since": since.isoformat(), "until": until.isoformat()},
                           "event": {"name": [name]}}, "limit": 50}
        return self.client.post("events/filter", json=body).raise_for_status().json()["events"]


# --------------------------------------------------------------------------------------- the story
class Story:
    """Runs the demo and narrates it; one instance per run."""

    def __init__(self, settings: Settings, stack_config: stack.StackConfig, config: DemoConfig,
                 echo: Callable[[str], None] = print) -> None:
        self.settings = settings
        self.stack_config = stack_config
        self.config = config
        self.echo = echo
        self.outcome = DemoOutcome(started=datetime.now(UTC))
        self.paths = demo_specs(settings.home / "demo", config)
        self.end = datetime.now(UTC).replace(second=0, microsecond=0)
        self.scenario = demo_scenario(self.end, config)
        self.gateway_url = f"http://{stack_config.host}:{stack_config.gateway_port}"
        self.prefect = PrefectAPI(stack_config.prefect_api_url)
        self._registry = None

    # -- narration
    def note(self, what: str, why: str = "", at: datetime | None = None) -> None:
        simulated = at is not None
        self.outcome.timeline.append(TimelineEntry(at or datetime.now(UTC), what, why, simulated))
        self.echo(f"  {brief(what)}" + (f" — {brief(why)}" if why else ""))

    def stage(self, title: str) -> None:
        self.echo(f"\n== {title}  [{time.monotonic() - self._started:5.0f} s]")

    @property
    def registry(self):
        if self._registry is None:
            from steward.registry.adapter import Registry

            self._registry = Registry.from_settings(self.settings)
        return self._registry

    def wait(self, condition: Callable[[], Any], what: str, timeout: float | None = None) -> Any:
        deadline = time.monotonic() + (timeout or self.config.stage_timeout)
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise DemoError(f"gave up waiting for {what} after {timeout or self.config.stage_timeout:.0f} s; "
                                f"see the flow runs at {self.ui('runs')} and the logs under {stack.log_dir(self.settings)}")
            time.sleep(1.0)

    def ui(self, page: str = "") -> str:
        return f"http://{self.stack_config.host}:{self.stack_config.prefect_port}/{page}"

    # -- run
    def run(self) -> DemoOutcome:
        self._started = time.monotonic()
        self.stage("1. Prefect and MLflow servers; v1 trained, validated, champion")
        self.start_services(only=("prefect", "mlflow"))
        self.train_first_version()
        self.stage("2. the gateway and the deployments (with their triggers) start")
        self.start_services()
        from steward.simulation.http_traffic import TrafficSender
        from steward.spec import load_spec

        spec = load_spec(self.paths.spec)
        headers = {"authorization": f"Bearer {os.environ['STEWARD_ADMIN_TOKEN']}", "x-steward-actor": "steward-demo"}
        with TrafficSender(self.gateway_url, spec, concurrency=self.config.concurrency, headers=headers) as replayer:
            for day in range(self.config.days):
                self.replay_day(replayer, day)
        self.follow_retrain()
        self.follow_broken_candidate()
        self.outcome.seconds = time.monotonic() - self._started
        self.finish()
        return self.outcome

    def start_services(self, only: tuple[str, ...] | None = None) -> None:
        """Start the stack (all its services, or ``only`` these); the compose stack's test overrides it."""
        stack.start(self.settings, self.stack_config, echo=self.echo, only=only)

    def train_first_version(self) -> None:
        from flows.retrain import retrain
        from flows.validate import validate

        if self.registry.model_exists(MODEL) and self.registry.list_versions(MODEL):
            raise DemoError(f"{self.settings.home} already holds versions of {MODEL}: run the demo in a new home "
                            "(`steward demo --home <new folder>`) or stop this one (`steward down`) and delete it")
        result = retrain(spec_path=str(self.paths.bootstrap), reason="demo: first version from the example history",
                         force=True)
        outcome = validate(spec_path=str(self.paths.spec), version=result.version)
        if outcome.action != "champion":
            raise DemoError(f"v{result.version} was not made champion ({outcome.action}); see `steward history {MODEL}`")
        self.note(f"v{result.version} trained on {EXAMPLE_DAYS} days of history, validated, made champion",
                  f"held-out ROC AUC {result.metrics.get('roc_auc', float('nan')):.3f}")

    def day_bounds(self, day: int) -> tuple[datetime, datetime]:
        start = self.end - timedelta(days=self.config.days - day)
        return start, start + timedelta(days=1)

    def replay_day(self, replayer: Any, day: int) -> None:
        from flows.maintenance import daily_maintenance

        start, end = self.day_bounds(day)
        drifted = day >= self.config.drift_day
        self.stage(f"day {day + 1} of {self.config.days}: {start:%a %d %b}" + (" — the recession starts" if
                                                                                 day == self.config.drift_day else ""))
        frame = self.scenario.day(EXAMPLE_DAYS + day)
        before = replayer.summary.ok, replayer.summary.labels_sent
        summary = replayer.replay(frame, rows_per_request=self.config.rows_per_request,
                                  labels_at=end - timedelta(minutes=1))
        if summary.failed or summary.client_errors:
            raise DemoError(f"the gateway refused or failed {summary.client_errors + summary.failed} replayed "
                            f"requests; see {stack.log_dir(self.settings) / 'gateway.log'}")
        self.note(f"replayed {len(frame)} predictions in {summary.ok - before[0]} requests, "
                  f"{summary.labels_sent - before[1]} labels at the day's end",
                  "covariate shift of utilization and debt ratio; late payments and debt reversed" if drifted else "",
                  at=start)
        self.flush_log()
        run = daily_maintenance(spec_path=str(self.paths.spec), as_of=end)
        for task in run.tasks_completed:
            if task.name in ("health check", "drift report"):
                self.note(f"daily maintenance, {task.name}: {task.detail}", at=end)
        announced = any("drift-detected" in action for action in run.actions_taken)
        if announced and self.outcome.drift_day is None:
            self.outcome.drift_day = day + 1
            event = self.prefect.events("steward.model.drift-detected", self.outcome.started)
            if event:
                self.outcome.drift_columns = [c["column"] for c in event[0]["payload"].get("columns", [])]
                self.outcome.drift_report = event[0]["payload"].get("report_uri")

    def flush_log(self) -> None:
        """Have the gateway write what it acknowledged (it flushes every 2 s) before maintenance reads it."""
        headers = {"authorization": f"Bearer {os.environ['STEWARD_ADMIN_TOKEN']}"}
        httpx.post(f"{self.gateway_url}/admin/log/flush", headers=headers, timeout=60).raise_for_status()

    def follow_retrain(self) -> None:
        self.stage("the Prefect trigger starts retrain; validate and canary follow by their triggers")
        if self.outcome.drift_day is None:
            raise DemoError("no drift-detected event: the drift day's maintenance did not find the drift")
        live = self.live_traffic()
        try:
            run = self.wait(lambda: self._run_of("retrain"), "the triggered retrain flow run")
            automations = self.wait(lambda: self.prefect.automation_runs(self.outcome.started).get(run["id"]),
                                    "the automation that created the retrain run", timeout=30)
            self.outcome.retrain_run = run["name"]
            self.outcome.retrain_started_by = automations
            self.outcome.retrain_reason = run["parameters"].get("reason")
            self.note(f"retrain flow run {run['name']} started by the automation '{automations}'",
                      self.outcome.retrain_reason or "")
            version = self.wait(lambda: self._newest_version(after="1"), "the retrained candidate")
            self.note(f"v{version} registered as candidate (trained on the drift day's labelled production rows)")
            self.follow_rollout(version, expect="promoted")
            self.outcome.promoted_version = version
        finally:
            live.stop()

    def follow_broken_candidate(self) -> None:
        from prefect.deployments import run_deployment

        self.stage("a hand-run retrain from a broken export; the canary must stop it")
        export = broken_export(self.scenario, EXAMPLE_DAYS + self.config.days - 1)
        export.to_parquet(self.paths.folder / "data" / "export.parquet", index=False)
        newest = self._newest_version(after="0")
        live = self.live_traffic()
        try:
            run = run_deployment(RETRAIN_DEPLOYMENT, timeout=0, parameters={
                "spec_path": str(self.paths.hotfix), "force": True,
                "reason": "hotfix from the analytics export (its labels were inverted by a faulty join)",
            })
            self.note(f"retrain flow run {run.name} started by hand through the {RETRAIN_DEPLOYMENT} deployment",
                      "as from the Prefect UI's Run form, with force (past the cooldown)")
            version = self.wait(lambda: self._newest_version(after=newest), "the broken candidate")
            self.outcome.broken_version = version
            self.note(f"v{version} registered; on its own held-out rows it beats the champion")
            state = self.follow_rollout(version, expect="rolled_back")
            self.outcome.broken_result = state.phase.value
            self.outcome.broken_stopped_at_step = state.step + 1
            self.outcome.broken_reason = state.reason
        finally:
            live.stop()
        self.wait(lambda: not self._rollout_running(), "the rollback to finish", timeout=60)

    def follow_rollout(self, version: str, expect: str) -> Any:
        from steward.delivery.rollout import ROLLOUT_TAG, Phase, RolloutState

        validation = self.wait(lambda: self.registry.get_version(MODEL, version).tags.get(VALIDATION_TAG),
                               f"the validation of v{version}")
        if version == self.outcome.broken_version:
            self.outcome.broken_validation = validation
        self.note(f"v{version} validation: {validation}", "validate was started by the candidate-registered trigger")
        if validation != "passed":
            raise DemoError(f"v{version} did not pass validation; see `steward history {MODEL}`")
        seen_step = -1
        deadline = time.monotonic() + self.config.stage_timeout
        while True:
            text = self.registry.get_version(MODEL, version).tags.get(ROLLOUT_TAG)
            state = RolloutState.from_json(text) if text else None
            if state is not None and state.step != seen_step and state.phase is Phase.RAMPING:
                seen_step = state.step
                self.note(f"canary of v{version}: step {state.step + 1}, {self.config.canary_steps[state.step]:g}% "
                          "of live traffic")
                if expect == "promoted":
                    self.outcome.promotion_steps.append(self.config.canary_steps[state.step])
            if state is not None and state.phase.terminal:
                self.note(f"canary of v{version}: {state.phase.value}", state.reason or "")
                if state.phase.value != expect:
                    raise DemoError(f"the canary of v{version} ended {state.phase.value}, not {expect}: {state.reason}")
                return state
            if time.monotonic() > deadline:
                raise DemoError(f"the canary of v{version} did not end within {self.config.stage_timeout:.0f} s "
                                f"(last state: {state.phase.value if state else 'not started'}); see {self.ui('runs')}")
            time.sleep(1.0)

    def live_traffic(self) -> Any:
        """Today's traffic at ``live_rate``, labels sent as each answer arrives (the canary reads them)."""
        from steward.simulation.http_traffic import TrafficSender
        from steward.spec import load_spec

        sender = TrafficSender(self.gateway_url, load_spec(self.paths.spec), concurrency=2)
        sender.start(self.scenario.day(EXAMPLE_DAYS + self.config.days), rate_per_second=self.config.live_rate)
        return sender

    # -- readings
    def _run_of(self, flow_name: str) -> dict[str, Any] | None:
        runs = [r for r in self.prefect.flow_runs(self.outcome.started)
                if r["flow_name"] == flow_name and r.get("deployment_id")]
        return runs[0] if runs else None

    def _newest_version(self, after: str) -> str | None:
        versions = sorted(int(v.version) for v in self.registry.list_versions(MODEL))
        return str(versions[-1]) if versions and versions[-1] > int(after) else None

    def _rollout_running(self) -> bool:
        from steward.delivery.rollout import ROLLOUT_TAG, RolloutState

        for info in self.registry.list_versions(MODEL):
            text = info.tags.get(ROLLOUT_TAG)
            if text and not RolloutState.from_json(text).phase.terminal:
                return True
        return False

    # -- the end
    def finish(self) -> None:
        from steward.registry.history import CHALLENGER, CHAMPION, ChangeKind

        self.outcome.champion = self.registry.alias_version(MODEL, CHAMPION)
        self.outcome.challenger = self.registry.alias_version(MODEL, CHALLENGER)
        automations = self.prefect.automation_runs(self.outcome.started)
        for run in self.prefect.flow_runs(self.outcome.started):
            if not run.get("start_time") or run.get("parent_task_run_id"):  # subflows are part of their parent
                continue
            how = (f"started by the automation '{automations[run['id']]}'" if run["id"] in automations
                   else "a deployment run" if run.get("deployment_id") else "run by the demo")
            self.outcome.timeline.append(TimelineEntry(
                datetime.fromisoformat(run["start_time"]),
                f"flow run {run['flow_name']}/{run['name']}: {run['state_name']}", how))
        for entry in self.registry.history(MODEL):
            if entry.time >= self.outcome.started and entry.kind is not ChangeKind.TRAFFIC_PLAN and not (
                    entry.kind is ChangeKind.DELIVERY_DECISION and ": hold:" in entry.reason):
                self.outcome.timeline.append(TimelineEntry(
                    entry.time, f"registry {entry.kind.value} {entry.move()}", f"by {entry.actor}: {entry.reason}"))
        self.outcome.timeline.sort(key=lambda e: e.time)
        self.paths.outcome.write_text(self.outcome.to_json())


def run_demo(settings: Settings, stack_config: stack.StackConfig, config: DemoConfig | None = None,
             echo: Callable[[str], None] = print) -> DemoOutcome:
    """Run the story (the caller has exported the Steward environment with the stack's Prefect API URL)."""
    ensure_admin_token(settings)
    story = Story(settings, replace(stack_config, spec_paths=(str(settings.home / "demo" / "spec.yaml"),)),
                  config or DemoConfig(), echo)
    return story.run()
