"""Data drift: an Evidently adapter, a fast profile engine for large windows, and the material-drift policy.

This is the only Steward module that imports Evidently (lazily: the import takes seconds).  Two
engines give the same typed ``DriftResult``:

- ``evidently``: Evidently 0.7's ``DataDriftPreset`` on the full reference and current frames.
  Exact, but its cost grows with rows and columns (minutes for a 1M-row window).
- ``profile``: a ``ReferenceProfile`` built once per model version (per-column sorted values or
  a quantile sketch, category counts, and a bounded reference sample) and the same statistic
  Evidently would pick for each column, computed with numpy on the full current window.  The
  Evidently HTML report is still produced, on a bounded seeded sample of the current window.

``decide_material_drift`` turns a result into a yes/no with a reason, under a ``DriftPolicy``
(share / importance-weighted share / top-k, with hysteresis so a column near its threshold does
not flap).  It is pure: no data, no Evidently.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import time
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

if TYPE_CHECKING:  # pragma: no cover
    from evidently.core.report import Snapshot

__all__ = [
    "CategoricalProfile",
    "ColumnDrift",
    "DriftPolicy",
    "DriftReportFormatError",
    "DriftResult",
    "MaterialDriftDecision",
    "NumericProfile",
    "ReferenceProfile",
    "attach_report",
    "decide_material_drift",
    "detect_drift",
    "parse_snapshot",
    "save_report_html",
]

_log = logging.getLogger(__name__)

ColumnKind = Literal["numeric", "categorical"]
Engine = Literal["auto", "evidently", "profile"]

SUPPORTED_EVIDENTLY = "0.7.23"
PROFILE_FORMAT = "steward.drift.reference_profile/1"
_PARQUET_KEY = b"steward.reference_profile"

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
_REGISTRY_NAME = {
    WASSERSTEIN: "wasserstein",
    JENSEN_SHANNON: "jensenshannon",
    KS: "ks",
    CHI_SQUARE: "chisquare",
    Z_TEST: "z",
}
_DISPLAY_NAME = {v: k for k, v in _REGISTRY_NAME.items()}
_DEFAULT_THRESHOLD = {WASSERSTEIN: 0.1, JENSEN_SHANNON: 0.1, KS: 0.05, CHI_SQUARE: 0.05, Z_TEST: 0.05}
# Rows of each side behind the sampled Evidently report.  Its cost is mostly per-column plotting
# (about 4 s at 50 columns for 5k rows, 8 s for 10k), so it is kept small; the verdict uses all rows.
REPORT_SAMPLE_ROWS = 5_000
_SMALL_REFERENCE_ROWS = 1000  # Evidently: <= 1000 reference rows -> p-value tests, else distances
_FEW_VALUES = 5  # Evidently: <= 5 distinct values -> discrete test even for a numeric column

_VALUE_DRIFT_TYPE = "evidently:metric_v2:ValueDrift"
_DRIFTED_COUNT_TYPE = "evidently:metric_v2:DriftedColumnsCount"


class DriftReportFormatError(RuntimeError):
    """Evidently's output did not have the structure this module parses (likely a version change)."""


def is_p_value(method: str) -> bool:
    """Whether a smaller score means more drift for this Evidently method."""
    return method in _P_VALUE_METHODS


def _beyond(method: str, score: float, level: float) -> bool:
    """Evidently's drift comparison of ``score`` against ``level`` for ``method``; NaN never drifts."""
    if math.isnan(score):
        return False
    if is_p_value(method):
        return score <= level if method in _P_VALUE_INCLUSIVE else score < level
    return score > level if method in _DISTANCE_STRICT else score >= level


# --------------------------------------------------------------------------------------------
# Results


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
        for key in ("report_drifted_columns", "held_drifted"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DriftResult:
        data = dict(data)
        data["columns"] = tuple(ColumnDrift(**c) for c in data["columns"])
        data["prediction"] = None if data.get("prediction") is None else ColumnDrift(**data["prediction"])
        for key in ("report_drifted_columns", "held_drifted"):
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


# --------------------------------------------------------------------------------------------
# Input checks


def _column_lists(
    numeric: Sequence[str], categorical: Sequence[str], prediction_column: str | None
) -> tuple[list[str], list[str]]:
    if isinstance(numeric, str) or isinstance(categorical, str):
        raise ValueError("numeric= and categorical= take lists of column names, not a single string")
    numeric, categorical = list(numeric), list(categorical)
    if not numeric and not categorical:
        raise ValueError("name the input columns to check: pass numeric=[...] and/or categorical=[...]")
    both = sorted(set(numeric) & set(categorical))
    if both:
        raise ValueError(f"columns {both} are listed as both numeric and categorical; declare each once")
    dups = sorted({c for c in numeric + categorical if (numeric + categorical).count(c) > 1})
    if dups:
        raise ValueError(f"columns {dups} are listed more than once")
    if prediction_column is not None and prediction_column in set(numeric) | set(categorical):
        raise ValueError(
            f"prediction column {prediction_column!r} is also listed as an input feature; "
            "pass it only as prediction_column"
        )
    return numeric, categorical


def _check_frame(
    frame: pd.DataFrame, what: str, numeric: list[str], categorical: list[str], extra: list[str]
) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    if len(frame) == 0:
        advice = (
            "skip the drift check for this window or widen it until it holds data"
            if what == "current"
            else "pass the model version's training data (or its saved reference sample)"
        )
        raise ValueError(f"the {what} window has 0 rows, so there is nothing to compare; {advice}")
    missing = [c for c in [*numeric, *categorical, *extra] if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} lacks columns {missing}; add them to the data or leave them out of "
            "numeric=/categorical=/prediction_column="
        )
    for c in numeric:
        dtype = frame[c].dtype
        if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
            raise ValueError(
                f"column {c!r} is declared numeric but has dtype {dtype} in {what}; convert it to "
                "numbers or declare it categorical"
            )


