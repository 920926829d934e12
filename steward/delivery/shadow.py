"""Shadow comparison: the challenger's copies of live requests against the champion's served answers.

The champion's served answer and the challenger's copy of the same request are paired by
request id and row; agreement, disagreement by slice and the latency cost come from those pairs
and from the champion's own latency before the shadow started.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from scipy import stats as sps
from statsmodels.stats.proportion import proportion_confint

from steward.delivery.decisions import MIN_SAMPLES_FOR_TESTS
from steward.delivery.experiments import (
    ExperimentError,
    ExperimentKind,
    ExperimentRun,
    ExperimentWindow,
    iso_utc,
)
from steward.registry.history import CHAMPION
from steward.spec import ModelSpec
from steward.stats import RatioEstimate, quantile_ratio

MISSING_SLICE = "(missing)"

@dataclass(frozen=True)
class Percentiles:
    n: int
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, values: np.ndarray) -> Percentiles | None:
        if len(values) == 0:
            return None
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return cls(len(values), float(p50), float(p95), float(p99))

    def describe(self) -> str:
        return f"p50 {self.p50:.1f} ms, p95 {self.p95:.1f} ms, p99 {self.p99:.1f} ms (n={self.n})"


@dataclass(frozen=True)
class LatencyCost:
    """What the shadow costs in time, from the log.

    ``challenger`` is the time from the request's arrival to the shadow score: it includes the
    shadow worker's gathering wait (``shadow_collect_seconds``) and, for the first copies, the
    start of the gateway's shadow scoring process, so it bounds the challenger's own cost from
    above (and a short window overstates it). ``champion_p95_change`` is the champion's served p95 during the shadow
    over its p95 in an equally long window before it: the cost the copies put on real answers.
    """

    champion: Percentiles | None
    challenger: Percentiles | None
    challenger_vs_champion_p95: RatioEstimate | None
    champion_before: Percentiles | None
    champion_p95_change: RatioEstimate | None

    @property
    def champion_slowed(self) -> bool | None:
        """True when the champion's served p95 rose significantly during the shadow; None when unmeasured."""
        change = self.champion_p95_change
        return None if change is None else change.ci_low > 1


@dataclass(frozen=True)
class SliceDisagreement:
    feature: str
    value: str
    pairs: int
    disagreements: int
    ci_low: float
    ci_high: float
    mean_abs_score_diff: float | None
    above_overall: bool  # the slice's 95% interval lies above the overall disagreement rate

    @property
    def rate(self) -> float:
        return self.disagreements / self.pairs if self.pairs else 0.0


@dataclass(frozen=True)
class LabelledComparison:
    """Both versions on the same labelled requests: a paired comparison."""

    pairs: int
    metric: str  # "accuracy" or "mean absolute error"
    champion: float
    challenger: float
    challenger_only_right: int | None  # classification: discordant pairs, for McNemar's test
    champion_only_right: int | None
    p_value: float | None
    method: str

    def describe(self) -> str:
        text = (f"{self.metric} on {self.pairs} labelled pairs: challenger {self.challenger:.4g}, "
                f"champion {self.champion:.4g}")
        if self.challenger_only_right is not None:
            text += (f"; challenger alone right {self.challenger_only_right}, champion alone right "
                     f"{self.champion_only_right}")
        if self.p_value is not None:
            text += f" ({self.method} p={self.p_value:.3g})"
        return text


