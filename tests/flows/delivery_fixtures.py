"""Helpers of the delivery flow tests: a real gateway in its own process, models that fail in real ways,
and readings of the prediction log.

The gateway runs as ``python -m steward serve`` on the session's Steward home, so it reads the same
MLflow registry and writes the same prediction log the flows read (``tasks.common.store()``). Its own
process keeps its latencies free of the test process's work (the flows, the traffic threads).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import yaml

from tests.support.gateway import free_port
from tests.support.polling import wait_until

ADMIN_TOKEN = "delivery-test-token"
GATEWAY_POLL_SECONDS = 0.5  # the gateway's default
REPOSITORY = Path(__file__).resolve().parents[2]


def strict_pipeline(spec: Any, **params: Any) -> Any:
    """The default pipeline, except that it raises on a category it never saw in training.

    A real fault: a request carrying a new category makes the model raise, and the gateway answers 500.
    Only scikit-learn classes, so MLflow's skops serialisation accepts it.
    """
    from steward.estimators import tabular_pipeline

    pipeline = tabular_pipeline(spec, **params)
    return pipeline.set_params(preprocess__categorical__encode__handle_unknown="error",
                               preprocess__categorical__encode__min_frequency=None)


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen
    log_path: Path

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, headers={"authorization": f"Bearer {ADMIN_TOKEN}"})

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"the gateway exited ({self.process.returncode}): {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"the gateway was not ready after {timeout}s"
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def launch_gateway(models: list[str], tmp: Path, poll_seconds: float = GATEWAY_POLL_SECONDS) -> GatewayProcess:
    """Start ``steward serve`` for ``models`` (each needs a champion); returns at once, see ``wait_ready``."""
    port = free_port()
    log_path = tmp / f"gateway-{port}.log"
    env = {**os.environ, "STEWARD_ADMIN_TOKEN": ADMIN_TOKEN, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "steward", "serve", *models, "--port", str(port),
         "--poll-interval", str(poll_seconds), "--flush-interval", "0.5", "--log-level", "warning"],
        cwd=REPOSITORY, env=env, stdout=subprocess.DEVNULL, stderr=log_path.open("w"),
    )
    return GatewayProcess(f"http://127.0.0.1:{port}", process, log_path)


# ---------------------------------------------------------------------------------------- models
def spec_document(name: str, *, params: dict[str, Any] | None = None, factory: str | None = None,
                  canary: dict[str, Any] | None = None) -> dict[str, Any]:
    from steward.simulation.examples import example_spec_text

    document = yaml.safe_load(example_spec_text())
    document["name"] = name
    document["data"]["path"] = "train.parquet"
    document["estimator"]["params"] = params or {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                                 "max_iter": 30, "random_state": 0}
    if factory:
        document["estimator"]["factory"] = factory
    if canary is not None:
        document["canary"] = canary
    return document


def write_spec(folder: Path, name: str, **options: Any) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec_document(name, **options), sort_keys=False))
    return path


@dataclass(frozen=True)
class Trained:
    estimator: Any
    lineage: Any
    metrics: dict[str, float]
    holdout: pd.DataFrame
    train: pd.DataFrame


def train(frame: pd.DataFrame, **options: Any) -> Trained:
    from steward.spec import parse_spec
    from steward.training.data import frame_sha256, split_train_holdout
    from steward.training.train import train_model

    spec = parse_spec(spec_document("template", **options))
    split = split_train_holdout(frame, spec)
    trained = train_model(spec, split, data_sha256=frame_sha256(frame), data_source="delivery tests")
    return Trained(trained.estimator, trained.lineage, trained.metrics, trained.holdout_frame, trained.train_frame)


def register(registry: Any, name: str, trained: Trained, *, validated: bool = True) -> str:
    """Register an already fitted model under ``name`` (its stored spec renamed to match)."""
    from steward.spec import parse_spec

    document = yaml.safe_load(trained.lineage.spec_yaml)
    document["name"] = name
    lineage = dataclasses.replace(trained.lineage, spec_yaml=yaml.safe_dump(document, sort_keys=False))
    features = list(parse_spec(document).feature_names)
    info = registry.register_version(
        name, trained.estimator, lineage=lineage, metrics=trained.metrics,
        input_example=trained.holdout[features].head(20),
        datasets={"holdout": trained.holdout, "reference": trained.train},
    )
    if validated:
        registry.set_version_tags(name, info.version, {"steward.validation.status": "passed",
                                                       "steward.stage": "validated"})
    return info.version


def traffic(days: int = 1, injections: tuple = ()) -> pd.DataFrame:
    """Scenario rows the training never saw (40 days after its data), optionally with injected problems."""
    from steward.simulation.scenario import credit_default_scenario

    scenario = credit_default_scenario(rows_per_day=4000, injections=injections)
    start = scenario.start + pd.Timedelta(days=40)
    return scenario.generate(start, start + pd.Timedelta(days=days))


# ---------------------------------------------------------------------------------------- readings
def served(model: str, start: Any, end: Any | None = None) -> pd.DataFrame:
    """Served requests of ``model`` (one row per request) in the log between ``start`` and ``end``."""
    from tasks.common import store

    end = end if end is not None else pd.Timestamp.now(tz="UTC") + pd.Timedelta(seconds=1)
    rows = store().read_predictions(model, pd.Timestamp(start), pd.Timestamp(end), served_only=True)
    return rows.drop_duplicates("request_id")


def share_within(count: int, total: int, percent: float) -> bool:
    """Is ``count`` of ``total`` consistent with at most ``percent``%? (binomial, 4 standard deviations)."""
    p = percent / 100
    return count <= total * p + 4 * np.sqrt(max(total * p * (1 - p), 1.0))


def wait_for_log(model: str, until: pd.Timestamp, timeout: float = 10.0) -> None:
    """Until the gateway has flushed requests received after ``until`` (its log is written every 0.5 s)."""
    wait_until(lambda: len(served(model, until)) > 0, f"{model}'s log to pass {until}", timeout)
