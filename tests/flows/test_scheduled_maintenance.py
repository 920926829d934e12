"""Scheduled maintenance flows on a real MLflow store and five weeks of replayed traffic with known problems.

The world: a champion trained on clean data; from day 19 the label function drifts (accuracy falls);
every week the serving latency grows by 7 ms (a rising trend, past the 25 ms SLO by the end); from
day 31 a third of the rows miss ``age``.  Old partitions and temporary files are planted around the
retention limits to check that clean-up removes exactly what is past them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml

from flows.maintenance import (
    daily_maintenance,
    monthly_maintenance,
    quarterly_maintenance,
    weekly_maintenance,
)
from steward.monitoring.maintenance.retention import scratch_folder
from steward.monitoring.maintenance.summaries import Cadence, TaskStatus
from steward.monitoring.model_card import CARD_ARTIFACT_PATH, CARD_FILE
from steward.simulation.injections import DriftKind, Injection
from steward.simulation.scenario import credit_default_scenario
from tests.support.models import register_champion, train_spec

pytestmark = pytest.mark.slow

START = pd.Timestamp("2026-02-01", tz="UTC")
DAYS = 35
AS_OF = (START + pd.Timedelta(days=DAYS)).to_pydatetime()  # 2026-03-08 00:00 UTC
DAY = pd.Timedelta(days=1)


@dataclass(frozen=True)
class World:
    name: str
    spec_path: Path
    version: str


def read_artifacts(key: str) -> list[dict]:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:  # posted directly: the sync client's read_artifacts sends nulls
        body = {"artifacts": {"key": {"any_": [key]}}, "limit": 50, "offset": 0, "sort": "CREATED_DESC"}
        return client.request("POST", "/artifacts/filter", json=body).json()


@pytest.fixture(scope="module")
def world(registry, settings, example_frame, tmp_path_factory) -> World:
    from steward.simulation.examples import example_spec_text
    from steward.simulation.replay import ReplayArm, measure_single_row_latency_ms, replay_to_store
    from steward.spec import load_spec
    from steward.store.reader import PredictionStore
    from steward.training.data import prepare_features

    folder = tmp_path_factory.mktemp("maintenance")
    name = "maintenance-world"
    document = yaml.safe_load(example_spec_text())
    document.update(name=name, data={"kind": "file", "path": str(folder / "train.parquet")})
    example_frame.to_parquet(folder / "train.parquet", index=False)
    spec_path = folder / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(document, sort_keys=False))
    spec = load_spec(spec_path)
    trained = train_spec(spec, example_frame, str(spec_path))
    info = register_champion(registry, spec, trained)

    world = credit_default_scenario(rows_per_day=600, injections=(
        Injection(DriftKind.CONCEPT_DRIFT, START + 19 * DAY, None, ("utilization", "num_late_payments", "debt_ratio"),
                  1.0),
        Injection(DriftKind.MISSING_SPIKE, START + 31 * DAY, None, ("age",), 0.3),
    ))
    store = PredictionStore.from_settings(settings)
    # The model's real single-row latency, measured once: measured again each week, a busy machine's
    # load changed between weeks by more than the planted 7 ms and no trend was left to find.
    measured = tuple(measure_single_row_latency_ms(trained.estimator, prepare_features(example_frame, spec)))
    for week in range(DAYS // 7):  # latency steps up by 7 ms a week
        traffic = world.generate(START + 7 * week * DAY, START + 7 * (week + 1) * DAY)
        arm = ReplayArm("champion", info.version, trained.estimator, extra_latency_ms=7.0 * week,
                        measured_latency_ms=measured)
        replay_to_store(store, spec, traffic, [arm], labels_until=pd.Timestamp(AS_OF), seed=week)
    for old in ("2025-10-01", "2025-12-07", "2025-12-08"):  # around the 90-day log retention
        at = pd.Timestamp(old, tz="UTC")
        replay_to_store(store, spec, world.generate(at, at + DAY).head(20),
                        [ReplayArm("champion", info.version, trained.estimator)])
    return World(name, spec_path, info.version)


def _partitions(settings, dataset: str, model: str) -> set[str]:
    root = Path(settings.resolved_store_uri) / dataset / f"model={model}"
    return {p.name.removeprefix("date=") for p in root.iterdir()}


def _age(path: Path, days: float) -> None:
    moment = AS_OF.timestamp() - days * 86_400
    os.utime(path, (moment, moment))


def test_daily_checks_health_and_drift_and_removes_only_what_is_past_retention(world, settings):
    from steward.store.reader import PredictionStore
    from steward.store.records import prediction_batch
    from steward.store.wal import encode_line

    store = PredictionStore.from_settings(settings)
    recent_rows = len(store.read_predictions(world.name, START, AS_OF))
    # temporary files: Steward scratch (one stale, one fresh), an unfinished part, WAL segments
    scratch = scratch_folder(settings.home, world.name)
    (scratch / "stale-run").mkdir(parents=True)
    (scratch / "stale-run" / "drift.html").write_text("x" * 1000)
    (scratch / "fresh.html").write_text("fresh")
    _age(scratch / "stale-run", 8)
    _age(scratch / "fresh.html", 1)
    partition = Path(store.partition_path("predictions", world.name, "2026-03-01"))
    partial = partition / ".part-crashed.parquet.tmp"
    partial.write_bytes(b"half a file")
    _age(partial, 10)
    wal = Path(store.root) / "_wal"
    wal.mkdir(exist_ok=True)
    at = int(pd.Timestamp("2026-03-01T12:00", tz="UTC").value)
    batch = prediction_batch("wal-req", at, world.name, world.version, "champion", served=True, status="ok", rows=(0,),
                             features={}, numeric=(), predictions=("0",), scores=(0.1,), latency_ms=5.0)
    line = encode_line(batch) + "\n"  # a line as the gateway's write-ahead log holds it
    store.write_batches([batch], flush_id="walseg-written")  # its rows reached Parquet before the crash
    (wal / "walseg-written.jsonl").write_text(line)
    (wal / "walseg-pending.jsonl").write_text(line)  # never written: the only copy of that row
    for segment in wal.glob("walseg-*.jsonl"):
        _age(segment, 10)

    summary = daily_maintenance(spec_path=str(world.spec_path), as_of=AS_OF)

    assert summary.cadence is Cadence.DAILY and summary.model == world.name
    statuses = {t.name: t.status for t in summary.tasks_completed}
    assert statuses == dict.fromkeys(
        ["health check", "drift report", "pending candidates", "log retention", "temporary files", "incident review",
         "critical alerts"],
        TaskStatus.COMPLETED)
    (drift,) = [t.detail for t in summary.tasks_completed if t.name == "drift report"]
    assert "the health check's scan of the window reused" in drift  # one scan of the day (decision 0034)
    predictions = _partitions(settings, "predictions", world.name)
    assert {"2025-10-01", "2025-12-07"}.isdisjoint(predictions) and "2025-12-08" in predictions
    labels = _partitions(settings, "labels", world.name)
    assert "2025-10-04" not in labels and {"2025-12-10", "2025-12-11"} <= labels  # labels come 3 days later
    assert len(store.read_predictions(world.name, START, AS_OF)) == recent_rows + 1  # + the WAL row
    (removal,) = [a for a in summary.actions_taken if a.startswith("removed 4 log partition(s) older than 90 days")]
    assert "predictions/date=2025-10-01" in removal and "predictions/date=2025-12-07" in removal
    assert not (scratch / "stale-run").exists() and (scratch / "fresh.html").exists()
    assert not partial.exists() and not (wal / "walseg-written.jsonl").exists()
    assert (wal / "walseg-pending.jsonl").exists()
    titles = {i.title for i in summary.issues_found}
    assert "1 write-ahead-log segment(s) hold rows that are not in the prediction log" in titles
    assert "missing values in age" in titles  # recorded by the health check, listed by the daily run
    assert any(i.incident and i.priority.value == "critical" for i in summary.issues_found)
    (artifact,) = read_artifacts(f"maintenance-daily-{world.name}")[:1]
    assert "# Daily maintenance of maintenance-world as of 2026-03-08 00:00 UTC" in artifact["data"]


def test_weekly_finds_rising_latency_falling_accuracy_and_missing_values(world):
    summary = weekly_maintenance(spec_path=str(world.spec_path), as_of=AS_OF)
    assert not summary.failed_tasks, summary.failed_tasks
    by_fingerprint = {i.title: i for i in summary.issues_found}
    latency = by_fingerprint["p95 latency is rising"]
    assert latency.priority.value == "high" and "now above the 25 ms SLO" in latency.detail
    assert latency.detail.startswith("p95 latency is rising by +") and "significant and degrading" in latency.detail
    accuracy = by_fingerprint["roc_auc is falling"]
    assert accuracy.kind.value == "adaptive" and "Retrain or analyse drift" in accuracy.detail
    missing = by_fingerprint["missing values in age"]
    assert missing.detail.startswith("on 4 of 7 days (2026-03-04, 2026-03-05, 2026-03-06, 2026-03-07)")
    tasks = {t.name: t.detail for t in summary.tasks_completed}
    assert re.match(r"cost 16\.80 for 420\d requests \(\d\.\d{4} per 1k\)", tasks["cost analysis"])  # 0.10/h x 168 h
    assert "declare cost.replica_capacity_rps" in tasks["cost analysis"]  # default capacity: sized only once declared


def test_monthly_assesses_accuracy_infrastructure_and_security(world):
    summary = monthly_maintenance(spec_path=str(world.spec_path), as_of=AS_OF)
    assert not summary.failed_tasks, summary.failed_tasks
    tasks = {t.name: t.detail for t in summary.tasks_completed}
    assert "Retraining is recommended." in tasks["accuracy assessment"]
    assert tasks["infrastructure review"].startswith("Busiest hour of 30 days:")
    assert tasks["security audit"].startswith("5 checks, 1 failed: admin authentication")
    titles = {i.title for i in summary.issues_found}
    assert any(t.startswith("roc_auc dropped") for t in titles) and "no admin token configured" in titles


def test_quarterly_regenerates_the_model_card_with_slices_and_reviews_the_stack(world, registry, tmp_path):
    summary = quarterly_maintenance(spec_path=str(world.spec_path), as_of=AS_OF)
    assert not summary.failed_tasks, summary.failed_tasks
    card = registry.download_version_artifact(world.name, world.version, f"{CARD_ARTIFACT_PATH}/{CARD_FILE}", tmp_path)
    text = card.read_text()
    assert text.startswith(f"# Model card: {world.name} v{world.version} (1.0.0)")
    for region in ("north", "south", "east", "west"):
        assert f"| region | {region} |" in text
    for kind in ("salaried", "self_employed", "unemployed", "retired"):
        assert f"| employment_type | {kind} |" in text
    # 90 days back from 2026-03-08 reach the planted 2025-12-08 rows; labels arrived up to 2026-03-05's rows
    assert "| production 2025-12-08 to 2026-03-05 (" in text and "## Known limitations" in text
    assert f"artifact digest: {registry.get_version(world.name, world.version).digest}" in text
    assert any(a["data"] == text for a in read_artifacts(f"model-card-{world.name}"))
    tasks = {t.name: t.detail for t in summary.tasks_completed}
    assert tasks["technology review"].startswith("13 packages")
    assert "business alignment review 2026-Q1" in {i.title for i in summary.issues_found}
