"""What a drift check measured: per-column drift and the typed ``DriftResult`` both engines return.

The method names are Evidently's display names; ``beyond`` mirrors Evidently's comparison of a
score with its threshold, so the profile engine, the Evidently parser and the policy flag exactly
the same columns.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # pragma: no cover
    from evidently.core.report import Snapshot

    from steward.monitoring.drift.policy import MaterialDriftDecision

ColumnKind = Literal["numeric", "categorical"]

# Evidently's method display names (ValueDrift.config["method"] after auto-resolution) for the
# tests whose score is a p-value: smaller means more drift.  Every other method is a distance.
_P_VALUE_METHODS = frozenset(
    {
        "K-S p_value",
        "chi-square p_value",
        "Z-test p_value",
        "Anderson-Darling",
        "Cramer-von Mises",
        "Epps-Singleton",
        "Fisher's Exact test",
        "g_test",
        "Mann-Whitney U-rank test",
        "empirical_mmd",
        "t_test",
        "Total-Variation-Distance",
    }
)
# Evidently compares with <= for these p-values (< for the others) and > for these distances (>=
# for the others); mirrored so both engines flag exactly the same columns.
_P_VALUE_INCLUSIVE = frozenset({"K-S p_value", "Cramer-von Mises"})
_DISTANCE_STRICT = frozenset({"Energy-distance"})

WASSERSTEIN = "Wasserstein distance (normed)"
JENSEN_SHANNON = "Jensen-Shannon distance"
KS = "K-S p_value"
CHI_SQUARE = "chi-square p_value"
Z_TEST = "Z-test p_value"


class DriftReportFormatError(RuntimeError):
    """Evidently's output did not have the structure this module parses (likely a version change)."""


def is_p_value(method: str) -> bool:
    """Whether a smaller score means more drift for this Evidently method."""
    return method in _P_VALUE_METHODS


def beyond(method: str, score: float, level: float) -> bool:
    """Evidently's drift comparison of ``score`` against ``level`` for ``method``; NaN never drifts."""
    if math.isnan(score):
        return False
    if is_p_value(method):
        return score <= level if method in _P_VALUE_INCLUSIVE else score < level
    return score > level if method in _DISTANCE_STRICT else score >= level


@dataclass(frozen=True)
class ColumnDrift:
    """Drift of one column: Evidently's method, score and threshold, and its verdict."""

    column: str
    kind: ColumnKind
    method: str
    score: float
    threshold: float
    drifted: bool
    importance: float | None = None
    reference_missing_share: float | None = None
    current_missing_share: float | None = None
    # A distance past its threshold on a small window: how often sampling noise alone reaches it (Monte Carlo);
    # None when not measured (within the threshold, a p-valued test, a large window, Evidently's engine).
    noise_p_value: float | None = None

    @property
    def p_value(self) -> bool:
        """Whether ``score`` is a p-value (smaller = more drift) rather than a distance."""
        return is_p_value(self.method)

    @property
    def severity(self) -> float:
        """How far past the threshold the score is, as a ratio (>= 1 means drifted), for ranking."""
        if self.p_value:
            return self.threshold / max(self.score, 1e-300)
        return self.score / self.threshold if self.threshold > 0 else math.inf


