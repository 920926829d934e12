"""Scheduled maintenance (retention, reviews, security audit, technology review) and the drift monitor's state."""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from steward.findings import CheckStatus, Finding, MaintenanceKind, Priority
from steward.monitoring.drift.history import DriftHistory, DriftRecord
from steward.monitoring.drift.monitor import (
    AnnounceReason,
    DriftWindow,
    choose_drift_window,
    decide_announcement,
    drift_event_payload,
    focus_result,
    permutation_importances,
    reference_outputs,
)
from steward.monitoring.drift.policy import DriftReason, MaterialDriftDecision
from steward.monitoring.drift.result import ColumnDrift, DriftResult
from steward.monitoring.health.cost import check_cost
from steward.monitoring.health.performance import check_performance
from steward.monitoring.health.report import Area, CheckResult, HealthWindow, Issue, IssueCode, Severity
from steward.monitoring.ledger import EntryStatus, LedgerEntry
from steward.monitoring.maintenance.retention import (
    Partition,
    ScratchEntry,
    ScratchKind,
    expired_partitions,
    expired_scratch,
    partition_day,
    segment_written,
    wal_segment_parts,
)
from steward.monitoring.maintenance.scans import assess_accuracy, right_sizing, scan_day, summarize_quality
from steward.monitoring.maintenance.security import (
    audit_admin_token,
    audit_digests,
    audit_retention,
    find_stale_aliases,
)
from steward.monitoring.maintenance.summaries import (
    Cadence,
    FindingState,
    RecordedFinding,
    RunLog,
    markdown_table,
)
from steward.monitoring.maintenance.technology import (
    TechStatus,
    declared_requirements,
    locked_versions,
    review_technology,
    technology_findings,
)
from steward.monitoring.slo import SLODay, SLOTargets
from steward.monitoring.trends import performance_trends
from steward.registry.adapter import VersionInfo
from steward.registry.history import AuditEntry, ChangeKind

NOW = datetime(2026, 3, 8, tzinfo=UTC)


@pytest.fixture(scope="module")
def spec(example_spec):
    return example_spec


# ------------------------------------------------------------------------------------------ retention


def test_a_partition_goes_only_when_its_whole_day_is_past_retention():
    days = [date(2025, 12, 6), date(2025, 12, 7), date(2025, 12, 8), date(2026, 3, 7)]
    partitions = [Partition("predictions", d, f"/log/predictions/model=m/date={d}") for d in days]
    # 90 days before 2026-03-08 00:00 is 2025-12-08 00:00: the 7th ended exactly then, the 8th has rows after it
    assert [p.day for p in expired_partitions(partitions, NOW, 90)] == [date(2025, 12, 6), date(2025, 12, 7)]
    midday = NOW + timedelta(hours=12)
    assert [p.day for p in expired_partitions(partitions, midday, 90)] == [date(2025, 12, 6), date(2025, 12, 7)]
    assert [p.day for p in expired_partitions(partitions, NOW + timedelta(days=1), 90)][-1] == date(2025, 12, 8)
    assert partition_day("s3://b/log/predictions/model=m/date=2026-01-02/") == date(2026, 1, 2)
    assert partition_day("/log/predictions/model=m/_tmp") is None


def test_temporary_files_go_after_their_retention():
    entries = [
        ScratchEntry("/h/tmp/m/old", NOW - timedelta(days=8), ScratchKind.SCRATCH),
        ScratchEntry("/h/tmp/m/new", NOW - timedelta(days=6), ScratchKind.SCRATCH),
    ]
    assert [e.path for e in expired_scratch(entries, NOW, 7)] == ["/h/tmp/m/old"]


def _wal_line(model: str, day: str) -> str:
    time_ns = int(pd.Timestamp(day, tz="UTC").value) + 3_600 * 10**9
    return json.dumps({"kind": "predictions", "model": model, "time_ns": time_ns, "request_id": "r"}) + "\n"


