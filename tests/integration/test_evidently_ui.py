"""Evidently's UI over the drift checks: four days of the real drift-report flow, the UI started as `steward up`
starts it, then its own HTTP API (what its pages call) and its dashboard page rendered by headless Chromium."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml

from steward.monitoring.drift.workspace import ALL_VERSIONS_TAB, SnapshotKind, WorkspaceStatus, version_tab
from tests.support.gateway import free_port

pytestmark = pytest.mark.slow

START = pd.Timestamp("2026-02-01", tz="UTC")
DAY = pd.Timedelta(days=1)
DAYS = 4
CHROMIUM = shutil.which("chromium")
PANELS = ("Share of drifted features", "Feature drift scores", "Missing share", "Prediction drift",
          "Accuracy on labels")
_names = itertools.count(1)


@dataclass(frozen=True)
class Checked:
    name: str
    version: str
    outcomes: list
    url: str
    accuracy: list[float]  # per day, from the prediction log itself


@pytest.fixture(scope="module")
def checked(registry, settings, example_frame, tmp_path_factory):
    """A champion, four days of replayed traffic (income shifted on day 2), a drift check per day, the UI up."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.drift_report import drift_report
    from steward import stack
    from steward.simulation.examples import example_spec_text
    from steward.simulation.injections import DriftKind, Injection
    from steward.simulation.replay import ReplayArm, replay_to_store
    from steward.simulation.scenario import credit_default_scenario
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore, join_labels
    from tests.support.models import register_champion, train_spec

    folder = tmp_path_factory.mktemp("evidently-ui")
    name = f"evidently-ui-{next(_names)}"
    document = yaml.safe_load(example_spec_text())
    document.update(name=name, data={"kind": "file", "path": str(folder / "train.parquet")})
    document["drift"] = {"window_days": 1}
    example_frame.to_parquet(folder / "train.parquet", index=False)
    spec_path = folder / f"{name}.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)
    trained = train_spec(spec, example_frame, str(spec_path))
    info = register_champion(registry, spec, trained)
    shift = Injection(DriftKind.COVARIATE_SHIFT, START + 2 * DAY, START + 3 * DAY, ("income",), 1.0)
    # labels an hour after the prediction, so most of a day's predictions are labelled by the day's end
    world = credit_default_scenario(rows_per_day=1000, injections=(shift,), label_delay=pd.Timedelta(hours=1))
    replay_to_store(PredictionStore.from_settings(settings), spec, world.generate(START, START + DAYS * DAY),
                    [ReplayArm("champion", info.version, trained.estimator)])

    with prefect_test_harness(server_startup_timeout=300):
        outcomes = [drift_report(spec_path=str(spec_path), as_of=(START + (day + 1) * DAY).to_pydatetime())
                    for day in range(DAYS)]

    log = PredictionStore.from_settings(settings)
    accuracy = []
    for day in range(DAYS):
        start, end = (START + day * DAY).to_pydatetime(), (START + (day + 1) * DAY).to_pydatetime()
        served = log.read_predictions(name, start, end, info.version, served_only=True)
        labelled = join_labels(served[served["status"] == "ok"], log.read_labels(name, start=start, end=end))
        accuracy.append(float((labelled["label"] == labelled["prediction"]).mean()))

    config = stack.StackConfig(spec_paths=(str(spec_path),), models=(name,), evidently_port=free_port())
    stack.start(settings, config, echo=lambda _: None, only=["evidently"])
    try:
        yield Checked(name, info.version, outcomes, f"http://127.0.0.1:{config.evidently_port}", accuracy)
    finally:
        stack.stop(settings, echo=lambda _: None)


def _project_id(checked: Checked) -> str:
    projects = httpx.get(f"{checked.url}/api/projects", timeout=30).json()
    ids = [p["id"] for p in projects if p["name"] == checked.name]
    assert len(ids) == 1, projects
    return ids[0]


def test_every_check_wrote_its_snapshots(checked):
    for outcome in checked.outcomes:
        assert outcome.workspace.status is WorkspaceStatus.WRITTEN, outcome.workspace.error
        assert [kind for kind, _ in outcome.workspace.snapshots] == [SnapshotKind.DRIFT, SnapshotKind.DATA_QUALITY]
    assert "income" in checked.outcomes[2].result.report_drifted_columns  # the shifted day drifted in the report


def test_the_ui_api_serves_the_project_its_days_and_its_panels(checked):
    project = _project_id(checked)
    snapshots = httpx.get(f"{checked.url}/api/projects/{project}/snapshots", timeout=30).json()
    drift_days = sorted(s["timestamp"][:10] for s in snapshots if "drift" in s["tags"])
    assert drift_days == ["2026-02-02", "2026-02-03", "2026-02-04", "2026-02-05"]  # as_of, not the wall clock
    assert all(f"version:{checked.version}" in s["tags"] for s in snapshots)

    dashboard = httpx.get(f"{checked.url}/api/v2/dashboards/{project}", timeout=30).json()
    assert [tab["title"] for tab in dashboard["tabs"]] == [ALL_VERSIONS_TAB, version_tab(checked.version)]
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {f"{p} ({scope})" for p in PANELS for scope in ("all versions", f"version {checked.version}")} == titles

    # the series behind two panels, asked for as the page asks: one point a day, equal to what was measured
    def points(title: str) -> list[float]:
        panel = next(p for p in dashboard["panels"] if p["title"] == f"{title} (version {checked.version})")
        body = {"series_filter": [{k: v[k] for k in ("tags", "metadata", "metric", "metric_labels")}
                                  for v in panel["values"]]}
        series = httpx.post(f"{checked.url}/api/v2/snapshots/{project}/data_series_batch", json=body, timeout=30)
        sources, (line,) = series.json()["sources"], series.json()["series"]
        assert [s["timestamp"][:10] for s in sources] == drift_days
        return line["values"]

    shares = [len(o.result.report_drifted_columns) / len(o.result.columns) for o in checked.outcomes]
    assert points("Share of drifted features") == pytest.approx(shares) and shares[2] > 0
    assert points("Accuracy on labels") == pytest.approx(checked.accuracy)


def test_headless_chromium_renders_the_dashboard_with_every_day(checked, tmp_path):
    if CHROMIUM is None:
        message = "Debian's chromium is not installed (`apt-get install chromium`; .ci/run does it)"
        if os.environ.get("STEWARD_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    project = _project_id(checked)
    dom = _render(f"{checked.url}/projects/{project}", tmp_path)
    for panel in PANELS:
        assert f"{panel} (version {checked.version})" in dom, panel
    # a panel's chart: its line drawn and a point for each checked day
    section = dom[dom.index(f"Share of drifted features (version {checked.version})"):]
    section = section[: section.index("Missing share")]
    assert re.search(r'<path[^>]*class="MuiLineElement-root', section)
    assert len(re.findall(r'class="MuiMarkElement-root', section)) == DAYS


def _render(url: str, folder: Path) -> str:
    """The page's DOM after its scripts ran (flags from docs: no network beyond loopback, no sandbox as root)."""
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={folder / 'chromium'}", "--window-size=1400,2400", "--virtual-time-budget=30000",
               "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout
