"""The drift-report flow on a real MLflow store and a prediction log replayed from the scenario simulator."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.drift_report import DriftCheckStatus, drift_report
from steward import events
from steward.monitoring.drift.monitor import PROFILE_ARTIFACT, AnnounceReason
from steward.monitoring.drift.policy import DriftPolicy, DriftReason, decide_material_drift
from steward.registry.errors import RegistryError
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import credit_default_scenario
from tests.support.models import register_champion, train_spec

pytestmark = pytest.mark.slow

START = pd.Timestamp("2026-02-01", tz="UTC")
DAY = pd.Timedelta(days=1)
_names = itertools.count(1)


@dataclass(frozen=True)
class Deployed:
    name: str
    spec_path: Path
    version: str


def deploy(registry, settings, example_frame, folder: Path, injections, days: int, **drift) -> Deployed:
    """Train and register a champion of the example spec, then replay ``days`` of traffic from START."""
    from steward.simulation.examples import example_spec_text
    from steward.simulation.replay import ReplayArm, replay_to_store
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore
    
    name = f"drift-flow-{next(_names)}"
    document = yaml.safe_load(example_spec_text())
    document.update(name=name, data={"kind": "file", "path": str(folder / "train.parquet")})
    document["drift"] = {"window_days": 1, **drift}
    example_frame.to_parquet(folder / "train.parquet", index=False)
    spec_path = folder / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)
    trained = train_spec(spec, example_frame, str(spec_path))
    info = register_champion(registry, spec, trained)
    world = credit_default_scenario(rows_per_day=2000, injections=tuple(injections))
    replay_to_store(PredictionStore.from_settings(settings), spec, world.generate(START, START + days * DAY),
                    [ReplayArm("champion", info.version, trained.estimator)])
    return Deployed(name, spec_path, info.version)


def read_artifacts(key: str) -> list[dict]:
    """Prefect artifacts stored under ``key``, newest first.

    Posted directly: the sync client's ``read_artifacts`` sends null run filters, which the server refuses.
    """
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        body = {"artifacts": {"key": {"any_": [key]}}, "limit": 50, "offset": 0, "sort": "CREATED_DESC"}
        return client.request("POST", "/artifacts/filter", json=body).json()


def end_of(day: int):
    return (START + (day + 1) * DAY).to_pydatetime()


def drift_events(model_events, model: str, window_end, *, timeout: float = 20.0) -> list:
    """drift-detected events of ``model`` for the window ending at ``window_end`` (they arrive asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in model_events(model, expected=1, timeout=min(2.0, timeout))
                 if e.event == events.DRIFT_DETECTED and e.payload["window_end"] == window_end.isoformat()]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


# Day 0 is quiet; days 1-3 each carry one input-visible kind of drift on its own feature.
KINDS = {
    1: (DriftKind.COVARIATE_SHIFT, "income", 1.0),
    2: (DriftKind.UNSEEN_CATEGORY, "region", 0.2),
    3: (DriftKind.OUTLIERS, "utilization", 0.05),
}


@pytest.fixture(scope="module")
def detection(registry, settings, example_frame, tmp_path_factory) -> Deployed:
    injections = [Injection(kind, START + day * DAY, START + (day + 1) * DAY, (feature,), magnitude)
                  for day, (kind, feature, magnitude) in KINDS.items()]
    # share policy: one drifted input column is material, so each injection alone must raise the alarm
    return deploy(registry, settings, example_frame, tmp_path_factory.mktemp("drift"), injections, days=4,
                  method="share", share_threshold=0.05)


def test_a_quiet_day_gives_no_drift_and_no_event(detection, registry, model_events, tmp_path):
    outcome = drift_report(spec_path=str(detection.spec_path), as_of=end_of(0))
    assert outcome.status is DriftCheckStatus.CHECKED and outcome.version == detection.version
    assert not outcome.material and not outcome.announced and outcome.columns == ()
    assert outcome.current_rows == 2000 and outcome.result.engine == "profile" and len(outcome.result.columns) == 11
    assert outcome.verdict.decision.code is DriftReason.NO_DRIFT
    assert outcome.verdict.announcement.code is AnnounceReason.NOT_MATERIAL

    # the HTML is an artifact of the serving version; the profile is cached beside it for the next check
    report = registry.download_version_artifact(detection.name, detection.version,
                                                "drift/reports/drift-20260202T000000Z.html", tmp_path)
    html = report.read_text() if report is not None else ""
    assert "Drifted" in html and "income" in html and "utilization" in html  # Evidently's page of every column
    assert outcome.report_uri.endswith("drift/reports/drift-20260202T000000Z.html")
    assert registry.download_version_artifact(detection.name, detection.version, PROFILE_ARTIFACT, tmp_path)
    assert drift_events(model_events, detection.name, end_of(0), timeout=2) == []

    artifacts = read_artifacts(f"drift-{detection.name}")
    assert any("not material" in a["data"] and "drift-20260202T000000Z.html" in a["data"] for a in artifacts)

    again = drift_report(spec_path=str(detection.spec_path), as_of=end_of(0))
    assert not again.profile_built and again.result.columns == outcome.result.columns  # cached profile, same verdict


