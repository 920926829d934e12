"""The reference side of a drift check, computed once per model version: ``ReferenceProfile``.

Per-column sorted values or a quantile sketch, category counts, and a bounded seeded sample of
reference rows for the Evidently report; saved with the version as one Parquet file.  Also the
input checks both engines share.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from steward.monitoring.drift.result import ColumnKind

PROFILE_FORMAT = "steward.drift.reference_profile/1"
_PARQUET_KEY = b"steward.reference_profile"
# Rows of each side behind the sampled Evidently report: its cost is mostly per-column plotting, so it
# stays small; the verdict uses all rows.
REPORT_SAMPLE_ROWS = 5_000
SMALL_REFERENCE_ROWS = 1000  # Evidently: <= 1000 reference rows -> p-value tests, else distances


# --------------------------------------------------------------------------------------------
# Input checks


def column_lists(
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


def check_frame(
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


def prediction_kind_of(frame: pd.DataFrame, column: str | None, kind: ColumnKind | None) -> ColumnKind | None:
    """A float score is numeric; a class label (int, str, bool) is categorical, unless told."""
    if column is None:
        return None
    if kind is None:
        return "numeric" if pd.api.types.is_float_dtype(frame[column].dtype) else "categorical"
    if kind not in ("numeric", "categorical"):
        raise ValueError(f"prediction_kind must be 'numeric' or 'categorical', got {kind!r}")
    if kind == "numeric":
        check_frame(frame, "the data", [column], [], [])
    return kind


def no_values_error(column: str, what: str) -> ValueError:
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


def float_values(series: pd.Series) -> np.ndarray:
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
            raise no_values_error(name, "reference")
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
            raise no_values_error(str(values.name), "reference")
        return cls(n, len(values) - n, {plain_value(k): int(v) for k, v in vc.items() if v > 0})

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "missing": self.missing,
            "counts": [[k, v] for k, v in self.counts.items()],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoricalProfile:
        return cls(int(d["rows"]), int(d["missing"]), {plain_value(k): int(v) for k, v in d["counts"]})


def plain_value(value: Any) -> Any:
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
        numeric, categorical = column_lists(numeric, categorical, prediction_column)
        extra = [prediction_column] if prediction_column is not None else []
        check_frame(reference, "reference", numeric, categorical, extra)
        if max_points < SMALL_REFERENCE_ROWS:
            raise ValueError(
                f"max_points must be >= {SMALL_REFERENCE_ROWS} so small references are kept exactly"
            )
        pkind = prediction_kind_of(reference, prediction_column, prediction_kind)
        columns: dict[str, NumericProfile | CategoricalProfile] = {}
        for name, kind in [*((c, "numeric") for c in numeric), *((c, "categorical") for c in categorical)] + (
            [(prediction_column, pkind)] if prediction_column is not None else []
        ):
            if kind == "numeric":
                columns[name] = NumericProfile.build(float_values(reference[name]), max_points, name)
            else:
                columns[name] = CategoricalProfile.build(reference[name])
        sample = sample_frame(reference, [*numeric, *categorical, *extra], sample_rows, seed)
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


def sample_frame(frame: pd.DataFrame, columns: list[str], rows: int, seed: int) -> pd.DataFrame:
    """A seeded uniform sample of at most ``rows`` rows of ``columns``, in original order.

    Built column by column from the sampled positions, so a 1M-row frame is never copied whole.
    """
    if len(frame) <= rows:
        return frame[columns].reset_index(drop=True)
    index = np.sort(np.random.default_rng(seed).choice(len(frame), size=rows, replace=False))
    return pd.DataFrame({c: frame[c].iloc[index].reset_index(drop=True) for c in columns})
