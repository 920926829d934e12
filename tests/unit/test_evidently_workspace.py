"""The drift checks' Evidently workspace: a real Evidently 0.7 workspace on disk, real Evidently reports."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from steward.monitoring.drift.engine import detect_drift
from steward.monitoring.drift.workspace import (
    ALL_VERSIONS_TAB,
    SnapshotKind,
    WindowQuality,
    WorkspaceStatus,
    ensure_project,
    open_workspace,
    record_window,
    snapshot_id,
    version_tab,
)

NUMERIC = ["age", "income", "debt_ratio"]
CATEGORICAL = ["region"]
FEATURES = (*NUMERIC, *CATEGORICAL)
DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def window(example_frame) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = example_frame[list(FEATURES)].iloc[:1200].reset_index(drop=True)
    frame["score"] = rng.random(len(frame))
    frame.loc[:59, "income"] = np.nan  # 60 of the 600 current rows, on top of the example's own gaps
    return frame


@pytest.fixture(scope="module")
def drift_snapshot(window):
    reference, current = window.iloc[600:], window.iloc[:600]
    result = detect_drift(reference, current, numeric=NUMERIC, categorical=CATEGORICAL, prediction_column="score",
                          engine="evidently")
    assert result.snapshot is not None
    return result.snapshot


def _labelled(current: pd.DataFrame, right: int) -> pd.DataFrame:
    """Text labels and predictions as the log stores them; the first ``right`` rows are correct."""
    n = len(current)
    prediction = np.array(["1", "0"] * (n // 2))
    label = prediction.copy()
    label[right:] = np.where(prediction[right:] == "1", "0", "1")
    return current.assign(prediction=prediction, label=label)


def _record(path, as_of, drift, current, version="1", labelled=None, label_metric="accuracy"):
    return record_window(path, model="credit", version=version, as_of=as_of, drift=drift,
                         quality=WindowQuality(current, FEATURES, labelled, label_metric), prediction_column="score")


def _metric_values(workspace, project_id: str, snapshot: str) -> dict[tuple[str, str], float]:
    """(metric type, column or value type) -> value of one stored snapshot."""
    model = workspace.get_run(project_id, snapshot)
    values = {}
    for result in model.metric_results.values():
        parts = (
            [result.count, result.share] if hasattr(result, "share")
            else [result.mean, result.std] if hasattr(result, "std") else [result]
        )
        for part in parts:
            location = part.metric_value_location
            key = location.param.get("value_type") or location.metric.params.get("column", "")
            values[(location.metric.params["type"].rsplit(":", 1)[-1], key)] = float(part.value)
    return values


def test_each_window_is_two_snapshots_at_its_end_tagged_with_the_version(tmp_path, window, drift_snapshot):
    current = window.iloc[:600]
    first = _record(tmp_path, DAY0, drift_snapshot, current, labelled=_labelled(current, right=450))
    second = _record(tmp_path, DAY0 + timedelta(days=1), drift_snapshot, current)
    assert first.status is WorkspaceStatus.WRITTEN and second.status is WorkspaceStatus.WRITTEN
    assert first.project_id == second.project_id  # found by name, not created twice

    workspace = open_workspace(tmp_path)
    assert [p.name for p in workspace.list_projects()] == ["credit"]
    runs = {str(r) for r in workspace.list_runs(first.project_id)}
    assert runs == {s for _, s in first.snapshots + second.snapshots} and len(runs) == 4
    for outcome, day in ((first, DAY0), (second, DAY0 + timedelta(days=1))):
        for kind, sid in outcome.snapshots:
            stored = workspace.get_run(outcome.project_id, sid)
            assert stored.timestamp == day.replace(tzinfo=None)  # the window's end, not when the check ran
            assert {"steward", "version:1", kind.value} <= set(stored.tags)
            assert stored.metadata["model"] == "credit" and stored.metadata["kind"] == kind.value

    quality = dict(first.snapshots)[SnapshotKind.DATA_QUALITY]
    values = _metric_values(workspace, first.project_id, quality)
    metadata = workspace.get_run(first.project_id, quality).metadata
    assert metadata["window_rows"] == "600" and metadata["labelled_rows"] == "600"
    assert values[("Accuracy", "")] == pytest.approx(450 / 600)
    drift_values = _metric_values(workspace, first.project_id, dict(first.snapshots)[SnapshotKind.DRIFT])
    assert ("DriftedColumnsCount", "share") in drift_values and ("ValueDrift", "score") in drift_values
    assert ("Accuracy", "") not in _metric_values(workspace, second.project_id,
                                                   dict(second.snapshots)[SnapshotKind.DATA_QUALITY])


def test_missing_share_is_measured_per_feature(tmp_path, window):
    current = window.iloc[:600]
    outcome = _record(tmp_path, DAY0, None, current)
    assert [kind for kind, _ in outcome.snapshots] == [SnapshotKind.DATA_QUALITY]  # no drift report, no drift snapshot
    model = open_workspace(tmp_path).get_run(outcome.project_id, outcome.snapshots[0][1])
    shares = {r.share.metric_value_location.metric.params["column"]: r.share.value
              for r in model.metric_results.values() if hasattr(r, "share")}
    assert shares == {c: pytest.approx(current[c].isna().mean()) for c in FEATURES}
    assert shares["income"] >= 0.1  # the 60 blanked rows at least


def test_a_large_window_is_measured_on_a_seeded_sample(tmp_path, window):
    from steward.monitoring.drift.profile import sample_frame

    current = window.iloc[:600]
    outcome = record_window(tmp_path, model="credit", version="1", as_of=DAY0, drift=None,
                            quality=WindowQuality(current, FEATURES, sample_rows=100, seed=7), prediction_column=None)
    model = open_workspace(tmp_path).get_run(outcome.project_id, outcome.snapshots[0][1])
    sample = sample_frame(current, list(FEATURES), 100, 7)
    shares = {r.share.metric_value_location.metric.params["column"]: r.share.value
              for r in model.metric_results.values() if hasattr(r, "share")}
    assert shares == {c: pytest.approx(sample[c].isna().mean()) for c in FEATURES}
    assert model.metadata["window_rows"] == "600" and model.metadata["sample_rows"] == "100"


def test_running_a_window_again_replaces_its_snapshots(tmp_path, window, drift_snapshot):
    current = window.iloc[:600]
    first = _record(tmp_path, DAY0, drift_snapshot, current)
    again = _record(tmp_path, DAY0, drift_snapshot, current)
    assert first.snapshots == again.snapshots
    assert dict(first.snapshots)[SnapshotKind.DRIFT] == str(snapshot_id("credit", SnapshotKind.DRIFT, "1", DAY0))
    assert len(open_workspace(tmp_path).list_runs(first.project_id)) == 2


def test_the_dashboard_gets_a_tab_for_all_versions_and_one_per_version_once(tmp_path, window):
    current = window.iloc[:600]
    first = _record(tmp_path, DAY0, None, current, version="1")
    _record(tmp_path, DAY0 + timedelta(days=1), None, current, version="1")
    _record(tmp_path, DAY0 + timedelta(days=2), None, current, version="2")
    dashboard = open_workspace(tmp_path).get_dashboard(uuid.UUID(first.project_id))
    assert [tab.title for tab in dashboard.tabs] == [ALL_VERSIONS_TAB, version_tab("1"), version_tab("2")]
    titles = [panel.title for panel in dashboard.panels]
    assert len(titles) == 15 and len(set(titles)) == 15
    for scope in ("all versions", "version 1", "version 2"):
        assert {f"Share of drifted features ({scope})", f"Feature drift scores ({scope})", f"Missing share ({scope})",
                f"Prediction drift ({scope})", f"Accuracy on labels ({scope})"} <= set(titles)
    by_title = {panel.title: panel for panel in dashboard.panels}
    assert all("version:2" in v.tags for v in by_title["Missing share (version 2)"].values)
    assert {v.metric_labels["column"] for v in by_title["Feature drift scores (version 1)"].values} == set(FEATURES)
    assert not any(v.tags and v.tags[-1].startswith("version:") for v in by_title["Share of drifted features (all "
                                                                                    "versions)"].values)


def test_regression_windows_carry_mae_on_labels(tmp_path, window):
    current = window.iloc[:4]
    labelled = current.assign(prediction=["1.0", "2.0", "3.0", "4.0"], label=["1.5", "2.0", "2.0", "4.0"])
    outcome = _record(tmp_path, DAY0, None, current, labelled=labelled, label_metric="mae")
    values = _metric_values(open_workspace(tmp_path), outcome.project_id, outcome.snapshots[0][1])
    assert values[("MAE", "mean")] == pytest.approx((0.5 + 0 + 1 + 0) / 4)


def test_multiclass_accuracy_and_labels_without_values(tmp_path, window):
    current = window.iloc[:6]
    labelled = current.assign(prediction=["a", "b", "c", "a", "b", "c"], label=["a", "b", "c", "c", "c", "c"])
    outcome = _record(tmp_path, DAY0, None, current, labelled=labelled)
    values = _metric_values(open_workspace(tmp_path), outcome.project_id, outcome.snapshots[0][1])
    assert values[("Accuracy", "")] == pytest.approx(4 / 6)

    unlabelled = current.assign(prediction=["a"] * 6, label=[None] * 6)
    outcome = _record(tmp_path, DAY0 + timedelta(days=1), None, current, labelled=unlabelled)
    assert outcome.status is WorkspaceStatus.WRITTEN
    assert ("Accuracy", "") not in _metric_values(open_workspace(tmp_path), outcome.project_id, outcome.snapshots[0][1])


def test_a_failure_is_returned_not_raised(tmp_path, window, drift_snapshot):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    outcome = _record(blocked, DAY0, drift_snapshot, window.iloc[:600])
    assert outcome.status is WorkspaceStatus.FAILED and outcome.snapshots == ()
    assert "FileExistsError" in outcome.error

    naive = _record(tmp_path, datetime(2026, 3, 1), drift_snapshot, window.iloc[:600])
    assert naive.status is WorkspaceStatus.FAILED and "timezone-aware" in naive.error

    short = record_window(tmp_path, model="credit", version="1", as_of=DAY0, drift=None,
                          quality=WindowQuality(window[["age"]], FEATURES), prediction_column=None)
    assert short.status is WorkspaceStatus.FAILED and "lacks feature columns" in short.error


def test_two_projects_of_one_name_are_refused_with_what_to_do(tmp_path):
    workspace = open_workspace(tmp_path)
    workspace.create_project("credit")
    workspace.create_project("credit")
    with pytest.raises(ValueError, match="delete the extra ones"):
        ensure_project(workspace, "credit")