def test_a_wal_segment_is_replayed_only_when_every_part_it_writes_exists():
    lines = [_wal_line("m", "2026-03-01"), _wal_line("m", "2026-03-02"), _wal_line("m", "2026-03-03")[:-5]]
    parts = wal_segment_parts(lines)
    assert parts == {("predictions", "m", "2026-03-01"), ("predictions", "m", "2026-03-02")}  # torn line skipped
    midnight = int(pd.Timestamp("2026-03-04", tz="UTC").value)
    grouped = json.dumps({"kind": "predictions", "model": "m", "times_ns": [midnight - 1, midnight]}) + "\n"
    assert wal_segment_parts([grouped]) == {("predictions", "m", "2026-03-03"), ("predictions", "m", "2026-03-04")}
    both = {("predictions", "m", "2026-03-01"): ["part-abc.parquet"],
            ("predictions", "m", "2026-03-02"): ["part-abc-1.parquet", "part-other.parquet"]}
    assert segment_written("abc", parts, both)
    assert not segment_written("abc", parts, {("predictions", "m", "2026-03-01"): ["part-abc.parquet"]})
    assert not segment_written("abc", parts, {**both, ("predictions", "m", "2026-03-02"): ["part-abcd.parquet"]})


# ------------------------------------------------------------------------------------------ drift state


def _column(name: str, score: float, threshold: float = 0.1, importance: float | None = None) -> ColumnDrift:
    return ColumnDrift(name, "numeric", "Wasserstein distance (normed)", score, threshold, score >= threshold,
                       importance, 0.0, 0.0)


def _result(**scores: float) -> DriftResult:
    columns = tuple(_column(name, score) for name, score in scores.items())
    drifted = sum(c.drifted for c in columns)
    return DriftResult(columns, None, drifted / len(columns), False, 1000, 500, "profile")


def test_choose_drift_window():
    assert choose_drift_window(as_of=NOW, window_hours=None, last_rows=None, default_days=1, lookback_days=90) == (
        DriftWindow(end=NOW, start=NOW - timedelta(days=1))
    )
    window = choose_drift_window(as_of=NOW.replace(tzinfo=None), window_hours=None, last_rows=500, default_days=1,
                                 lookback_days=90)
    assert window.end == NOW and window.last_rows == 500 and "last 500 rows" in window.describe()
    with pytest.raises(ValueError, match="not both"):
        choose_drift_window(as_of=NOW, window_hours=2, last_rows=5, default_days=1, lookback_days=90)
    with pytest.raises(ValueError, match="window_hours must be positive"):
        choose_drift_window(as_of=NOW, window_hours=0, last_rows=None, default_days=1, lookback_days=90)


def test_focus_result_keeps_the_most_important_columns_for_the_decision():
    result = _result(a=0.5, b=0.5, c=0.01)
    focused, left_out = focus_result(result, {"a": 0.3, "b": 0.01, "c": 0.2}, top_n=2)
    assert [c.column for c in focused.columns] == ["a", "c"] and left_out == ("b",)
    assert focus_result(result, None, 2) == (result, ())
    assert focus_result(result, {"a": 1.0}, 3) == (result, ())


def _decision(material: bool, columns: tuple[str, ...], newly: tuple[str, ...] = ()) -> MaterialDriftDecision:
    return MaterialDriftDecision(material, DriftReason.SHARE_REACHED if material else DriftReason.NO_DRIFT, "why",
                                 columns, newly)


def _record(version: str, material: bool, columns: tuple[str, ...], end: datetime, since: datetime | None = None):
    return DriftRecord("m", version, end - timedelta(days=1), end, 500, material, material, "why", columns,
                       _result(a=0.5 if "a" in columns else 0.01), material_since=since)


def test_announce_when_material_drift_starts_or_spreads_not_while_it_persists():
    day = NOW - timedelta(days=1)
    start = decide_announcement(_decision(True, ("a",), ("a",)), None, "3", NOW)
    assert start.announce and start.code is AnnounceReason.STARTED and start.material_since == NOW
    previous = _record("3", True, ("a",), day, since=day - timedelta(days=2))
    persists = decide_announcement(_decision(True, ("a",)), previous, "3", NOW)
    assert not persists.announce and persists.material_since == day - timedelta(days=2)
    assert persists.code is AnnounceReason.PERSISTS
    spread = decide_announcement(_decision(True, ("a", "b"), ("b",)), previous, "3", NOW)
    assert spread.announce and spread.code is AnnounceReason.SPREAD and spread.why == "material drift spread to b"
    retrained = decide_announcement(_decision(True, ("a",)), previous, "4", NOW)  # the retrain did not end it
    assert not retrained.announce and retrained.code is AnnounceReason.PERSISTS_AFTER_RETRAIN
    assert decide_announcement(_decision(True, ("a",)), _record("3", False, (), day), "3", NOW).announce
    quiet = decide_announcement(_decision(False, ()), previous, "3", NOW)
    assert not quiet.announce and quiet.code is AnnounceReason.NOT_MATERIAL


