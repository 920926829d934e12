"""steward.model_card: production evaluation from the log, limitations read from the numbers, the Markdown."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from steward.findings import Priority
from steward.monitoring.drift.history import DriftRecord
from steward.monitoring.drift.result import ColumnDrift, DriftResult
from steward.monitoring.model_card import (
    LoggedEvaluation,
    build_model_card,
    evaluate_production,
    evaluation_findings,
    known_limitations,
)
from steward.registry.adapter import VersionInfo
from steward.training.evaluation import SliceMetric

NOW = datetime(2026, 3, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def spec(example_spec):
    return example_spec


@pytest.fixture(scope="module")
def labelled() -> pd.DataFrame:
    """Logged, labelled rows: the model ranks well in north and barely at all in west."""
    rng = np.random.default_rng(1)
    n = 2000
    region = rng.choice(["north", "west"], n, p=[0.7, 0.3])
    label = rng.integers(0, 2, n)
    signal = np.where(region == "north", 1.5, 0.1)
    score = 1 / (1 + np.exp(-(signal * (label - 0.5) * 2 + rng.normal(0, 1, n))))
    return pd.DataFrame({
        "version": "3", "label": label.astype(str), "prediction": (score > 0.5).astype(int).astype(str),
        "score": score, "region": region, "employment_type": rng.choice(["salaried", "retired"], n, p=[0.99, 0.01]),
    })


def _version(metrics: dict[str, float]) -> VersionInfo:
    tags = {
        "steward.data_source": "data/train.parquet", "steward.data_window_start": "2026-01-01T00:00:00+00:00",
        "steward.data_window_end": "2026-01-20T23:59:00+00:00", "steward.data_rows": "6000",
        "steward.data_sha256": "ab" * 32, "steward.code_version": "abc123", "steward.semver": "1.2.0",
        "steward.packages": json.dumps({"scikit-learn": "1.9.1"}), "steward.artifact_digest": "cd" * 32,
        "steward.stage": "champion", "steward.training_seconds": "1.5", "steward.validation.summary": "passed 9 checks",
    }
    return VersionInfo("credit-default", "3", "run3", "models:/m-1", NOW - timedelta(days=40), ("champion",), tags,
                       metrics)


def test_production_metrics_and_slices_come_from_the_logged_scores(spec, labelled):
    evaluation = evaluate_production(labelled, spec, metrics=["accuracy", "brier", "not_a_metric"], start=NOW,
                                     end=NOW, served_rows=4000)
    y = labelled["label"].astype(int)
    assert evaluation.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, labelled["score"]))
    assert set(evaluation.metrics) == {"roc_auc", "accuracy", "brier"}
    by_slice = {(s.feature, s.value): s for s in evaluation.slices}
    west = labelled["region"] == "west"
    assert by_slice[("region", "west")].rows == west.sum()
    assert by_slice[("region", "west")].score == pytest.approx(roc_auc_score(y[west], labelled["score"][west]))
    assert by_slice[("region", "north")].score > 0.8 > by_slice[("region", "west")].score


def _drift(columns: tuple[str, ...], day: int) -> DriftRecord:
    column = ColumnDrift("income", "numeric", "Wasserstein distance (normed)", 0.4, 0.1, True)
    result = DriftResult((column,), None, 1.0, True, 4800, 2000, "profile")
    end = NOW - timedelta(days=day)
    return DriftRecord("credit-default", "3", end - timedelta(days=1), end, 2000, bool(columns), True, "r", columns,
                       result)


def test_the_card_has_purpose_data_metrics_per_slice_limitations_and_lineage(spec, labelled):
    production = evaluate_production(labelled, spec, metrics=["accuracy"], start=NOW - timedelta(days=90), end=NOW,
                                     served_rows=2500)
    holdout = [SliceMetric("region", "north", 300, "roc_auc", 0.82), SliceMetric("region", "west", 30, "roc_auc", 0.5),
               SliceMetric("employment_type", "salaried", 500, "roc_auc", 0.80)]
    card = build_model_card(
        spec, _version({"roc_auc": 0.80, "accuracy": 0.83}), holdout_slices=holdout, production=production,
        drift_records=[_drift(("income",), 3), _drift((), 2)], former_champions=["2", "1"], generated_at=NOW,
    )
    text = card.to_markdown()
    assert text.startswith("# Model card: credit-default v3 (1.2.0)")
    assert "Probability that a customer defaults within 90 days" in text
    assert "- window: 2026-01-01T00:00:00+00:00 to 2026-01-20T23:59:00+00:00" in text and "- rows: 6000" in text
    assert "| roc_auc (primary) | 0.8000 |" in text
    assert "| region | west | 30 | 0.5000 |" in text and "| employment_type | retired |  |  |" in text
    assert "| region | north | 300 | 0.8200 |" in text
    assert "- artifact digest: " + "cd" * 32 in text and "former champions (newest first): v2, v1" in text
    assert "2 drift checks in the period; material drift on 1 day(s)." in text
    limits = "\n".join(card.limitations)
    assert "region=west: only 30 held-out rows (under 50), too few to judge" in limits
    assert "Weaker on region=west" in limits and "(production," in limits
    assert "employment_type=retired: only" in limits  # about 20 production rows
    assert "Inputs drifted from the training data in this period: income (1 checks)." in limits
    assert "Production metrics cover only" not in limits  # 2000 of 2500 served rows labelled

    (finding,) = [f for f in evaluation_findings(spec, card) if "region=west" in f.title]
    assert finding.title == "weaker on region=west (production)" and finding.priority is Priority.MEDIUM
    assert finding.fingerprint == "evaluation:slice:region=west:production"


def test_limitations_when_production_is_missing_or_worse(spec):
    assert "No labelled production traffic yet" in known_limitations(spec, {"roc_auc": 0.8}, (), None, [])[0]
    worse = LoggedEvaluation(NOW, NOW, 10_000, 1_000, {"roc_auc": 0.70}, ())
    text = " ".join(known_limitations(spec, {"roc_auc": 0.80}, (), worse, []))
    assert "In production roc_auc is 0.7000, 0.1000 worse than held-out (0.8000)" in text
    assert "only labelled traffic (10% of 10000 served predictions)" in text
