"""The README's main command, `steward demo`, in its short configuration, and the Prefect UI it leaves up.

The demo starts the real local stack (Prefect server, MLflow server, gateway, deployments) on
free loopback ports in a fresh home; the test reads the outcome it writes, then looks at the
Prefect UI in headless Chromium (Debian's package, which `.ci/run` installs), and stops the stack.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from deployments.catalog import PROCEDURES
from tests.support.gateway import free_port

pytestmark = [pytest.mark.slow, pytest.mark.whole_stack, pytest.mark.timeout(1800)]  # the module's demo run may take 900 s

ROOT = Path(__file__).resolve().parents[2]
STEWARD = str(Path(sys.executable).parent / "steward")
CHROMIUM_FLAGS = (  # as on this kind of machine: root, no GPU, no network but loopback
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1600,3000",
    "--virtual-time-budget=30000",
)


def _steward(*args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "STEWARD_"))}
    env["COLUMNS"] = "160"
    return subprocess.run([STEWARD, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


@dataclass(frozen=True)
class DemoRun:
    result: subprocess.CompletedProcess
    home: Path
    ports: dict[str, int]

    @property
    def outcome(self) -> dict:
        path = self.home / "demo" / "outcome.json"
        assert path.exists(), self.result.stdout[-4000:] + self.result.stderr[-4000:]
        return json.loads(path.read_text())

    @property
    def prefect(self) -> str:
        return f"http://127.0.0.1:{self.ports['prefect']}"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> DemoRun:
    home = tmp_path_factory.mktemp("demo") / "home"
    ports = {name: free_port() for name in ("prefect", "mlflow", "gateway", "deployments", "evidently")}
    options = [arg for name, port in ports.items() for arg in (f"--{name}-port", str(port))]
    try:
        result = _steward("demo", "--short", "--home", str(home), *options, timeout=900)
        yield DemoRun(result, home, ports)
    finally:
        _steward("down", "--home", str(home), timeout=120)


def test_the_demo_finds_drift_retrains_by_trigger_promotes_and_rolls_back_the_broken_candidate(demo):
    assert demo.result.returncode == 0, demo.result.stdout[-4000:] + demo.result.stderr[-4000:]
    outcome = demo.outcome
    assert outcome["drift_day"] == 2 and {"debt_ratio", "utilization"} <= set(outcome["drift_columns"])
    assert outcome["retrain_started_by"] == "retrain credit-default on drift or accuracy loss"
    assert outcome["retrain_reason"].startswith(("drift detected:", "accuracy degraded:"))
    assert outcome["promoted_version"] == "2" and outcome["promotion_steps"] == [10.0, 50.0, 100.0]
    assert (outcome["broken_version"], outcome["broken_validation"]) == ("3", "passed")
    assert (outcome["broken_result"], outcome["broken_stopped_at_step"]) == ("rolled_back", 1)
    assert (outcome["champion"], outcome["challenger"]) == ("2", None)
    timeline = [entry["what"] for entry in outcome["timeline"]]
    assert any(what.startswith("registry promote champion: v1 -> v2") for what in timeline)
    out = " ".join(demo.result.stdout.split())
    assert f"{demo.prefect}/runs" in out and f"http://127.0.0.1:{demo.ports['mlflow']}/#/models/credit-default" in out


def test_the_stack_stays_up_with_one_champion_and_the_drift_report_on_disk(demo):
    assert httpx.get(f"{demo.prefect}/api/health", timeout=10).status_code == 200
    ready = httpx.get(f"http://127.0.0.1:{demo.ports['gateway']}/readyz", timeout=10).json()
    assert "credit-default" in json.dumps(ready)
    aliases = httpx.get(f"http://127.0.0.1:{demo.ports['mlflow']}/api/2.0/mlflow/registered-models/get",
                        params={"name": "credit-default"}, timeout=10).json()["registered_model"]["aliases"]
    assert [a["version"] for a in aliases if a["alias"] == "champion"] == ["2"]
    report = demo.outcome["drift_report"]
    assert report and Path(report.removeprefix("file://")).is_file()


def _dump_dom(url: str, profile: Path) -> str:
    chromium = shutil.which("chromium")
    if chromium is None:
        message = "Debian's chromium is not installed (`apt-get install chromium`; .ci/run does it)"
        if os.environ.get("STEWARD_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)
    result = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_prefect_ui_in_a_browser_shows_the_steward_deployments_and_the_demo_runs(demo, tmp_path):
    runs = httpx.post(f"{demo.prefect}/api/flow_runs/filter", timeout=10,
                      json={"limit": 100, "offset": 0, "sort": "START_TIME_DESC"}).json()
    names = {run["name"] for run in runs}
    assert demo.outcome["retrain_run"] in names

    deployments = _dump_dom(f"{demo.prefect}/deployments", tmp_path / "profile-deployments")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", deployments))
    shown = {p.key for p in PROCEDURES if f"procedure:{p.key}" in text}
    assert len(shown) >= 10, f"the deployments page (10 a page) shows only {sorted(shown)}: {text[:2000]}"
    assert "model:credit-default" in text

    # The runs page fills its list from API calls after it loads; on a busy machine a dump can come
    # before them (an empty list at load 15). Fresh dumps until a deadline, then the verdict.
    deadline = time.monotonic() + 300
    for attempt in itertools.count():
        page = _dump_dom(f"{demo.prefect}/runs", tmp_path / f"profile-runs-{attempt}")
        listed = {name for name in names if name in page}
        if demo.outcome["retrain_run"] in listed or time.monotonic() > deadline:
            break
    page_text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    assert demo.outcome["retrain_run"] in listed, f"the UI's runs page does not list the retrain: {page_text[:2000]}"
    assert len(listed) >= min(len(names), 10), f"the runs page lists {sorted(listed)} of {sorted(names)}"
