"""The Evidently adapter: the only Steward module that imports Evidently (lazily: the import takes seconds).

Runs Evidently 0.7's ``DataDriftPreset`` and parses its structured output once, by metric type
and column, into plain types.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from steward.monitoring.drift.profile import float_values, no_values_error
from steward.monitoring.drift.result import (
    CHI_SQUARE,
    JENSEN_SHANNON,
    KS,
    WASSERSTEIN,
    Z_TEST,
    ColumnDrift,
    ColumnKind,
    DriftReportFormatError,
    DriftResult,
    beyond,
)

if TYPE_CHECKING:  # pragma: no cover
    from evidently.core.report import Snapshot

SUPPORTED_EVIDENTLY = "0.7.23"
_REGISTRY_NAME = {
    WASSERSTEIN: "wasserstein",
    JENSEN_SHANNON: "jensenshannon",
    KS: "ks",
    CHI_SQUARE: "chisquare",
    Z_TEST: "z",
}
_DISPLAY_NAME = {v: k for k, v in _REGISTRY_NAME.items()}
_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"


def evidently_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    prediction_column: str | None,
    prediction_kind: ColumnKind | None,
    threshold: float | None,
    drift_share: float,
    metadata: Mapping[str, Any] | None = None,
    methods: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
) -> Snapshot:
    """Run Evidently's DataDriftPreset on the features plus ValueDrift on the prediction.

    Column types are explicit (DataDefinition) so Evidently does not guess; tests are on so the
    snapshot carries Evidently's own per-column and dataset-level verdicts.  ``methods`` (column ->
    display name) and ``thresholds`` pin each column's test, so a report on a sample uses the
    statistic the verdict on all rows used (Evidently would otherwise re-choose it from the
    sample's size).
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift
    from evidently.presets import DataDriftPreset

    num = numeric + ([prediction_column] if prediction_kind == "numeric" else [])
    cat = categorical + ([prediction_column] if prediction_kind == "categorical" else [])
    definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
    cols = num + cat
    pinned = {c: _REGISTRY_NAME[m] for c, m in (methods or {}).items() if m in _REGISTRY_NAME}
    features = numeric + categorical
    metrics: list[Any] = [
        DataDriftPreset(
            columns=features,
            drift_share=drift_share,
            threshold=threshold,
            per_column_method={c: pinned[c] for c in features if c in pinned} or None,
            per_column_threshold={c: thresholds[c] for c in features if c in thresholds}
            if thresholds
            else None,
        )
    ]
    if prediction_column is not None:
        pred_threshold = (thresholds or {}).get(prediction_column, threshold)
        metrics.append(
            ValueDrift(
                column=prediction_column, threshold=pred_threshold, method=pinned.get(prediction_column)
            )
        )
    report = Report(metrics, include_tests=True, metadata=dict(metadata or {}))
    with np.errstate(divide="ignore", invalid="ignore"):  # chi-square on an unseen category divides by 0
        return report.run(
            Dataset.from_pandas(current[cols], data_definition=definition),
            Dataset.from_pandas(reference[cols], data_definition=definition),
        )


def _format_error(what: str) -> DriftReportFormatError:
    try:
        import evidently

        version = evidently.__version__
    except Exception:  # pragma: no cover
        version = "unknown"
    return DriftReportFormatError(
        f"Evidently's drift output is not shaped as expected: {what}. Installed evidently {version}; "
        f"steward.drift parses {SUPPORTED_EVIDENTLY}. Pin evidently=={SUPPORTED_EVIDENTLY} or update the parser."
    )


@dataclass(frozen=True)
class _ParsedReport:
    columns: dict[str, tuple[str, float, float, bool]]  # column -> (method, score, threshold, drifted)
    drifted_count: float
    drift_share: float
    dataset_drift: bool


def parse_snapshot(
    snapshot: Snapshot, columns: Iterable[str], prediction_column: str | None, drift_share: float
) -> _ParsedReport:
    """Read Evidently's structured output (``Snapshot.dict()``) once, by metric type and column.

    ValueDrift metrics are matched by ``config.type`` and ``config.column``; their verdicts come
    from the tests bound to each metric's id (status FAIL = drift).  The DriftedColumnsCount
    metric gives the count/share and its ``lt(drift_share)`` test the dataset-level verdict.
    """
    try:
        data = snapshot.dict()
    except Exception as exc:  # pragma: no cover - depends on Evidently internals
        raise _format_error(f"Snapshot.dict() failed ({exc})") from exc
    metrics, tests = data.get("metrics"), data.get("tests")
    if not isinstance(metrics, list) or not isinstance(tests, list):
        raise _format_error("Snapshot.dict() lacks 'metrics'/'tests' lists")
    status: dict[str, list[str]] = {}
    for t in tests:
        try:
            raw = t["status"]
            status.setdefault(t["metric_config"]["metric_id"], []).append(
                str(getattr(raw, "value", raw)).upper()
            )
        except (KeyError, TypeError):
            raise _format_error("a test result lacks metric_config.metric_id or status") from None

    wanted = set(columns) | ({prediction_column} if prediction_column else set())
    parsed: dict[str, tuple[str, float, float, bool]] = {}
    counts: list[tuple[float, float, str]] = []
    for m in metrics:
        config = m.get("config") if isinstance(m, dict) else None
        if not isinstance(config, dict):
            raise _format_error("a metric entry lacks its 'config'")
        kind = config.get("type")
        if kind == _VALUE_DRIFT_TYPE:
            column = config.get("column")
            if column not in wanted:
                continue
            if column in parsed:
                raise _format_error(f"two ValueDrift metrics for column {column!r}")
            method, threshold, value = config.get("method"), config.get("threshold"), m.get("value")
            method = _DISPLAY_NAME.get(method, method)  # a pinned method shows its registry name
            if (
                not isinstance(method, str)
                or not isinstance(threshold, int | float)
                or not isinstance(value, int | float)
            ):
                raise _format_error(
                    f"ValueDrift for {column!r} lacks a resolved method, threshold or numeric value"
                )
            verdicts = status.get(m.get("id"), [])
            # Evidently's own verdict is its test status; without tests, apply its comparison here
            drifted = "FAIL" in verdicts if verdicts else beyond(method, float(value), float(threshold))
            parsed[column] = (method, float(value), float(threshold), drifted)
        elif kind == _DRIFTED_COUNT_TYPE:
            value = m.get("value")
            if not isinstance(value, dict) or "count" not in value or "share" not in value:
                raise _format_error("DriftedColumnsCount value lacks count/share")
            counts.append((float(value["count"]), float(value["share"]), m.get("id")))
    absent = sorted(wanted - set(parsed))
    if absent:
        raise _format_error(f"no ValueDrift result for columns {absent}")
    if len(counts) != 1:
        raise _format_error(f"expected one DriftedColumnsCount metric, found {len(counts)}")
    count, share, count_id = counts[0]
    verdicts = status.get(count_id, [])
    dataset_drift = ("FAIL" in verdicts) if verdicts else share >= drift_share
    return _ParsedReport(parsed, count, share, dataset_drift)


def _missing_share(series: pd.Series, kind: ColumnKind) -> float:
    if kind == "numeric":
        return float((~np.isfinite(float_values(series))).mean())
    return float(series.isna().mean())


def run_evidently_engine(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    prediction_column: str | None,
    prediction_kind: ColumnKind | None,
    threshold: float | None,
    drift_share: float,
    importances: Mapping[str, float],
) -> DriftResult:
    for name in [*numeric, *categorical, *([prediction_column] if prediction_column else [])]:
        for frame, what in ((reference, "reference"), (current, "current")):
            col = frame[name]
            empty = (
                not np.isfinite(float_values(col)).any()
                if name in numeric or (name == prediction_column and prediction_kind == "numeric")
                else not col.notna().any()
            )
            if empty:
                raise no_values_error(name, what)
    start = time.perf_counter()
    snapshot = evidently_report(
        reference,
        current,
        numeric,
        categorical,
        prediction_column,
        prediction_kind,
        threshold,
        drift_share,
        metadata={"steward_engine": "evidently"},
    )
    parsed = parse_snapshot(snapshot, numeric + categorical, prediction_column, drift_share)
    seconds = time.perf_counter() - start

    def col(name: str, kind: ColumnKind) -> ColumnDrift:
        method, score, thr, drifted = parsed.columns[name]
        return ColumnDrift(
            name,
            kind,
            method,
            score,
            thr,
            drifted,
            importances.get(name),
            _missing_share(reference[name], kind),
            _missing_share(current[name], kind),
        )

    columns = tuple(col(c, "numeric") for c in numeric) + tuple(col(c, "categorical") for c in categorical)
    prediction = col(prediction_column, prediction_kind) if prediction_column and prediction_kind else None
    return DriftResult(
        columns=columns,
        prediction=prediction,
        drift_share=parsed.drift_share,
        dataset_drift=parsed.dataset_drift,
        reference_rows=len(reference),
        current_rows=len(current),
        engine="evidently",
        dataset_drift_share=drift_share,
        report_reference_rows=len(reference),
        report_current_rows=len(current),
        report_drifted_columns=tuple(c.column for c in columns if c.drifted),
        seconds=seconds,
        report_seconds=seconds,
        snapshot=snapshot,
    )
