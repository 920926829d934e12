"""The data-quality check: missing values, outliers against the training data, schema violations, rejected requests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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


def check_data_quality(
    predictions: pd.DataFrame,
    spec: ModelSpec,
    fences: OutlierFences | None,
    gateway: GatewayReading | None,
    *,
    fences_error: str | None = None,
) -> CheckResult:
    """Missing values, outliers against the training data, schema violations and rejected requests."""
    area = Area.DATA_QUALITY
    rows = predictions[predictions["served"].astype(bool)]
    n = len(rows)
    limits = spec.health
    metrics: dict[str, Metric] = {"rows": n}
    issues: list[Issue] = []
    notes: list[str] = []
    present = [name for name in spec.feature_names if name in rows.columns]
    absent = [name for name in spec.feature_names if name not in rows.columns]
    if absent and n:
        notes.append(f"features of the spec not in the log: {', '.join(absent)} (added after the serving version?)")

    if n and present:
        missing = rows[present].isna().sum()
        metrics["missing_share"] = float(missing.sum() / (n * len(present)))
        metrics["max_feature_missing_share"] = float(missing.max() / n)
        for name, count in missing.items():
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
        any_outlier = pd.Series(False, index=rows.index)
        for name, (low, high) in fences.bounds.items():
            if name not in rows.columns:
                continue
            values = pd.to_numeric(rows[name], errors="coerce")
            outside = (values < low) | (values > high)
            any_outlier |= outside
            counted = int(values.notna().sum())
            severity = share_severity(int(outside.sum()), counted, limits.max_outlier_share)
            if severity:
                issues.append(Issue(
                    area, IssueCode.OUTLIERS, severity, f"outliers in {name}",
                    f"{outside.sum() / counted:.1%} of {counted} values outside [{low:.4g}, {high:.4g}] "
                    f"(training range of v{fences.version} widened by its P1-P99 spread), "
                    f"limit {limits.max_outlier_share:.0%}",
                    "review preprocessing and validation upstream; if the population really moved, retrain",
                    subject=name,
                ))
        metrics["outlier_share"] = float(any_outlier.mean())

    if n:
        violations = schema_violations(rows, spec)
        violating = pd.Series(False, index=rows.index)
        for bad in violations.values():
            violating |= bad
        count = int(violating.sum())
        metrics["schema_violation_share"] = count / n
        severity = share_severity(count, n, limits.max_schema_violation_share)
        if severity:
            worst = ", ".join(f"{name} {bad.sum()}" for name, bad in
                              sorted(violations.items(), key=lambda item: -int(item[1].sum()))[:5])
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
