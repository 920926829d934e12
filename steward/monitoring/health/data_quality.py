"""The data-quality check: missing values, outliers against the training data, schema violations, rejected requests."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from steward.monitoring.health.infrastructure import GatewayReading
from steward.monitoring.health.report import (
    Area,
    CheckResult,
    Issue,
    IssueCode,
    Metric,
    share_severity,
)
from steward.spec import FeatureRole, FeatureType, ModelSpec


@dataclass(frozen=True)
class OutlierFences:
    """Per numeric feature, the range outside which a value counts as an outlier.

    From the version's training sample: [P1 - R, P99 + R] with R = P99 - P1. Percentiles rather than
    quartiles because count features are mostly zeros (their interquartile range is 0).
    """

    bounds: dict[str, tuple[float, float]]
    version: str
    reference_rows: int

    @classmethod
    def from_reference(cls, reference: pd.DataFrame, spec: ModelSpec, version: str) -> OutlierFences:
        bounds = {}
        calendar = set(spec.features_with_role(FeatureRole.CALENDAR))  # its range moves on by construction
        for name in spec.numeric_features:
            if name not in reference.columns or name in calendar:
                continue
            values = pd.to_numeric(reference[name], errors="coerce").dropna().to_numpy(dtype=float)
            if values.size == 0:
                continue
            low, high = np.percentile(values, [1, 99])
            spread = high - low
            bounds[name] = (float(low - spread), float(high + spread))
        return cls(bounds, version, len(reference))



def schema_violations(rows: pd.DataFrame, spec: ModelSpec) -> dict[str, pd.Series]:
    """Per feature, which accepted rows hold a value outside the spec's declared range or categories."""
    found = {}
    for feature in spec.features:
        if feature.name not in rows.columns:
            continue
        column = rows[feature.name]
        present = column.notna()
        if feature.is_numeric:
            values = pd.to_numeric(column, errors="coerce")
            bad = pd.Series(False, index=rows.index)
            if feature.min is not None:
                bad |= values < feature.min
            if feature.max is not None:
                bad |= values > feature.max
        elif feature.type is FeatureType.BOOLEAN:
            bad = present & ~column.astype(str).str.lower().isin(["true", "false"])
        elif feature.categories is not None:
            bad = present & ~column.astype(str).isin(feature.categories)
        else:
            continue
        if bad.any():
            found[feature.name] = bad & present
    return found