def _prediction_kind(frame: pd.DataFrame, column: str | None, kind: ColumnKind | None) -> ColumnKind | None:
    """A float score is numeric; a class label (int, str, bool) is categorical, unless told."""
    if column is None:
        return None
    if kind is None:
        return "numeric" if pd.api.types.is_float_dtype(frame[column].dtype) else "categorical"
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"prediction_kind must be 'numeric' or 'categorical', got {kind!r}")
    if kind == "numeric":
        _check_frame(frame, "the data", [column], [], [])
    return kind


def _no_values_error(column: str, what: str) -> ValueError:
    return ValueError(
        f"column {column!r} has no non-missing values in the {what} window, so its drift cannot be "
        "measured; fix the upstream feed, or leave the column out of numeric=/categorical= for now"
    )


# --------------------------------------------------------------------------------------------
# Reference profile


def _b64(array: np.ndarray, dtype: str) -> str:
    """Exact, compact text for an array (zlib then base64): counts compress to almost nothing."""
    raw = np.ascontiguousarray(array, dtype=dtype).tobytes()
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _unb64(text: str, dtype: str) -> np.ndarray:
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), dtype=dtype).copy()


def _float_values(series: pd.Series) -> np.ndarray:
    """The column as float64 with NaN for missing: a view for plain float columns, else a copy."""
    if series.dtype == np.float64:
        return series.to_numpy()
    return series.to_numpy(dtype=np.float64, na_value=np.nan)