@dataclass(frozen=True)
class DriftResult:
    """One drift check, parsed once into plain types; ``snapshot`` keeps the Evidently report."""

    columns: tuple[ColumnDrift, ...]
    prediction: ColumnDrift | None
    drift_share: float
    dataset_drift: bool
    reference_rows: int
    current_rows: int
    engine: Literal["evidently", "profile"]
    dataset_drift_share: float = 0.5
    report_reference_rows: int | None = None
    report_current_rows: int | None = None
    sample_seed: int | None = None
    report_drifted_columns: tuple[str, ...] | None = None
    seconds: float | None = None
    report_seconds: float | None = None
    held_drifted: tuple[str, ...] | None = None
    report_error: str | None = None
    seasonal_matched: tuple[str, ...] | None = None  # columns scored against one season back, not the training data
    snapshot: Snapshot | None = field(default=None, compare=False, repr=False)

    @property
    def drifted_columns(self) -> tuple[str, ...]:
        """Input columns flagged as drifted by the engine (before any policy)."""
        return tuple(c.column for c in self.columns if c.drifted)

    def column(self, name: str) -> ColumnDrift:
        for c in self.columns:
            if c.column == name:
                return c
        if self.prediction is not None and self.prediction.column == name:
            return self.prediction
        raise KeyError(f"no drift result for column {name!r}; have {[c.column for c in self.columns]}")

    def top_drifted(self, k: int, importances: Mapping[str, float] | None = None) -> tuple[ColumnDrift, ...]:
        """The ``k`` drifted input columns that matter most: by importance, then by severity."""
        weights = dict(importances) if importances is not None else {}

        def key(c: ColumnDrift) -> tuple[float, float]:
            w = weights.get(c.column, c.importance)
            return (-abs(w) if w is not None else math.inf, -c.severity)

        return tuple(sorted((c for c in self.columns if c.drifted), key=key)[:k])

    def with_decision(self, decision: MaterialDriftDecision) -> DriftResult:
        """Copy carrying the policy's drifted state, so the next decision's hysteresis can use it."""
        return dataclasses.replace(self, held_drifted=decision.columns)

    def to_markdown_table(self) -> str:
        """A table a person can read in a run log or a model-version description."""
        sample = ""
        if self.engine == "profile":
            sample = (
                f"; Evidently report on a seeded sample of {self.report_current_rows} current and "
                f"{self.report_reference_rows} reference rows"
                if self.report_current_rows and not self.report_error
                else "; no Evidently report"
                + (f" (it failed: {self.report_error})" if self.report_error else "")
            )
        lines = [
            f"Drift ({self.engine} engine, {self.current_rows} current vs {self.reference_rows} reference rows{sample}): "
            f"{len(self.drifted_columns)} of {len(self.columns)} columns drifted ({self.drift_share:.0%}); "
            f"dataset drift {'yes' if self.dataset_drift else 'no'} (share >= {self.dataset_drift_share:.0%}).",
            "",
            "| column | kind | method | score | threshold | drifted | importance | missing ref -> cur |",
            "|---|---|---|---:|---:|---|---:|---|",
        ]
        rows = list(self.columns) + ([self.prediction] if self.prediction is not None else [])
        for c in rows:
            name = f"{c.column} (prediction)" if c is self.prediction else c.column
            if c.column in (self.seasonal_matched or ()):
                name += " (vs one season back)"
            imp = "" if c.importance is None else f"{c.importance:.3g}"
            miss = (
                ""
                if c.reference_missing_share is None or c.current_missing_share is None
                else f"{c.reference_missing_share:.1%} -> {c.current_missing_share:.1%}"
            )
            lines.append(
                f"| {name} | {c.kind} | {c.method} | {c.score:.4g} | {c.threshold:.3g} | "
                f"{'**yes**' if c.drifted else 'no'} | {imp} | {miss} |"
            )
        return "\n".join(lines)

    def save_html(self, path: str | Path) -> Path:
        return save_report_html(self, path)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (without the Evidently snapshot), e.g. to keep as the next run's ``previous``."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "snapshot"}
        out["columns"] = [dataclasses.asdict(c) for c in self.columns]
        out["prediction"] = None if self.prediction is None else dataclasses.asdict(self.prediction)
        for key in ("report_drifted_columns", "held_drifted", "seasonal_matched"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        data = dict(data)
        data["columns"] = tuple(ColumnDrift(**c) for c in data["columns"])
        data["prediction"] = None if data.get("prediction") is None else ColumnDrift(**data["prediction"])
        for key in ("report_drifted_columns", "held_drifted", "seasonal_matched"):
            if data.get(key) is not None:
                data[key] = tuple(data[key])
        return cls(**data)


def save_report_html(result: DriftResult | Snapshot, path: str | Path) -> Path:
    """Write the Evidently HTML report (e.g. to attach to an MLflow model version); returns the path.

    Evidently 0.7.23's ``Snapshot.save_html`` silently writes nothing when given a ``Path``, so the
    path is passed as ``str`` and the file is checked afterwards.
    """
    snapshot = result.snapshot if isinstance(result, DriftResult) else result
    if snapshot is None:
        why = (
            f" (the report failed: {result.report_error})"
            if isinstance(result, DriftResult) and result.report_error
            else ""
        )
        raise ValueError(
            f"this DriftResult has no Evidently report attached{why}: run detect_drift(..., report=True); "
            "results loaded with DriftResult.from_dict never carry one"
        )
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    snapshot.save_html(str(target))
    if not target.is_file():
        raise RuntimeError(f"Evidently did not write {target}")
    return target