@dataclass
class QualityTally:
    """Counts the data-quality check judges, over a window's served rows; tallies of batches add up.

    ``outliers`` maps each fenced feature to (values outside its fences, values present).
    """

    rows: int = 0
    present: tuple[str, ...] = ()
    absent: tuple[str, ...] = ()
    missing: dict[str, int] = field(default_factory=dict)
    outliers: dict[str, tuple[int, int]] = field(default_factory=dict)
    any_outlier: int = 0
    violations: dict[str, int] = field(default_factory=dict)
    any_violation: int = 0

    @classmethod
    def of_rows(cls, rows: pd.DataFrame, spec: ModelSpec, fences: OutlierFences | None) -> QualityTally:
        """The counts of ``rows`` (served rows of the log, features under their names)."""
        present = tuple(name for name in spec.feature_names if name in rows.columns)
        absent = tuple(name for name in spec.feature_names if name not in rows.columns)
        tally = cls(len(rows), present, absent)
        if not len(rows):
            return tally
        tally.missing = {name: int(count) for name, count in rows[list(present)].isna().sum().items()}
        if fences is not None:
            any_outlier = np.zeros(len(rows), dtype=bool)
            for name, (low, high) in fences.bounds.items():
                if name not in rows.columns:
                    continue
                values = pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float)
                outside = (values < low) | (values > high)
                any_outlier |= outside
                tally.outliers[name] = (int(outside.sum()), int((~np.isnan(values)).sum()))
            tally.any_outlier = int(any_outlier.sum())
        violating = np.zeros(len(rows), dtype=bool)
        for name, bad in schema_violations(rows, spec).items():
            tally.violations[name] = int(bad.sum())
            violating |= bad.to_numpy(dtype=bool)
        tally.any_violation = int(violating.sum())
        return tally

    @classmethod
    def of_table(cls, rows: pa.Table, spec: ModelSpec, fences: OutlierFences | None) -> QualityTally:
        """``of_rows`` on an Arrow table of served rows, without a Python object per value (a scan's batch).

        A feature logged in an unexpected type (numbers as text) is counted through ``of_rows``.
        """
        present = tuple(name for name in spec.feature_names if name in rows.column_names)
        absent = tuple(name for name in spec.feature_names if name not in rows.column_names)
        if not rows.num_rows:
            return cls(0, present, absent)
        odd = [f.name for f in spec.features if f.name in present
               and (f.is_numeric != pa.types.is_floating(rows.schema.field(f.name).type)
                    or (not f.is_numeric and not pa.types.is_string(rows.schema.field(f.name).type)))]
        tally = cls.of_rows(rows.select(odd).to_pandas(), spec, fences) if odd else cls(rows.num_rows, (), ())
        tally.present, tally.absent = present, absent
        any_outlier = np.zeros(rows.num_rows, dtype=bool)
        violating = np.zeros(rows.num_rows, dtype=bool)
        bounds = fences.bounds if fences is not None else {}
        for feature in spec.features:
            name = feature.name
            if name not in present or name in odd:
                continue
            column = rows[name]
            if feature.is_numeric:
                values = column.to_numpy(zero_copy_only=False).astype(np.float64)  # nulls: NaN
                known = ~np.isnan(values)
                tally.missing[name] = int(values.size - np.count_nonzero(known))
                if name in bounds:
                    low, high = bounds[name]
                    outside = (values < low) | (values > high)
                    any_outlier |= outside
                    tally.outliers[name] = (int(np.count_nonzero(outside)), int(np.count_nonzero(known)))
                bad = np.zeros(values.size, dtype=bool)
                if feature.min is not None:
                    bad |= values < feature.min
                if feature.max is not None:
                    bad |= values > feature.max
            else:
                tally.missing[name] = int(column.null_count)
                text = column
                if feature.type is FeatureType.BOOLEAN:
                    text, allowed = pc.utf8_lower(column), pa.array(["true", "false"])
                elif feature.categories is not None:
                    allowed = pa.array([str(c) for c in feature.categories])
                else:
                    continue
                bad = pc.and_(pc.is_valid(column), pc.invert(pc.is_in(text, value_set=allowed)))
                bad = bad.to_numpy(zero_copy_only=False).astype(bool)
            if bad.any():
                tally.violations[name] = int(np.count_nonzero(bad))
                violating |= bad
        if odd:  # rows of the odd columns that were outliers or violations are counted once with the others
            frame = rows.select(odd).to_pandas()
            for name, (low, high) in bounds.items():
                if name in odd:
                    values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)
                    any_outlier |= (values < low) | (values > high)
            for bad in schema_violations(frame, spec).values():
                violating |= bad.to_numpy(dtype=bool)
        if fences is not None:
            tally.any_outlier = int(np.count_nonzero(any_outlier))
        tally.any_violation = int(np.count_nonzero(violating))
        return tally

    def merge(self, other: QualityTally) -> None:
        if not other.rows and not other.present:
            return
        if not self.rows and not self.present:
            self.present, self.absent = other.present, other.absent
        self.rows += other.rows
        for name, count in other.missing.items():
            self.missing[name] = self.missing.get(name, 0) + count
        for name, (outside, counted) in other.outliers.items():
            mine = self.outliers.get(name, (0, 0))
            self.outliers[name] = (mine[0] + outside, mine[1] + counted)
        self.any_outlier += other.any_outlier
        for name, count in other.violations.items():
            self.violations[name] = self.violations.get(name, 0) + count
        self.any_violation += other.any_violation


def check_data_quality(
    predictions: pd.DataFrame,
    spec: ModelSpec,
    fences: OutlierFences | None,
    gateway: GatewayReading | None,
    *,
    fences_error: str | None = None,
) -> CheckResult:
    """Missing values, outliers against the training data, schema violations and rejected requests."""
    tally = QualityTally.of_rows(predictions[predictions["served"].astype(bool)], spec, fences)
    return judge_data_quality(tally, spec, fences, gateway, fences_error=fences_error)