def _finite_values(values: np.ndarray) -> np.ndarray:
    """Finite values as float64 (Evidently drops NaN and +-inf before testing)."""
    x = np.asarray(values, dtype=np.float64)
    return x[np.isfinite(x)]


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """A numeric column's reference distribution: atoms ``values`` with integer weights ``counts``.

    Exact (every distinct value with its count) when the column has at most ``max_points`` distinct
    values; otherwise a quantile sketch of equal-mass blocks, each represented by its median, and
    ``sketch_error`` is the normed Wasserstein distance between the full column and the sketch: by
    the triangle inequality, the most the profile engine's score can be off by for this column.
    """

    rows: int
    missing: int
    std: float
    values: np.ndarray
    counts: np.ndarray
    exact: bool
    sketch_error: float

    @classmethod
    def build(cls, values: np.ndarray, max_points: int, name: str = "?") -> NumericProfile:
        x = np.asarray(values, dtype=np.float64)
        finite = _finite_values(x)
        finite.sort()
        n = finite.size
        if n == 0:
            raise _no_values_error(name, "reference")
        std = float(np.std(finite))
        change = np.flatnonzero(finite[1:] != finite[:-1]) + 1
        if change.size + 1 <= max_points:
            starts = np.concatenate(([0], change))
            counts = np.diff(np.append(starts, n))
            return cls(n, x.size - n, std, finite[starts], counts.astype(np.int64), True, 0.0)
        bounds = (np.arange(max_points + 1, dtype=np.int64) * n) // max_points
        counts = np.diff(bounds)
        knots = finite[(bounds[:-1] + bounds[1:] - 1) // 2]
        error = float(np.abs(finite - np.repeat(knots, counts)).mean()) / max(std, 0.001)
        return cls(n, x.size - n, std, knots, counts.astype(np.int64), False, error)

    @property
    def distinct(self) -> int | None:
        return int(self.values.size) if self.exact else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing": self.missing,
            "std": self.std,
            "exact": self.exact,
            "sketch_error": self.sketch_error,
            "values": _b64(self.values, "<f8"),
            "counts": _b64(self.counts, "<i8"),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NumericProfile:
        return cls(
            int(d["rows"]),
            int(d["missing"]),
            float(d["std"]),
            _unb64(d["values"], "<f8"),
            _unb64(d["counts"], "<i8"),
            bool(d["exact"]),
            float(d["sketch_error"]),
        )


@dataclass(frozen=True)
class CategoricalProfile:
    """A categorical column's reference category counts (missing values excluded, as in Evidently)."""

    rows: int
    missing: int
    counts: Mapping[Any, int]

    @classmethod
    def build(cls, values: pd.Series) -> CategoricalProfile:
        vc = values.value_counts(dropna=True, sort=False)
        n = int(vc.sum())
        if n == 0:
            raise _no_values_error(str(values.name), "reference")
        return cls(n, len(values) - n, {_plain(k): int(v) for k, v in vc.items() if v > 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing": self.missing,
            "counts": [[k, v] for k, v in self.counts.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        return cls(int(d["rows"]), int(d["missing"]), {_plain(k): int(v) for k, v in d["counts"]})


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so categories survive JSON and compare equal after loading."""
    return value.item() if isinstance(value, np.generic) else value


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """What the drift check needs from the reference data, computed once per model version.

    Holds per-column distributions (see ``NumericProfile`` / ``CategoricalProfile``) for the input
    columns and the prediction column, plus a bounded seeded sample of reference rows for the
    Evidently HTML report.  Save it next to the model version with ``to_parquet`` (one file: the
    sample as the table, the statistics in the file metadata) or ``to_json``.
    """

    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    prediction_column: str | None
    prediction_kind: ColumnKind | None
    rows: int
    columns: Mapping[str, NumericProfile | CategoricalProfile]
    sample: pd.DataFrame = field(compare=False, repr=False)
    sample_seed: int = 0
    max_points: int = 10_000

    @classmethod
    def build(
        cls,
        reference: pd.DataFrame,
        *,
        numeric: Sequence[str],
        categorical: Sequence[str],
        prediction_column: str | None = None,
        prediction_kind: ColumnKind | None = None,
        max_points: int = 10_000,
        sample_rows: int = REPORT_SAMPLE_ROWS,
        seed: int = 0,
    ) -> ReferenceProfile:
        """Profile ``reference``; ``max_points`` bounds each numeric column's stored atoms."""
        numeric, categorical = _column_lists(numeric, categorical, prediction_column)
        extra = [prediction_column] if prediction_column is not None else []
        _check_frame(reference, "reference", numeric, categorical, extra)
        if max_points < _SMALL_REFERENCE_ROWS:
            raise ValueError(
                f"max_points must be >= {_SMALL_REFERENCE_ROWS} so small references are kept exactly"
            )
        pkind = _prediction_kind(reference, prediction_column, prediction_kind)
        columns: dict[str, NumericProfile | CategoricalProfile] = {}
        for name, kind in [*((c, "numeric") for c in numeric), *((c, "categorical") for c in categorical)] + (
            [(prediction_column, pkind)] if prediction_column is not None else []
        ):
            if kind == "numeric":
                columns[name] = NumericProfile.build(_float_values(reference[name]), max_points, name)
            else:
                columns[name] = CategoricalProfile.build(reference[name])
        sample = _sample_rows(reference, [*numeric, *categorical, *extra], sample_rows, seed)
        return cls(
            tuple(numeric),
            tuple(categorical),
            prediction_column,
            pkind,
            len(reference),
            columns,
            sample,
            seed,
            max_points,
        )

    def kind(self, column: str) -> ColumnKind:
        if column == self.prediction_column:
            assert self.prediction_kind is not None
            return self.prediction_kind
        return "numeric" if isinstance(self.columns[column], NumericProfile) else "categorical"

    def stats_dict(self) -> dict[str, Any]:
        return {
            "format": PROFILE_FORMAT,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "prediction_column": self.prediction_column,
            "prediction_kind": self.prediction_kind,
            "rows": self.rows,
            "sample_seed": self.sample_seed,
            "max_points": self.max_points,
            "columns": {name: {"kind": self.kind(name), **p.to_dict()} for name, p in self.columns.items()},
        }

    @classmethod
    def _from_stats(cls, stats: Mapping[str, Any], sample: pd.DataFrame) -> ReferenceProfile:
        if stats.get("format") != PROFILE_FORMAT:
            raise ValueError(
                f"not a Steward reference profile of format {PROFILE_FORMAT!r} (got {stats.get('format')!r}); "
                "rebuild it with ReferenceProfile.build"
            )
        columns: dict[str, NumericProfile | CategoricalProfile] = {}
        for name, d in stats["columns"].items():
            columns[name] = (
                NumericProfile.from_dict(d) if d["kind"] == "numeric" else CategoricalProfile.from_dict(d)
            )
        return cls(
            tuple(stats["numeric"]),
            tuple(stats["categorical"]),
            stats["prediction_column"],
            stats["prediction_kind"],
            int(stats["rows"]),
            columns,
            sample,
            int(stats["sample_seed"]),
            int(stats["max_points"]),
        )

    def to_json(self, path: str | Path) -> Path:
        """Statistics and the reference sample in one JSON file (arrays base64-encoded, exact)."""
        target = Path(path)
        payload = self.stats_dict()
        payload["sample"] = json.loads(self.sample.to_json(orient="split", index=False, double_precision=15))
        payload["sample_dtypes"] = {c: str(t) for c, t in self.sample.dtypes.items()}
        target.write_text(json.dumps(payload))
        return target

    @classmethod
    def from_json(cls, path: str | Path) -> ReferenceProfile:
        payload = json.loads(Path(path).read_text())
        split = payload["sample"]
        sample = pd.DataFrame(split["data"], columns=split["columns"])
        for c, t in payload.get("sample_dtypes", {}).items():
            if t.startswith(("float", "int")):
                sample[c] = sample[c].astype("float64" if sample[c].isna().any() else t)
        return cls._from_stats(payload, sample)

    def to_parquet(self, path: str | Path) -> Path:
        """The reference sample as a Parquet table with the statistics in the file metadata."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        target = Path(path)
        table = pa.Table.from_pandas(self.sample, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_PARQUET_KEY] = json.dumps(self.stats_dict()).encode()
        pq.write_table(table.replace_schema_metadata(meta), target)
        return target

    @classmethod
    def from_parquet(cls, path: str | Path) -> ReferenceProfile:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        if _PARQUET_KEY not in meta:
            raise ValueError(
                f"{path} has no Steward reference profile in its metadata; rebuild it with ReferenceProfile.build"
            )
        return cls._from_stats(json.loads(meta[_PARQUET_KEY]), table.to_pandas())


def _sample_rows(frame: pd.DataFrame, columns: list[str], rows: int, seed: int) -> pd.DataFrame:
    """A seeded uniform sample of at most ``rows`` rows of ``columns``, in original order.

    Built column by column from the sampled positions, so a 1M-row frame is never copied whole.
    """
    if len(frame) <= rows:
        return frame[columns].reset_index(drop=True)
    index = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
    return pd.DataFrame({c: frame[c].iloc[index].reset_index(drop=True) for c in columns})


# --------------------------------------------------------------------------------------------
# Profile engine: Evidently's default statistics computed on the full current window


def _wasserstein_normed(current_sorted: np.ndarray, profile: NumericProfile) -> float:
    """Exact W1 between the current values and the profile's weighted atoms, divided by std.

    W1 is the integral of |Q_cur(u) - Q_ref(u)| over probability mass u.  On an integer grid of
    n*m units (n reference, m current rows) current atom i covers (i*n, (i+1)*n] and reference
    atom j ends at cumsum(counts)[j]*m.  Each current atom is first charged against the
    reference atom its interval starts in; then each reference breakpoint falling strictly
    inside a current atom corrects the rest of that atom (the corrections telescope, so several
    breakpoints inside one atom are handled too).  O(m + K) with no merge sort; equals scipy's
    ``wasserstein_distance`` (Evidently's statistic) when the profile is exact.
    """
    m = current_sorted.size
    n = int(profile.rows)
    values, counts = profile.values, profile.counts
    ref_bp = np.cumsum(counts, dtype=np.int64) * m
    per_block = np.diff(-(-ref_bp // n), prepend=0)  # current atoms starting inside each reference atom
    diff = values[np.repeat(np.arange(values.size), per_block)]
    np.subtract(current_sorted, diff, out=diff)
    np.abs(diff, out=diff)
    total = float(diff.sum()) * n
    del diff
    inner = np.flatnonzero(ref_bp[:-1] % n != 0)
    if inner.size:
        r = ref_bp[inner]
        i = r // n
        x = current_sorted[i]
        rest = ((i + 1) * n - r).astype(np.float64)
        total += float(np.dot(rest, np.abs(x - values[inner + 1]) - np.abs(x - values[inner])))
    return total / (float(n) * float(m)) / max(profile.std, 0.001)


def _jensen_shannon(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    from scipy.spatial import distance

    return float(distance.jensenshannon(ref_counts / ref_counts.sum(), cur_counts / cur_counts.sum()))


def _chi_square(ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    from scipy.stats import chisquare

    f_exp = ref_counts * (cur_counts.sum() / ref_counts.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(chisquare(cur_counts, f_exp)[1])


def _z_test(keys: list[Any], ref_counts: np.ndarray, cur_counts: np.ndarray) -> float:
    """Evidently's two-proportion z-test on 'is the first (sorted) category'."""
    from scipy.stats import norm

    if len(keys) == 1:
        return 1.0
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    first = order[0]
    n1, n2 = ref_counts.sum(), cur_counts.sum()
    p1 = (n1 - ref_counts[first]) / n1
    p2 = (n2 - cur_counts[first]) / n2
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (p1 - p2) / np.sqrt(pooled * (1 - pooled) * (1.0 / n1 + 1.0 / n2))
    return float(2 * (1 - norm.cdf(np.abs(z))))


def _discrete_test(
    keys: list[Any], ref_counts: np.ndarray, cur_counts: np.ndarray, small_reference: bool
) -> tuple[str, float]:
    """Evidently's choice for a discrete column: JS distance, or chi-square / z on small references."""
    if not small_reference:
        return JENSEN_SHANNON, _jensen_shannon(ref_counts, cur_counts)
    if len(keys) > 2:
        return CHI_SQUARE, _chi_square(ref_counts, cur_counts)
    return Z_TEST, _z_test(keys, ref_counts, cur_counts)


def _profile_numeric(
    name: str, values: np.ndarray, profile: NumericProfile, threshold: float | None
) -> tuple[str, float, float, float]:
    """(method, score, threshold, current missing share) for one numeric column."""
    raw = np.asarray(values)
    total = raw.size
    current = raw[np.isfinite(raw)].astype(np.float64, copy=False)  # a fresh array: safe to sort in place
    if current.size == 0:
        raise _no_values_error(name, "current")
    current.sort()
    small = profile.rows <= _SMALL_REFERENCE_ROWS
    few = profile.exact and profile.values.size <= _FEW_VALUES
    if few:
        cur_keys, cur_counts = np.unique(current, return_counts=True)
        keys = np.union1d(profile.values, cur_keys)
        few = keys.size <= _FEW_VALUES
    if few:
        ref_c = np.zeros(keys.size)
        ref_c[np.searchsorted(keys, profile.values)] = profile.counts
        cur_c = np.zeros(keys.size)
        cur_c[np.searchsorted(keys, cur_keys)] = cur_counts
        method, score = _discrete_test(keys.tolist(), ref_c, cur_c, small)
    elif small:
        from scipy.stats import ks_2samp

        method, score = KS, float(ks_2samp(np.repeat(profile.values, profile.counts), current)[1])
    else:
        method, score = WASSERSTEIN, _wasserstein_normed(current, profile)
    thr = _DEFAULT_THRESHOLD[method] if threshold is None else threshold
    return method, score, thr, (total - current.size) / total


def _profile_categorical(
    name: str, values: pd.Series, profile: CategoricalProfile, threshold: float | None
) -> tuple[str, float, float, float]:
    vc = values.value_counts(dropna=True, sort=False)
    n_cur = int(vc.sum())
    if n_cur == 0:
        raise _no_values_error(name, "current")
    cur = {_plain(k): int(v) for k, v in vc.items() if v > 0}
    keys = list(profile.counts) + [k for k in cur if k not in profile.counts]
    ref_c = np.array([profile.counts.get(k, 0) for k in keys], dtype=np.float64)
    cur_c = np.array([cur.get(k, 0) for k in keys], dtype=np.float64)
    method, score = _discrete_test(keys, ref_c, cur_c, profile.rows <= _SMALL_REFERENCE_ROWS)
    thr = _DEFAULT_THRESHOLD[method] if threshold is None else threshold
    return method, score, thr, (len(values) - n_cur) / len(values)


def _profile_column(
    name: str,
    kind: ColumnKind,
    current: pd.DataFrame,
    profile: ReferenceProfile,
    threshold: float | None,
    importance: float | None,
) -> ColumnDrift:
    p = profile.columns[name]
    if kind == "numeric":
        assert isinstance(p, NumericProfile)
        method, score, thr, miss = _profile_numeric(name, _float_values(current[name]), p, threshold)
    else:
        assert isinstance(p, CategoricalProfile)
        method, score, thr, miss = _profile_categorical(name, current[name], p, threshold)
    return ColumnDrift(
        column=name,
        kind=kind,
        method=method,
        score=score,
        threshold=thr,
        drifted=_beyond(method, score, thr),
        importance=importance,
        reference_missing_share=p.missing / (p.rows + p.missing),
        current_missing_share=miss,
    )


# --------------------------------------------------------------------------------------------
# Evidently adapter


def _evidently_report(
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
            drifted = "FAIL" in verdicts if verdicts else _beyond(method, float(value), float(threshold))
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
        return float((~np.isfinite(_float_values(series))).mean())
    return float(series.isna().mean())


def _run_evidently_engine(
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
                not np.isfinite(_float_values(col)).any()
                if name in numeric or (name == prediction_column and prediction_kind == "numeric")
                else not col.notna().any()
            )
            if empty:
                raise _no_values_error(name, what)
    start = time.perf_counter()
    snapshot = _evidently_report(
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


# --------------------------------------------------------------------------------------------
# Entry point


def detect_drift(
    reference: pd.DataFrame | ReferenceProfile,
    current: pd.DataFrame,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    prediction_column: str | None = None,
    prediction_kind: ColumnKind | None = None,
    importances: Mapping[str, float] | None = None,
    policy: DriftPolicy | None = None,
    engine: Engine = "auto",
    full_max_rows: int = 100_000,
    sample_rows: int = REPORT_SAMPLE_ROWS,
    report: bool = True,
    drift_share: float = 0.5,
    seed: int = 0,
) -> DriftResult:
    """Compare ``current`` with the reference and return a typed ``DriftResult``.

    ``engine="auto"`` runs Evidently on the full data when reference + current hold at most
    ``full_max_rows`` rows (and the reference is a frame), else the profile engine: Evidently's
    default per-column statistic on the full current window against the ``ReferenceProfile``,
    plus (``report=True``) an Evidently report on a seeded sample of ``sample_rows`` current rows
    against the profile's reference sample.  ``policy.stattest_threshold`` overrides every
    column's threshold, as Evidently's ``threshold=`` does; ``drift_share`` is Evidently's
    dataset-level rule (dataset drift when at least that share of columns drifted).
    """
    if engine not in ("auto", "evidently", "profile"):
        raise ValueError(f"engine must be 'auto', 'evidently' or 'profile', got {engine!r}")
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    if sample_rows < 1:
        raise ValueError(f"sample_rows must be >= 1, got {sample_rows}")
    numeric, categorical = _column_lists(numeric, categorical, prediction_column)
    extra = [prediction_column] if prediction_column is not None else []
    _check_frame(current, "current", numeric, categorical, extra)
    threshold = policy.stattest_threshold if policy is not None else None
    weights = dict(importances or {})

    if isinstance(reference, ReferenceProfile):
        profile: ReferenceProfile | None = reference
        absent = [c for c in [*numeric, *categorical, *extra] if c not in reference.columns]
        if absent:
            raise ValueError(
                f"the reference profile has no statistics for {absent}; rebuild it with "
                "ReferenceProfile.build(...) including those columns"
            )
        for c in numeric:
            if reference.kind(c) != "numeric":
                raise ValueError(
                    f"column {c!r} is categorical in the reference profile but passed as numeric"
                )
        for c in categorical:
            if reference.kind(c) != "categorical":
                raise ValueError(
                    f"column {c!r} is numeric in the reference profile but passed as categorical"
                )
        if prediction_column is not None:
            if reference.prediction_column != prediction_column:
                raise ValueError(
                    f"the reference profile was built for prediction column {reference.prediction_column!r}, "
                    f"not {prediction_column!r}; rebuild it with prediction_column={prediction_column!r}"
                )
            pkind = reference.prediction_kind
            if prediction_kind is not None and prediction_kind != pkind:
                raise ValueError(
                    f"the reference profile treats {prediction_column!r} as {pkind}, not {prediction_kind}; "
                    "rebuild it with the prediction_kind you want"
                )
        else:
            pkind = None
        ref_rows = reference.rows
    else:
        _check_frame(reference, "reference", numeric, categorical, extra)
        profile = None
        pkind = _prediction_kind(reference, prediction_column, prediction_kind)
        ref_rows = len(reference)

    if prediction_column is not None and pkind == "numeric":
        _check_frame(current, "current", [prediction_column], [], [])

    if engine == "auto":
        small = profile is None and ref_rows + len(current) <= full_max_rows
        engine = "evidently" if small else "profile"

    if engine == "evidently":
        ref_frame = reference.sample if isinstance(reference, ReferenceProfile) else reference
        result = _run_evidently_engine(
            ref_frame,
            current,
            numeric,
            categorical,
            prediction_column,
            pkind,
            threshold,
            drift_share,
            weights,
        )
        if isinstance(reference, ReferenceProfile):
            result = dataclasses.replace(result, sample_seed=reference.sample_seed)
        return result

    start = time.perf_counter()
    if profile is None:
        assert isinstance(reference, pd.DataFrame)
        profile = ReferenceProfile.build(
            reference,
            numeric=numeric,
            categorical=categorical,
            prediction_column=prediction_column,
            prediction_kind=pkind,
            sample_rows=sample_rows,
            seed=seed,
        )
    columns = tuple(
        _profile_column(c, "numeric", current, profile, threshold, weights.get(c)) for c in numeric
    ) + tuple(
        _profile_column(c, "categorical", current, profile, threshold, weights.get(c)) for c in categorical
    )
    prediction = (
        _profile_column(prediction_column, pkind, current, profile, threshold, None)
        if prediction_column is not None and pkind is not None
        else None
    )
    n_drifted = sum(c.drifted for c in columns)
    share = n_drifted / len(columns)
    seconds = time.perf_counter() - start

    result = DriftResult(
        columns=columns,
        prediction=prediction,
        drift_share=share,
        dataset_drift=share >= drift_share,
        reference_rows=profile.rows,
        current_rows=len(current),
        engine="profile",
        dataset_drift_share=drift_share,
        seconds=seconds,
    )
    if report:
        result = attach_report(result, profile, current, sample_rows=sample_rows, seed=seed)
    return result


def attach_report(
    result: DriftResult,
    profile: ReferenceProfile,
    current: pd.DataFrame,
    *,
    sample_rows: int = REPORT_SAMPLE_ROWS,
    seed: int = 0,
) -> DriftResult:
    """Add the Evidently report, on a seeded sample of ``current``, to a profile-engine result.

    ``detect_drift(..., report=True)`` calls this; call it yourself after ``report=False`` to give
    the verdict first and render the report later (e.g. in a separate task).  Each column's test
    is pinned to the one the verdict used.  If Evidently fails, the verdict stands and
    ``report_error`` says why.
    """
    if result.engine != "profile":
        raise ValueError(
            "attach_report is for profile-engine results; the evidently engine already has its report"
        )
    numeric = [c.column for c in result.columns if c.kind == "numeric"]
    categorical = [c.column for c in result.columns if c.kind == "categorical"]
    pred = result.prediction
    extra = [pred.column] if pred is not None else []
    t0 = time.perf_counter()
    cur_sample = _sample_rows(current, [*numeric, *categorical, *extra], sample_rows, seed)
    note = (
        f"Evidently ran on seeded samples ({len(cur_sample)} of {len(current)} current rows, seed {seed}; "
        f"{len(profile.sample)} of {profile.rows} reference rows, seed {profile.sample_seed}); the drift "
        "verdict was computed by Steward's profile engine on all rows"
    )
    snapshot = None
    report_drifted = None
    report_error = None
    try:
        snapshot = _evidently_report(
            profile.sample,
            cur_sample,
            numeric,
            categorical,
            pred.column if pred is not None else None,
            pred.kind if pred is not None else None,
            None,
            result.dataset_drift_share,
            metadata={"steward_engine": "profile", "steward_note": note},
            methods={c.column: c.method for c in (*result.columns, *([pred] if pred else []))},
            thresholds={c.column: c.threshold for c in (*result.columns, *([pred] if pred else []))},
        )
        parsed = parse_snapshot(
            snapshot, numeric + categorical, pred.column if pred else None, result.dataset_drift_share
        )
    except DriftReportFormatError:
        raise
    except Exception as exc:  # the verdict stands without its illustration; say why
        snapshot = None
        report_error = f"{type(exc).__name__}: {exc}"
        _log.warning("drift verdict computed, but the sampled Evidently report failed: %s", report_error)
    else:
        report_drifted = tuple(c for c in numeric + categorical if parsed.columns[c][3])
    return dataclasses.replace(
        result,
        report_reference_rows=len(profile.sample),
        report_current_rows=len(cur_sample),
        sample_seed=seed,
        report_drifted_columns=report_drifted,
        report_seconds=time.perf_counter() - t0,
        report_error=report_error,
        snapshot=snapshot,
    )


# --------------------------------------------------------------------------------------------
# Material-drift policy (pure)


class DriftPolicy(BaseModel):
    """When drift is material enough to act on (alert, consider retraining).

    ``share``: at least ``share_threshold`` of the input columns drifted.  ``weighted_share``: the
    drifted columns hold at least ``share_threshold`` of the total feature importance.  ``top_k``:
    one of the ``top_k`` most important columns drifted.  ``hysteresis_margin`` (also accepted as
    ``hysteresis``): a column becomes drifted only beyond threshold*(1+margin) and stays drifted
    until back inside threshold*(1-margin) (mirrored for p-values), so it does not flap.
    ``prediction_drift_is_material``: drift of the predicted score/class alone is material.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    method: Literal["share", "weighted_share", "top_k"] = "share"
    share_threshold: float = Field(default=0.3, gt=0, le=1)
    top_k: int = Field(default=5, ge=1)
    stattest_threshold: float | None = Field(default=None, gt=0)
    hysteresis_margin: float = Field(
        default=0.1, ge=0, lt=1, validation_alias=AliasChoices("hysteresis_margin", "hysteresis")
    )
    prediction_drift_is_material: bool = True


@dataclass(frozen=True)
class MaterialDriftDecision:
    """The policy's verdict: ``columns`` are all columns in the drifted state after hysteresis."""

    material: bool
    reason: str
    columns: tuple[str, ...]
    newly_drifted: tuple[str, ...] = ()
    held: tuple[str, ...] = ()


def _levels(method: str, threshold: float, margin: float) -> tuple[float, float]:
    """(enter, stay) levels: a distance must exceed more to enter; a p-value must fall lower."""
    if is_p_value(method):
        return threshold * (1 - margin), threshold * (1 + margin)
    return threshold * (1 + margin), threshold * (1 - margin)


def _names(items: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def decide_material_drift(
    result: DriftResult,
    policy: DriftPolicy,
    previous: DriftResult | None = None,
    importances: Mapping[str, float] | None = None,
) -> MaterialDriftDecision:
    """Decide whether ``result`` is material drift under ``policy``; pure and deterministic.

    The previous state comes from ``previous.held_drifted`` (set by ``DriftResult.with_decision``)
    or, if absent, from the previous result's own per-column verdicts.  Importances come from
    ``importances`` or else the ones recorded in the result.
    """
    margin = policy.hysteresis_margin
    if previous is not None and previous.held_drifted is not None:
        was = set(previous.held_drifted)
    elif previous is not None:
        prev_cols = list(previous.columns) + ([previous.prediction] if previous.prediction else [])
        was = {
            c.column
            for c in prev_cols
            if _beyond(c.method, c.score, policy.stattest_threshold or c.threshold)
        }
    else:
        was = set()

    held: list[str] = []
    newly: list[str] = []

    def state(c: ColumnDrift) -> bool:
        thr = policy.stattest_threshold if policy.stattest_threshold is not None else c.threshold
        enter, stay = _levels(c.method, thr, margin)
        if c.column in was:
            on = _beyond(c.method, c.score, stay)
            if on and not _beyond(c.method, c.score, thr):
                held.append(c.column)
            return on
        on = _beyond(c.method, c.score, enter)
        if on:
            newly.append(c.column)
        return on

    drifted = [c.column for c in result.columns if state(c)]
    pred_drifted = result.prediction is not None and state(result.prediction)
    n = max(len(result.columns), 1)
    notes: list[str] = []
    if held:
        notes.append(
            f"{_names(held)} stay drifted: back under the threshold but not yet below the "
            f"{margin:.0%} hysteresis margin"
        )
    if margin > 0:
        near = [
            c.column
            for c in result.columns
            if c.column not in drifted
            and c.column not in was
            and _beyond(c.method, c.score, policy.stattest_threshold or c.threshold)
        ]
        if near:
            notes.append(
                f"{_names(near)} crossed the threshold only within the {margin:.0%} hysteresis margin, "
                "so they are not counted yet"
            )

    if policy.method == "share":
        share = len(drifted) / n
        material = share >= policy.share_threshold
        core = (
            f"{len(drifted)} of {n} input columns drifted ({share:.0%}), "
            f"{'at or above' if material else 'below'} the {policy.share_threshold:.0%} share threshold"
        )
    else:
        given = dict(importances) if importances is not None else {}
        weights = {c.column: given.get(c.column, c.importance) for c in result.columns}
        known = {k: abs(float(v)) for k, v in weights.items() if v is not None and math.isfinite(float(v))}
        if not known or sum(known.values()) <= 0:
            raise ValueError(
                f"policy method {policy.method!r} needs feature importances: pass importances={{column: weight}} "
                "to decide_material_drift or detect_drift, or use method='share'"
            )
        unweighted = sorted(set(weights) - set(known))
        if unweighted:
            notes.append(f"{_names(unweighted)} had no importance and count as weight 0")
        if policy.method == "weighted_share":
            total = sum(known.values())
            share = sum(known.get(c, 0.0) for c in drifted) / total
            material = share >= policy.share_threshold
            core = (
                f"drifted columns carry {share:.0%} of the feature importance "
                f"({len(drifted)} of {n} columns), {'at or above' if material else 'below'} the "
                f"{policy.share_threshold:.0%} threshold"
            )
        else:
            top = sorted(known, key=lambda c: (-known[c], c))[: policy.top_k]
            counted = [c for c in top if c in drifted]
            material = bool(counted)
            core = (
                f"{len(counted)} of the {len(top)} most important columns drifted"
                + (f" ({_names(counted)})" if counted else "")
                + (f"; {len(drifted)} of {n} columns drifted in all" if drifted else "")
            )
    if drifted and policy.method != "top_k":
        core += f" ({_names(drifted)})"
    if pred_drifted and result.prediction is not None:
        p = result.prediction
        if policy.prediction_drift_is_material:
            core += f"; the prediction {p.column!r} drifted ({p.method} {p.score:.3g})"
            material = True
        else:
            notes.append(f"the prediction {p.column!r} drifted, which this policy does not count on its own")

    columns = tuple(drifted) + ((result.prediction.column,) if pred_drifted and result.prediction else ())
    head = "Material drift: " if material else "No material drift: "
    reason = head + core + "." + "".join(f" {note[0].upper()}{note[1:]}." for note in notes)
    return MaterialDriftDecision(
        material=material,
        reason=reason,
        columns=columns,
        newly_drifted=tuple(newly),
        held=tuple(held),
    )
