"""Tasks of the blue-green flow: wait for the idle colour, smoke-test it through the gateway, switch colours."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pandas as pd
from prefect import task
from prefect.cache_policies import NO_CACHE

from steward.config import apply_environment
from steward.delivery.blue_green import SmokeReport, smoke_request
from steward.delivery.rollout import RolloutError, RolloutState, StepWindow
from steward.registry.history import CHALLENGER
from steward.registry.traffic import Arm, TrafficMode, TrafficPlan
from steward.spec import ModelSpec
from steward.training.probes import edge_case_batches
from tasks.common import registry
from tasks.fleet import reach_gateways_now
from tasks.rollout import rollout_lock

IDLE_COLOUR_TIMEOUT_SECONDS = 60.0
SMOKE_SAMPLE_ROWS = 20


def _admin_headers(actor: str) -> dict[str, str]:
    token = apply_environment().admin_token
    if token is None or not token.get_secret_value():
        raise RolloutError("the blue-green smoke test forces requests to the idle colour, which needs the gateway's "
                           "admin token: set STEWARD_ADMIN_TOKEN to the token the gateway was started with")
    return {"authorization": f"Bearer {token.get_secret_value()}", "x-steward-actor": actor}


@task(name="wait-for-idle-colour", cache_policy=NO_CACHE)
def wait_for_idle_colour(gateway_url: str, state: RolloutState) -> None:
    """Until the gateway has the challenger loaded (it loads it as soon as the alias exists)."""
    headers = _admin_headers(f"blue-green {state.owner}")
    deadline = time.monotonic() + IDLE_COLOUR_TIMEOUT_SECONDS
    with httpx.Client(base_url=gateway_url.rstrip("/"), headers=headers, timeout=30) as client:
        while True:
            try:
                answer = client.post(f"/admin/models/{state.model}/refresh")
            except httpx.HTTPError as error:
                raise RolloutError(f"the gateway at {gateway_url} cannot be reached ({error}); start it "
                                   f"(`steward serve {state.model}`) or pass its URL") from error
            if answer.status_code in (401, 403, 404):
                raise RolloutError(f"the gateway at {gateway_url} refused the refresh ({answer.status_code}: "
                                   f"{answer.text[:200]}); check the admin token and that it serves {state.model}")
            loaded = {m["model"]: m for m in answer.json().get("models", [])}.get(state.model, {})
            if (loaded.get("challenger") or {}).get("version") == state.version:
                return
            if time.monotonic() > deadline:
                raise RolloutError(
                    f"the gateway at {gateway_url} has not loaded {state.model} v{state.version} as the idle colour "
                    f"after {IDLE_COLOUR_TIMEOUT_SECONDS:.0f} s (problems: {loaded.get('problems')}); see its /admin/status"
                )
            time.sleep(0.5)


@task(name="smoke-test-idle-colour", cache_policy=NO_CACHE)
def smoke_test(spec: ModelSpec, gateway_url: str, state: RolloutState) -> SmokeReport:
    """Forced-arm requests to the idle colour: sample rows of its held-out data, then the validation edge cases."""
    sample = registry().load_dataset(spec.name, state.version, "holdout")
    features = sample[list(spec.feature_names)]
    cases: list[tuple[str, pd.DataFrame, bool]] = [
        (f"sample row {i}", features.iloc[[i]], True) for i in range(min(SMOKE_SAMPLE_ROWS, len(features)))
    ]
    cases.append(("sample batch", features.head(100), True))
    cases += [(name, batch, must) for name, (batch, must) in edge_case_batches(spec, features).items()]
    headers = {**_admin_headers(f"blue-green {state.owner}"), "x-steward-arm": CHALLENGER}
    with httpx.Client(base_url=gateway_url.rstrip("/"), headers=headers, timeout=30) as client:
        results = tuple(smoke_request(client, spec.name, case, frame, must) for case, frame, must in cases)
    return SmokeReport(state.version, results)


@task(name="switch-colour", cache_policy=NO_CACHE)
def switch_colour(state: RolloutState, baseline_seconds: float, reason: str) -> RolloutState:
    """The atomic switch: one plan change sends every request to the new colour.

    The champion's baseline is its traffic before the blue-green began: the smoke test's forced
    requests share the gateway's batches and would slow the champion's answers. The state is saved
    first (step 1, with that window), so a crash right after the switch resumes the watch.
    """
    lock = rollout_lock()
    began = state.step_started
    baseline = StepWindow(0.0, began - timedelta(seconds=baseline_seconds), began)
    now = datetime.now(UTC)
    switched = lock.save(state.evolve(step=1, step_started=now, heartbeat=now, windows=(*state.windows, baseline)))
    registry().set_traffic_plan(state.model, TrafficPlan(mode=TrafficMode.BLUE_GREEN, live=Arm.CHALLENGER),
                                reason=reason)
    reach_gateways_now(state.model)  # the watch starts once the gateways serve the new colour
    started = datetime.now(UTC)
    return lock.save(switched.evolve(step_started=started, heartbeat=started))