def judge_data_quality(
    tally: QualityTally,
    spec: ModelSpec,
    fences: OutlierFences | None,
    gateway: GatewayReading | None,
    *,
    fences_error: str | None = None,
) -> CheckResult:
    """The data-quality check on the counts of the window's served rows (``QualityTally``)."""
    area = Area.DATA_QUALITY
    n = tally.rows
    limits = spec.health
    metrics: dict[str, Metric] = {"rows": n}
    issues: list[Issue] = []
    notes: list[str] = []
    present, absent = tally.present, tally.absent
    if absent and n:
        notes.append(f"features of the spec not in the log: {', '.join(absent)} (added after the serving version?)")

    if n and present:
        missing = tally.missing
        metrics["missing_share"] = float(sum(missing.values()) / (n * len(present)))
        metrics["max_feature_missing_share"] = float(max(missing.values()) / n)
        for name in present:
            count = missing[name]
            severity = share_severity(int(count), n, limits.max_missing_share)
            if severity:
                issues.append(Issue(
                    area, IssueCode.MISSING_VALUES, severity, f"missing values in {name}",
                    f"{count / n:.1%} of {n} rows missing {name}, limit {limits.max_missing_share:.0%}",
                    "investigate the data pipeline that feeds this feature", subject=name,
                ))

    if fences is None and n:
        notes.append(f"outliers not measured: {fences_error or 'no training sample to compare with'}")
    elif n:
        metrics["outlier_reference"] = f"v{fences.version}"
        for name, (low, high) in fences.bounds.items():
            if name not in tally.outliers:
                continue
            outside, counted = tally.outliers[name]
            severity = share_severity(outside, counted, limits.max_outlier_share)
            if severity:
                issues.append(Issue(
                    area, IssueCode.OUTLIERS, severity, f"outliers in {name}",
                    f"{outside / counted:.1%} of {counted} values outside [{low:.4g}, {high:.4g}] "
                    f"(training range of v{fences.version} widened by its P1-P99 spread), "
                    f"limit {limits.max_outlier_share:.0%}",
                    "review preprocessing and validation upstream; if the population really moved, retrain",
                    subject=name,
                ))
        metrics["outlier_share"] = float(tally.any_outlier / n)

    if n:
        count = tally.any_violation
        metrics["schema_violation_share"] = count / n
        severity = share_severity(count, n, limits.max_schema_violation_share)
        if severity:
            order = {name: index for index, name in enumerate(spec.feature_names)}
            worst = ", ".join(f"{name} {bad}" for name, bad in
                              sorted(tally.violations.items(), key=lambda item: (-item[1], order[item[0]]))[:5])
            issues.append(Issue(
                area, IssueCode.SCHEMA_VIOLATIONS, severity, "accepted rows outside the declared schema",
                f"{count} of {n} rows ({count / n:.1%}) hold values outside the spec's ranges or categories "
                f"({worst}), limit {limits.max_schema_violation_share:.0%}",
                "review preprocessing and validation upstream; if the new values are legitimate, "
                "extend the spec's ranges or categories and retrain",
            ))

    if gateway is None:
        notes.append("rejected-request counts unavailable: no gateway URL given; "
                     "schema violations are judged from the accepted rows in the log only")
    elif not gateway.reachable:
        notes.append(f"rejected-request counts unavailable: {gateway.error}")
    else:
        total, invalid = gateway.total, gateway.invalid
        metrics.update(gateway_requests=total, rejected_requests=invalid, rate_limited_requests=gateway.rate_limited)
        metrics["rejected_share"] = invalid / total if total else 0.0
        notes.append(f"rejected requests are counted by {gateway.url}/metrics since that gateway started")
        severity = share_severity(invalid, total, limits.max_schema_violation_share)
        if severity:
            issues.append(Issue(
                area, IssueCode.REJECTED_REQUESTS, severity, "requests rejected by the schema",
                f"{invalid} of {total} requests ({invalid / total:.1%}) refused as invalid (400/413/422), "
                f"limit {limits.max_schema_violation_share:.0%}",
                "read the problems in the gateway's 422 answers and fix the client or the pipeline that builds requests",
            ))
    return CheckResult.judged(area, metrics, issues, notes, failed=fences is None and n > 0)