def test_drift_history_keeps_checks_for_hysteresis_and_the_monthly_trend(tmp_path):
    history = DriftHistory(str(tmp_path / "log"))
    assert history.previous("m", NOW) is None
    nan_result = DriftResult((_column("a", float("nan")),), None, 0.0, False, 10, 10, "profile")
    for offset in (3, 2, 1):
        end = NOW - timedelta(days=offset)
        record = _record("3", offset == 2, ("a",) if offset == 2 else (), end)
        history.append(record if offset != 1 else DriftRecord(**{**record.__dict__, "result": nan_result}))
    back = history.previous("m", NOW - timedelta(days=1))
    assert back.window_end == NOW - timedelta(days=2) and back.material and back.columns == ("a",)
    assert back.result.column("a").score == 0.5
    assert history.previous("m", NOW).result.column("a").score != history.previous("m", NOW).result.column("a").score
    assert [r.window_end for r in history.records("m", NOW - timedelta(days=3), NOW - timedelta(days=1))] == [
        NOW - timedelta(days=2), NOW - timedelta(days=1)]
    assert history.records("other") == []


def test_drift_event_payload_names_columns_scores_and_versions(spec):
    result = DriftResult((_column("income", 0.4, importance=0.2), _column("age", 0.01)), None, 0.5, True, 4800, 2000,
                         "profile")
    payload = drift_event_payload(
        spec=spec, version="3", champion_version="3", challenger_version="4", result=result,
        decision=_decision(True, ("income",), ("income",)), window=DriftWindow(end=NOW, start=NOW - timedelta(days=1)),
        why="material drift started", report_uri="file:///r.html",
    )
    assert payload["columns"] == [{"column": "income", "kind": "numeric", "method": "Wasserstein distance (normed)",
                                   "score": 0.4, "threshold": 0.1, "drifted": True, "importance": 0.2}]
    assert (payload["version"], payload["challenger_version"], payload["window_end"]) == ("3", "4", NOW.isoformat())
    json.dumps(payload)


# ------------------------------------------------------------------------------------------ summaries


def test_a_failed_task_is_a_finding_and_the_summary_reads_well():
    log = RunLog("m", Cadence.DAILY, NOW)
    log.completed("log retention", "2 partitions removed")
    log.failed("health check", "RuntimeError: store unreachable")
    log.actions.append("removed 2 log partitions")
    (finding,) = log.findings
    assert finding.priority is Priority.HIGH and finding.fingerprint == "maintenance-failed:health check"
    entry = LedgerEntry("e1", "m", finding.title, finding.detail, finding.kind, finding.priority,
                        EntryStatus.OPEN, NOW, NOW,
                        finding.source, finding.fingerprint)
    log.issues.append(RecordedFinding.from_entry(entry, FindingState.OPEN))  # e.g. also listed as an open critical alert
    summary = log.summary([RecordedFinding.from_entry(entry)], "run-1")
    assert [(i.entry_id, i.state) for i in summary.issues_found] == [("e1", FindingState.OPEN)]  # once
    assert [t.name for t in summary.failed_tasks] == ["health check"] and summary.flow_run_id == "run-1"
    text = summary.to_markdown()
    assert "# Daily maintenance of m as of 2026-03-08 00:00 UTC" in text and "2 tasks (1 failed), 1 issues, 1 actions" in text
    assert "| e1 | high | corrective | maintenance task 'health check' failed | open |" in text
    assert markdown_table([{"a": 1, "b": "x|y"}]) == "| a | b |\n|---|---|\n| 1 | x\\|y |"


def _issue(code: IssueCode, severity: Severity, subject: str) -> Issue:
    return Issue(Area.DATA_QUALITY, code, severity, f"missing values in {subject}", f"30% of rows miss {subject}",
                 "investigate the data pipeline", subject=subject)


def test_the_weeks_data_quality_names_each_issue_once_with_its_days():
    quiet = CheckResult.judged(Area.DATA_QUALITY, {"rows": 10, "missing_share": 0.0}, [])
    warn = CheckResult.judged(Area.DATA_QUALITY, {"rows": 10}, [_issue(IssueCode.MISSING_VALUES, Severity.WARNING, "age")])
    crit = CheckResult.judged(Area.DATA_QUALITY, {"rows": 10}, [_issue(IssueCode.MISSING_VALUES, Severity.CRITICAL, "age")])
    rows, findings = summarize_quality([(date(2026, 3, 1), quiet), (date(2026, 3, 2), warn), (date(2026, 3, 3), crit)],
                                       "weekly")
    assert [r["status"] for r in rows] == ["passed", "warning", "critical"]
    (finding,) = findings
    assert finding.fingerprint == "health:data_quality:missing_values:age"  # the health check's entry, seen again
    assert finding.priority is Priority.CRITICAL and finding.incident
    assert finding.detail.startswith("on 2 of 3 days (2026-03-02, 2026-03-03); worst 2026-03-03: 30% of rows miss age.")