@pytest.mark.parametrize("day", sorted(KINDS), ids=[kind.value for kind, _, _ in KINDS.values()])
def test_each_injected_drift_is_found_and_named_in_the_event(detection, model_events, day):
    kind, feature, _ = KINDS[day]
    outcome = drift_report(spec_path=str(detection.spec_path), as_of=end_of(day))
    assert outcome.material and outcome.announced and feature in outcome.columns, outcome.reason
    assert outcome.verdict.decision.code is DriftReason.SHARE_REACHED
    assert outcome.verdict.announcement.code in (AnnounceReason.STARTED, AnnounceReason.SPREAD)
    assert outcome.ledger_entry_id is not None

    (event,) = drift_events(model_events, detection.name, end_of(day))
    payload = event.payload
    named = {c["column"]: c for c in payload["columns"]}
    assert feature in named and named[feature]["drifted"] and named[feature]["score"] >= named[feature]["threshold"]
    assert payload["version"] == payload["champion_version"] == detection.version
    assert payload["reason"] == outcome.reason and payload["report_uri"].endswith(".html")
    assert event.resource.id == f"steward.model.{detection.name}"


def test_the_last_rows_of_the_log_can_be_the_window(detection):
    outcome = drift_report(spec_path=str(detection.spec_path), last_rows=500, as_of=end_of(0))
    assert outcome.current_rows == 500 and outcome.window_start >= START + 0.7 * DAY
    assert outcome.window_end == end_of(0)


def test_too_little_traffic_or_no_champion_is_said_plainly(detection, write_spec):
    empty = drift_report(spec_path=str(detection.spec_path), as_of=end_of(30))
    assert empty.status is DriftCheckStatus.NO_DATA and empty.current_rows == 0 and not empty.material
    assert empty.record is None and empty.verdict is None
    with pytest.raises(RegistryError, match="train one with `steward train`"):
        drift_report(spec_path=str(write_spec()), as_of=end_of(0))


def test_hysteresis_a_flapping_column_does_not_alarm_again(registry, settings, example_frame, tmp_path, model_events):
    # credit_limit: far past the threshold on day 0, just under it on day 1, just over it on day 2
    # (normed Wasserstein 0.51, 0.071 and 0.123 against a 0.1 threshold, measured on these days of the scenario)
    shifts = {0: 0.5, 1: 0.08, 2: 0.09}
    injections = [Injection(DriftKind.COVARIATE_SHIFT, START + d * DAY, START + (d + 1) * DAY, ("credit_limit",), m)
                  for d, m in shifts.items()]
    model = deploy(registry, settings, example_frame, tmp_path, injections, days=3, method="share",
                   share_threshold=0.05, hysteresis_margin=0.5, prediction_drift_is_material=False)
    outcomes = [drift_report(spec_path=str(model.spec_path), as_of=end_of(d)) for d in shifts]
    scores = [o.result.column("credit_limit").score for o in outcomes]
    assert scores[0] > 0.15 and 0.05 < scores[1] < 0.1 < scores[2] < 0.15, scores

    first, dip, back = outcomes
    assert first.material and first.announced and first.verdict.decision.newly_drifted == ("credit_limit",)
    assert dip.material and not dip.announced and dip.held == ("credit_limit",)
    assert dip.verdict.decision.code is DriftReason.HELD_BY_HYSTERESIS
    assert back.material and not back.announced and back.held == ()
    assert back.verdict.announcement.code is AnnounceReason.PERSISTS
    assert back.verdict.announcement.material_since == end_of(0)
    assert first.ledger_entry_id == dip.ledger_entry_id == back.ledger_entry_id  # one entry, seen three times

    # without hysteresis the dip would have cleared the column and day 2 would have alarmed again
    plain = DriftPolicy(method="share", share_threshold=0.05, hysteresis_margin=0.0, prediction_drift_is_material=False)
    cleared = decide_material_drift(dip.result, plain)
    assert not cleared.material
    assert decide_material_drift(back.result, plain, previous=dip.result.with_decision(cleared)).newly_drifted == (
        "credit_limit",)
    assert len(drift_events(model_events, model.name, end_of(0))) == 1
    assert drift_events(model_events, model.name, end_of(1), timeout=1) == []
    assert drift_events(model_events, model.name, end_of(2), timeout=1) == []