@dataclass(frozen=True, eq=False)
class ShadowReport:
    model: str
    experiment_id: str
    champion_version: str
    challenger_version: str
    window: ExperimentWindow
    copy_percent: float
    served_requests: int
    shadow_requests: int
    shadow_errors: int
    pairs: int
    agreement_rate: float | None  # same class (classification) or |difference| within tolerance (regression)
    score_agreement_rate: float | None  # classification: |score difference| within tolerance
    mean_abs_score_diff: float | None
    tolerance: float
    classification: bool
    slices: tuple[SliceDisagreement, ...]
    latency: LatencyCost
    labelled: LabelledComparison | None
    notes: tuple[str, ...] = ()

    @property
    def coverage(self) -> float:
        return self.shadow_requests / self.served_requests if self.served_requests else 0.0

    @property
    def flagged_slices(self) -> tuple[SliceDisagreement, ...]:
        return tuple(s for s in self.slices if s.above_overall)

    def findings(self) -> str:
        """Agreement, flagged slices and the champion's latency change, in one line."""
        if not self.pairs:
            return (f"no paired predictions yet ({self.served_requests} served, {self.shadow_requests} shadow copies "
                    "in the window)")
        parts = [f"agreement {self.agreement_rate:.1%} on {self.pairs} pairs"]
        if self.flagged_slices:
            parts.append("disagreement above overall in " + ", ".join(
                f"{s.feature}={s.value} ({s.rate:.1%})" for s in self.flagged_slices))
        slowed = self.latency.champion_slowed
        if slowed is not None:
            change = self.latency.champion_p95_change
            parts.append(f"champion p95 {'rose' if slowed else 'did not rise significantly'} during the shadow "
                         f"(x{change.ratio:.2f})")
        return "; ".join(parts)

    def summary(self) -> str:
        return f"shadow of {self.model} (challenger v{self.challenger_version}): {self.findings()}"

    def to_details(self) -> dict[str, str]:
        return {
            "experiment": ExperimentKind.SHADOW.value,
            "action": "analyse",
            "experiment_id": self.experiment_id,
            "pairs": str(self.pairs),
            "agreement": "" if self.agreement_rate is None else f"{self.agreement_rate:.6g}",
            "flagged_slices": ", ".join(f"{s.feature}={s.value}" for s in self.flagged_slices),
            "champion_slowed": "" if self.latency.champion_slowed is None else str(self.latency.champion_slowed).lower(),
            "window_end": iso_utc(self.window.end),
        }

    def slice_rows(self) -> list[dict[str, object]]:
        return [
            {"feature": s.feature, "value": s.value, "pairs": s.pairs, "disagreements": s.disagreements,
             "disagreement rate": round(s.rate, 4), "95% CI": f"[{s.ci_low:.3f}, {s.ci_high:.3f}]",
             "mean |score diff|": None if s.mean_abs_score_diff is None else round(s.mean_abs_score_diff, 4),
             "above overall": s.above_overall}
            for s in self.slices
        ]

    def to_markdown(self) -> str:
        lines = [
            f"# Shadow of {self.model}, challenger v{self.challenger_version}: {self.findings()}",
            "",
            f"Challenger v{self.challenger_version} scored copies of {self.copy_percent:g}% of the requests champion "
            f"v{self.champion_version} answered; window {self.window.describe()}.",
            "",
            f"- requests served {self.served_requests}, shadow copies {self.shadow_requests} "
            f"(coverage {self.coverage:.1%}), shadow errors {self.shadow_errors}, paired rows {self.pairs}",
        ]
        if self.pairs:
            if self.classification:
                scores = ("scores not compared (no_scores: an arm gives labels only)"
                          if self.score_agreement_rate is None or self.mean_abs_score_diff is None else
                          f"scores within {self.tolerance:g}: {self.score_agreement_rate:.2%}; mean |score difference| "
                          f"{self.mean_abs_score_diff:.4f}")
                lines.append(f"- same predicted class: {self.agreement_rate:.2%}; {scores}")
            else:
                lines.append(f"- predictions within {self.tolerance:g} of each other: {self.agreement_rate:.2%}; "
                             f"mean |difference| {self.mean_abs_score_diff:.4g}")
        if self.labelled is not None:
            lines.append(f"- {self.labelled.describe()}")
        lat = self.latency
        if lat.champion is not None:
            lines.append(f"- champion served latency: {lat.champion.describe()}")
        if lat.challenger is not None:
            lines.append(f"- challenger time to shadow score (an upper bound: includes the shadow worker's gathering "
                         f"wait, and its start for the first copies): {lat.challenger.describe()}")
        if lat.challenger_vs_champion_p95 is not None:
            r = lat.challenger_vs_champion_p95
            lines.append(f"- p95 challenger shadow / champion served: {r.ratio:.2f} (95% CI [{r.ci_low:.2f}, "
                         f"{r.ci_high:.2f}])")
        if lat.champion_p95_change is not None and lat.champion_before is not None:
            r = lat.champion_p95_change
            verdict = "rose" if lat.champion_slowed else "no significant rise"
            lines.append(f"- champion served p95 during the shadow vs before ({lat.champion_before.describe()}): "
                         f"x{r.ratio:.2f} (95% CI [{r.ci_low:.2f}, {r.ci_high:.2f}]): {verdict}")
        else:
            lines.append("- champion p95 before the shadow: not enough served requests before it to compare")
        lines += [f"- note: {n}" for n in self.notes]
        if self.slices:
            lines += ["", "## Disagreement by slice", "",
                      "| feature | value | pairs | disagreement | 95% CI | mean abs score diff | above overall |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for s in self.slices:
                diff = "" if s.mean_abs_score_diff is None else f"{s.mean_abs_score_diff:.4f}"
                lines.append(f"| {s.feature} | {s.value} | {s.pairs} | {s.rate:.2%} | [{s.ci_low:.3f}, "
                             f"{s.ci_high:.3f}] | {diff} | {'yes' if s.above_overall else ''} |")
        return "\n".join(lines)


def _request_latencies(rows: pd.DataFrame) -> np.ndarray:
    return rows.drop_duplicates("request_id")["latency_ms"].dropna().to_numpy(float)


def _ratio(treatment: np.ndarray, control: np.ndarray) -> RatioEstimate | None:
    if min(len(treatment), len(control)) < MIN_SAMPLES_FOR_TESTS:
        return None
    return quantile_ratio(treatment, control, resamples=1000)


def _slices(pairs: pd.DataFrame, spec: ModelSpec, overall_disagreement: float) -> tuple[SliceDisagreement, ...]:
    found = []
    for feature in spec.gates.slice_features:
        if feature not in pairs.columns:
            continue
        values = pairs[feature].astype(object).where(pairs[feature].notna(), MISSING_SLICE).astype(str)
        for value, group in pairs.groupby(values, sort=True):
            n, k = len(group), int((~group["agree"]).sum())
            low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
            diff = group["abs_diff"].dropna()
            found.append(SliceDisagreement(feature, str(value), n, k, float(low), float(high),
                                           float(diff.mean()) if len(diff) else None, bool(low > overall_disagreement)))
    return tuple(sorted(found, key=lambda s: (s.feature, -s.rate, s.value)))


def _labelled(pairs: pd.DataFrame, labels: pd.DataFrame, classification: bool) -> LabelledComparison | None:
    if labels is None or labels.empty:
        return None
    latest = labels.sort_values("time", kind="stable").drop_duplicates(["request_id", "row"], keep="last")
    joined = pairs.merge(latest[["request_id", "row", "label"]], on=["request_id", "row"], how="inner")
    if joined.empty:
        return None
    if classification:
        right_ch = (joined["prediction_challenger"].astype(str) == joined["label"].astype(str)).to_numpy()
        right_cp = (joined["prediction_champion"].astype(str) == joined["label"].astype(str)).to_numpy()
        only_ch, only_cp = int((right_ch & ~right_cp).sum()), int((right_cp & ~right_ch).sum())
        p_value = float(sps.binomtest(only_ch, only_ch + only_cp, 0.5).pvalue) if only_ch + only_cp else None
        return LabelledComparison(len(joined), "accuracy", float(right_cp.mean()), float(right_ch.mean()),
                                  only_ch, only_cp, p_value, "exact McNemar")
    label = pd.to_numeric(joined["label"], errors="coerce")
    err_ch = (pd.to_numeric(joined["prediction_challenger"], errors="coerce") - label).abs()
    err_cp = (pd.to_numeric(joined["prediction_champion"], errors="coerce") - label).abs()
    ok = err_ch.notna() & err_cp.notna()
    if not ok.any():
        return None
    p_value = float(sps.ttest_rel(err_ch[ok], err_cp[ok]).pvalue) if ok.sum() > 2 else None
    return LabelledComparison(int(ok.sum()), "mean absolute error", float(err_cp[ok].mean()), float(err_ch[ok].mean()),
                              None, None, p_value, "paired t-test")


def compare_shadow(
    log: pd.DataFrame,
    spec: ModelSpec,
    run: ExperimentRun,
    window: ExperimentWindow,
    *,
    before: pd.DataFrame | None = None,
    labels: pd.DataFrame | None = None,
    tolerance: float = 0.05,
) -> ShadowReport:
    """Pair each served champion row with the challenger's shadow copy of it and compare them.

    ``log`` holds the window's rows, served and shadow; ``before`` the served rows of an equally
    long window before the shadow started (the champion's own latency baseline); ``labels`` the
    labels received so far (both versions of a pair share the request's label).
    """
    if tolerance < 0:
        raise ExperimentError(f"tolerance must be >= 0, got {tolerance}")
    served_mask = log["served"].astype(bool)
    served = log[served_mask & (log["arm"] == CHAMPION) & (log["version"] == run.champion_version)]
    shadow = log[~served_mask & (log["version"] == run.challenger_version)]
    classification = spec.task.is_classification
    notes = []
    other = int((~served_mask & (log["version"] != run.challenger_version)).sum())
    if other:
        notes.append(f"{other} shadow rows of other versions left out (the challenger alias moved)")

    slice_columns = [f for f in spec.gates.slice_features if f in served.columns]
    keep = ["request_id", "row", "prediction", "score"]
    pairs = served.loc[served["status"] == "ok", keep + slice_columns].merge(
        shadow.loc[shadow["status"] == "ok", keep], on=["request_id", "row"], suffixes=("_champion", "_challenger"),
    )
    agreement = score_agreement = mean_diff = None
    slices: tuple[SliceDisagreement, ...] = ()
    if len(pairs):
        if classification:
            pairs["agree"] = pairs["prediction_champion"].astype(str) == pairs["prediction_challenger"].astype(str)
            pairs["abs_diff"] = (pairs["score_challenger"] - pairs["score_champion"]).abs()
            scored = pairs["abs_diff"].notna()  # an arm that gives labels only has no score to compare (no_scores)
            score_agreement = float((pairs.loc[scored, "abs_diff"] <= tolerance).mean()) if scored.any() else None
        else:
            pairs["abs_diff"] = (pd.to_numeric(pairs["prediction_challenger"], errors="coerce")
                                 - pd.to_numeric(pairs["prediction_champion"], errors="coerce")).abs()
            pairs["agree"] = pairs["abs_diff"] <= tolerance
        agreement = float(pairs["agree"].mean())
        mean_diff = float(pairs["abs_diff"].mean()) if pairs["abs_diff"].notna().any() else None
        slices = _slices(pairs, spec, 1 - agreement)
    if not spec.gates.slice_features:
        notes.append("the spec names no gates.slice_features, so disagreement is not broken down by slice")

    champion_lat, challenger_lat = _request_latencies(served), _request_latencies(shadow)
    before_lat = np.empty(0)
    if before is not None and len(before):
        before_rows = before[before["served"].astype(bool) & (before["arm"] == CHAMPION)
                             & (before["version"] == run.champion_version)]
        before_lat = _request_latencies(before_rows)
    latency = LatencyCost(
        Percentiles.of(champion_lat), Percentiles.of(challenger_lat), _ratio(challenger_lat, champion_lat),
        Percentiles.of(before_lat), _ratio(champion_lat, before_lat),
    )
    return ShadowReport(
        model=run.model, experiment_id=run.experiment_id, champion_version=run.champion_version,
        challenger_version=run.challenger_version, window=window, copy_percent=run.plan.challenger_percent,
        served_requests=int(served["request_id"].nunique()), shadow_requests=int(shadow["request_id"].nunique()),
        shadow_errors=int(shadow.loc[shadow["status"] == "error", "request_id"].nunique()), pairs=len(pairs),
        agreement_rate=agreement, score_agreement_rate=score_agreement, mean_abs_score_diff=mean_diff,
        tolerance=tolerance, classification=classification, slices=slices, latency=latency,
        labelled=_labelled(pairs, labels, classification) if len(pairs) and labels is not None else None,
        notes=tuple(notes),
    )


def baseline_window(run: ExperimentRun, window: ExperimentWindow) -> tuple[datetime, datetime]:
    """An equally long window ending where the experiment started: the champion's latency before it."""
    return run.started - window.duration, run.started