def _slo_day(spec, day: date, p95: float, accuracy: float | None) -> SLODay:
    return SLODay(spec.name, day, True, NOW, SLOTargets.from_spec(spec), 1000, 0, 0, p95 / 2, p95, p95 * 1.5,
                  500 if accuracy is not None else 0, accuracy)


def test_performance_trends_find_rising_latency_and_falling_accuracy(spec):
    days = [date(2026, 2, 1) + timedelta(days=i) for i in range(20)]
    rising = [_slo_day(spec, d, 12 + i, 0.80 - 0.005 * i if i < 17 else None) for i, d in enumerate(days)]
    (latency, accuracy), findings = performance_trends(rising, spec)
    assert latency.points == 20 and accuracy.points == 17
    by_print = {f.fingerprint: f for f in findings}
    assert by_print["trend:latency"].priority is Priority.HIGH  # 31 ms at the end, above the 25 ms SLO
    assert "now above the 25 ms SLO" in by_print["trend:latency"].detail
    assert by_print["trend:accuracy"].kind is MaintenanceKind.ADAPTIVE
    flat = [_slo_day(spec, d, 12 + (i % 2) * 0.1, 0.8) for i, d in enumerate(days)]
    assert performance_trends(flat, spec)[1] == []


def test_accuracy_assessment_recommends_retraining_for_a_drop_or_drift(spec):
    day = NOW - timedelta(days=1)
    assessment, findings = assess_accuracy(spec=spec, version="3", production_value=0.70, labelled_rows=5000,
                                           baseline_value=0.80, drift_records=[])
    assert assessment.retrain_recommended and assessment.change == pytest.approx(-0.10)
    assert {f.fingerprint for f in findings} == {"accuracy:drop"}  # 0.70 meets the 0.70 SLO floor exactly
    assessment, findings = assess_accuracy(spec=spec, version="3", production_value=0.65, labelled_rows=5000,
                                           baseline_value=0.66, drift_records=[_record("3", True, ("a",), day)])
    assert {f.fingerprint: f.priority for f in findings} == {"accuracy:slo": Priority.CRITICAL}
    assert "material on 1 of 1 checked days, most often in a (1x)" in assessment.reading
    assessment, findings = assess_accuracy(spec=spec, version="3", production_value=0.80, labelled_rows=5000,
                                           baseline_value=0.80, drift_records=[_record("3", True, ("a",), day)])
    assert [f.fingerprint for f in findings] == ["accuracy:drift"] and assessment.retrain_recommended
    assessment, findings = assess_accuracy(spec=spec, version="3", production_value=None, labelled_rows=12,
                                           baseline_value=0.80, drift_records=[])
    assert [f.fingerprint for f in findings] == ["accuracy:no-labels"] and not assessment.retrain_recommended


def test_right_sizing_from_the_checks_of_the_period(spec):
    times = pd.date_range("2026-03-01", periods=7200, freq="500ms", tz="UTC")  # one busy hour at 2 requests/s
    requests = pd.DataFrame({"request_id": [f"r{i}" for i in range(len(times))], "time": times, "served": True,
                             "status": "ok", "version": "3", "latency_ms": 10.0})
    window = HealthWindow(datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 8, tzinfo=UTC))
    reading = right_sizing(check_performance(requests, window, spec), check_cost(requests, window, spec), spec, 7)
    assert reading.startswith("Busiest hour of 7 days: 2 requests/s against 200 requests/s of capacity")
    assert "declare cost.replica_capacity_rps" in reading  # the default capacity is not a measurement
    declared = spec.model_copy(update={"cost": spec.cost.model_validate({"replica_capacity_rps": 200.0})})
    reading = right_sizing(check_performance(requests, window, declared), check_cost(requests, window, declared),
                           declared, 7)
    assert "over-provisioned" in reading
    empty = requests.iloc[:0]
    assert "No served requests" in right_sizing(check_performance(empty, window, spec), check_cost(empty, window, spec),
                                                spec, 7)


def test_scan_day_reduces_a_day_of_the_log(spec):
    n = 300
    rng = np.random.default_rng(0)
    predictions = pd.DataFrame({
        "request_id": [f"r{i}" for i in range(n)], "row": 0,
        "time": pd.date_range("2026-03-01", periods=n, freq="1min", tz="UTC"),
        "version": "3", "arm": "champion", "served": True, "status": "ok",
        "prediction": rng.integers(0, 2, n).astype(str), "score": rng.random(n), "latency_ms": 10.0 + rng.random(n),
        "entity": None, "region": rng.choice(["north", "south"], n),
        **{f: rng.random(n) for f in spec.numeric_features},
        "employment_type": "salaried", "education": "master",
    })
    shadow = predictions.head(10).assign(version="4", served=False)
    labels = pd.DataFrame({"request_id": predictions["request_id"], "row": 0,
                           "label": predictions["prediction"], "time": predictions["time"]})
    scan = scan_day(spec, date(2026, 3, 1), pd.concat([predictions, shadow]), labels, as_of=NOW, fences=None,
                    quality=True, labelled_columns=["region"])
    assert scan.versions == ("3", "4") and scan.slo.requests == n and scan.slo.complete
    assert scan.slo.accuracy is not None and scan.labelled_total == n and list(scan.labelled.columns) == [
        "version", "label", "prediction", "score", "region"]
    assert len(scan.requests) == n and scan.quality is not None
    assert "outliers not measured" in " ".join(scan.quality.notes)


# ------------------------------------------------------------------------------------------ security audit


def test_admin_token_checks():
    missing = audit_admin_token(None, None, NOW)
    assert [c.status for c in missing] == [CheckStatus.FAILED, CheckStatus.NOT_MEASURABLE]
    assert missing[0].findings[0].fingerprint == "security:admin-token"
    short = audit_admin_token("secret", None, NOW)
    assert short[0].findings[0].priority is Priority.HIGH and "6 characters" in short[0].detail
    assert short[1].status is CheckStatus.NOT_MEASURABLE and "STEWARD_ADMIN_TOKEN_ISSUED_AT" in short[1].detail
    strong = "x" * 40
    old = audit_admin_token(strong, "2025-10-01", NOW)
    assert old[0].status is CheckStatus.PASSED and old[1].status is CheckStatus.FAILED and "158 days" in old[1].detail
    assert audit_admin_token(strong, "2026-03-01T00:00:00+00:00", NOW)[1].status is CheckStatus.PASSED
    assert audit_admin_token(strong, "last week", NOW)[1].findings[0].fingerprint == "security:token-date"


def test_a_champion_with_a_bad_digest_is_a_critical_incident():
    checks = audit_digests("m", {"champion": ("3", "digest mismatch"), "challenger": ("4", None),
                                 "rollback target": ("2", "digest mismatch")})
    assert [c.status for c in checks] == [CheckStatus.FAILED, CheckStatus.PASSED, CheckStatus.FAILED]
    champion, target = checks[0].findings[0], checks[2].findings[0]
    assert champion.priority is Priority.CRITICAL and champion.incident and "steward rollback" in champion.detail
    assert target.priority is Priority.HIGH and not target.incident


def _version(number: str, aliases=(), archived=False, stage="validated", created=NOW - timedelta(days=60)):
    tags = {"steward.stage": stage, **({"steward.archived": "true"} if archived else {})}
    return VersionInfo("m", number, f"run{number}", "src", created, tuple(aliases), tags)


def _entry(kind: ChangeKind, alias: str | None, to: str, when: datetime, seq: int) -> AuditEntry:
    return AuditEntry(when, "m", kind, "ci", "why", alias=alias, to_version=to, sequence=seq)


def test_stale_aliases():
    history = [_entry(ChangeKind.BOOTSTRAP, "champion", "1", NOW - timedelta(days=50), 1),
               _entry(ChangeKind.ASSIGN, "challenger", "2", NOW - timedelta(days=30), 2)]
    versions = [_version("1", ["champion"]), _version("2", ["challenger"])]
    idle = find_stale_aliases(versions, history, active_versions=["1"], now=NOW)
    assert idle.status is CheckStatus.FAILED and idle.findings[0].fingerprint == "stale-alias:challenger:2"
    assert find_stale_aliases(versions, history, active_versions=["1", "2"], now=NOW).status is CheckStatus.PASSED
    recent = [history[0], _entry(ChangeKind.ASSIGN, "challenger", "2", NOW - timedelta(days=2), 3)]
    assert find_stale_aliases(versions, recent, active_versions=[], now=NOW).status is CheckStatus.PASSED
    archived = find_stale_aliases([_version("1", ["champion"], stage="rolled_back")], history, ["1"], NOW)
    assert archived.findings[0].title == "alias champion points at rolled_back v1"


def test_versions_past_retention_are_found():
    history = [_entry(ChangeKind.BOOTSTRAP, "champion", "5", NOW, 1)]
    versions = [_version(str(i), ["champion"] if i == 5 else ()) for i in range(1, 6)] + [_version("6", archived=True)]
    check = audit_retention(versions, history)
    assert check.status is CheckStatus.FAILED and check.detail == "not archived: v1, v2"  # v3-v5: the 3 newest
    assert audit_retention(versions[2:], history).status is CheckStatus.PASSED


# ------------------------------------------------------------------------------------------ technology review

LOCK = """
version = 1
[[package]]
name = "pandas"
version = "2.3.3"
[[package]]
name = "scikit-learn"
version = "1.9.1"
[[package]]
name = "Prefect"
version = "3.8.8"
[[package]]
name = "numpy"
version = "2.4.6"
"""
PYPROJECT = """
[project]
name = "x"
dependencies = ["pandas>=2.3,<3", "scikit-learn>=1.9,<1.10", "prefect>=3.8,<3.9"]
"""


def test_technology_review_against_the_lock_and_the_declared_ranges():
    locked, declared = locked_versions(LOCK), declared_requirements(PYPROJECT)
    assert locked["prefect"] == ("3.8.8",) and declared["pandas"] == "<3,>=2.3"
    installed = {"pandas": "3.0.0", "scikit-learn": "1.9.0", "prefect": "3.8.8", "numpy": "2.5.0", "mlflow": None}
    checks = {c.package: c for c in review_technology(
        ["pandas", "scikit-learn", "Prefect", "numpy", "mlflow", "fsspec"], {**installed, "fsspec": "2025.1.0"},
        locked, declared, trained_with={"prefect": "3.8.7"},
    )}
    assert checks["pandas"].status is TechStatus.OUTSIDE_DECLARED
    assert checks["scikit-learn"].status is TechStatus.LOCK_NEWER and "uv sync --locked" in checks["scikit-learn"].detail
    assert checks["prefect"].status is TechStatus.OK and "trained with 3.8.7" in checks["prefect"].detail
    assert checks["numpy"].status is TechStatus.ENV_NEWER
    assert checks["mlflow"].status is TechStatus.NOT_INSTALLED and checks["fsspec"].status is TechStatus.NOT_LOCKED
    findings = {f.fingerprint: f for f in technology_findings(list(checks.values()))}
    assert findings["technology:pandas"].priority is Priority.HIGH
    assert findings["technology:prefect"].title == "prefect: champion trained with 3.8.7, environment has 3.8.8"
    assert "technology:numpy" in findings and len(findings) == 6


# ------------------------------------------------------------------------------------------ model outputs


def test_reference_outputs_are_what_the_gateway_logs_and_importance_finds_the_signal(spec):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n = 600
    frame = pd.DataFrame({f.name: rng.normal(size=n) for f in spec.features if f.is_numeric})
    for f in spec.categorical_features:
        frame[f] = "north" if f == "region" else "salaried" if f == "employment_type" else "master"
    frame = frame[spec.feature_names]
    frame[spec.target] = (frame["utilization"] + 0.1 * rng.normal(size=n) > 0).astype(int)

    class Numeric(LogisticRegression):  # the spec's categorical columns are constant here; leave them out
        def fit(self, x, y):
            return super().fit(x[spec.numeric_features], y)

        def predict(self, x):
            return super().predict(x[spec.numeric_features])

        def predict_proba(self, x):
            return super().predict_proba(x[spec.numeric_features])

    model = Numeric().fit(frame[spec.feature_names], frame[spec.target])
    scores = reference_outputs(model, frame[spec.feature_names], spec)
    assert scores.name == "score" and np.allclose(scores, model.predict_proba(frame[spec.feature_names])[:, 1])
    importances = permutation_importances(model, frame, spec, repeats=2)
    assert max(importances, key=importances.get) == "utilization" and importances["utilization"] > 0.3
    assert all(v >= 0 and math.isfinite(v) for v in importances.values())


def test_findings_are_plain_frozen_data():
    finding = Finding("t", "d", MaintenanceKind.ADAPTIVE, Priority.LOW, "s", "fp")
    with pytest.raises(AttributeError):
        finding.title = "other"
