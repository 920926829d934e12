"""Training data: load it, check it, split it in time, and fingerprint it for lineage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

import fsspec
import numpy as np
import pandas as pd

from steward.spec import FeatureType, ModelSpec, RowOrder
from steward.training.labels import check_labels

if TYPE_CHECKING:
    from steward.store.reader import PredictionStore


class DataError(ValueError):
    """Training data that cannot be used; the message says which check failed and by how much."""


class TooFewRows(DataError):
    """Not enough labelled rows yet: a reason to skip a retrain and wait, not a broken run."""


class SplitMethod(StrEnum):
    """How the hold-out was chosen; recorded with the version as ``split.method``."""

    TIME = "time"  # the newest rows by timestamp_column
    ROW_ORDER = "row_order"  # the file's last rows (data.order_by: row)
    RANDOM = "random"  # a seeded, stratified random sample


RANDOM_SPLIT_FINDING = (
    "no timestamp_column and no data.order_by: the hold-out is a random sample of rows, so the gate scores the "
    "model on rows from the same period it was trained on and cannot see it decay over time; set "
    "timestamp_column, or `data.order_by: row` if the file's rows are in time order (`data.order_by: random` "
    "keeps the random split and silences this)"
)


def read_frame(path: str, fmt: str = "auto") -> pd.DataFrame:
    """Read Parquet or CSV from a local path or any fsspec URL."""
    if fmt == "auto":
        suffix = PurePosixPath(path.split("?")[0]).suffix.lower()
        fmt = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}.get(suffix, "")
        if not fmt:
            raise DataError(f"cannot tell the format of {path!r} from its suffix: set data.format to parquet or csv")
    try:
        with fsspec.open(path, "rb") as handle:
            return pd.read_parquet(handle) if fmt == "parquet" else pd.read_csv(handle)
    except FileNotFoundError:
        raise DataError(f"training data not found at {path!r}: check data.path in the spec") from None


def prepare_features(frame: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The spec's feature columns, in spec order, with one dtype per type and NaN as the one missing marker.

    Everything that feeds a model goes through here (training, validation, serving), so a
    column typed differently by CSV or JSON cannot make the same row score differently.
    """
    missing = [name for name in spec.feature_names if name not in frame.columns]
    if missing:
        raise DataError(f"missing feature columns {missing}: the spec requires {spec.feature_names}")
    prepared = {}
    for feature in spec.features:
        column = frame[feature.name]
        if feature.is_numeric:
            converted = pd.to_numeric(column, errors="coerce").astype("float64")
            bad = converted.isna() & column.notna()
            if bad.any():
                examples = column[bad].astype(str).unique()[:3].tolist()
                raise DataError(f"feature {feature.name!r} must be numeric; found {examples}")
            prepared[feature.name] = converted
        elif feature.type is FeatureType.BOOLEAN:
            prepared[feature.name] = column.map(
                lambda v: np.nan if pd.isna(v) else str(bool(v) if not isinstance(v, str) else v).lower()
            ).astype(object)
        else:
            prepared[feature.name] = column.map(lambda v: np.nan if pd.isna(v) else str(v)).astype(object)
    return pd.DataFrame(prepared, index=frame.index)


def feature_dtypes(spec: ModelSpec) -> dict[str, np.dtype]:
    """The dtype ``prepare_features`` gives each feature: float64 for numbers, object otherwise."""
    return {f.name: np.dtype("float64" if f.is_numeric else "object") for f in spec.features}


def prepare_arrays(columns: dict[str, list], spec: ModelSpec) -> dict[str, np.ndarray]:
    """The values ``prepare_features`` gives, as one numpy array per feature, without building a frame.

    For the gateway's validated columns (numbers as float or None, categories and booleans as
    text or None) it converts directly, which costs microseconds instead of the milliseconds
    pandas takes for a few rows; any other column goes through ``prepare_features`` itself, so
    the result is always the same as ``prepare_features(pd.DataFrame(columns), spec)[name].to_numpy()``.
    """
    arrays: dict[str, np.ndarray] = {}
    other: list[str] = []
    for feature in spec.features:
        values = columns.get(feature.name)
        if values is None:
            other.append(feature.name)
        elif feature.is_numeric:
            if all(v is None or type(v) is float for v in values):
                arrays[feature.name] = np.array(values, dtype="float64")  # None becomes NaN
            else:
                other.append(feature.name)
        else:
            plain = (lambda v: v in ("true", "false")) if feature.type is FeatureType.BOOLEAN else (lambda v: type(v) is str)
            if all(v is None or plain(v) for v in values):
                array = np.empty(len(values), dtype=object)
                array[:] = [np.nan if v is None else v for v in values]
                arrays[feature.name] = array
            else:
                other.append(feature.name)
    if other:
        frame = prepare_features(pd.DataFrame(columns), spec)
        for name in other:
            arrays[name] = frame[name].to_numpy()
    return arrays


def frame_sha256(frame: pd.DataFrame) -> str:
    """Content hash of a frame: same rows and columns, same hash, whatever file format they came from."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class DataCheck:
    name: str
    passed: bool
    observed: float
    limit: float
    detail: str

    def describe(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        return f"{self.name}: {verdict}: {self.detail}"


@dataclass(frozen=True)
class DataValidationReport:
    rows: int
    checks: tuple[DataCheck, ...]
    findings: tuple[str, ...] = ()  # what the user should know that fails no check (a random split)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> tuple[DataCheck, ...]:
        return tuple(check for check in self.checks if not check.passed)

    @property
    def too_few_rows(self) -> bool:
        """Failed on row count: wait for more data (a skipped retrain), whatever else a small sample shows."""
        return any(check.name == "min_rows" for check in self.failures)

    def summary(self) -> str:
        notes = "".join(f"\n  note: {finding}" for finding in self.findings)
        if self.passed:
            return f"{self.rows} rows passed {len(self.checks)} data checks" + notes
        return "training data rejected:\n" + "\n".join(f"  - {c.describe()}" for c in self.failures) + notes


def validate_training_data(frame: pd.DataFrame, spec: ModelSpec) -> DataValidationReport:
    """Schema, missing share, ranges, unknown categories, class balance and row count, with the margin."""
    policy = spec.data_validation
    rows = len(frame)
    checks = [
        DataCheck(
            "min_rows", rows >= policy.min_rows, rows, policy.min_rows,
            f"{rows} rows, at least {policy.min_rows} needed",
        )
    ]
    absent = [c for c in [*spec.feature_names, spec.target] if c not in frame.columns]
    checks.append(
        DataCheck(
            "schema", not absent, len(absent), 0,
            f"missing columns {absent}" if absent else "all feature and target columns present",
        )
    )
    findings = split_findings(spec)
    if absent or rows == 0:
        return DataValidationReport(rows, tuple(checks), findings)

    for feature in spec.features:
        column = frame[feature.name]
        missing_share = float(column.isna().mean())
        limit = 1.0 if feature.nullable else policy.max_missing_share
        checks.append(
            DataCheck(
                f"missing:{feature.name}", missing_share <= limit, missing_share, limit,
                f"{missing_share:.1%} missing (limit {limit:.0%}{', nullable' if feature.nullable else ''})",
            )
        )
        present = column.dropna()
        if feature.is_numeric and (feature.min is not None or feature.max is not None):
            values = pd.to_numeric(present, errors="coerce")
            outside = (values < (feature.min if feature.min is not None else -np.inf)) | (
                values > (feature.max if feature.max is not None else np.inf)
            )
            share = float(outside.mean()) if len(values) else 0.0
            checks.append(
                DataCheck(
                    f"range:{feature.name}", share <= policy.max_out_of_range_share, share,
                    policy.max_out_of_range_share,
                    f"{share:.2%} outside [{feature.min}, {feature.max}] "
                    f"(limit {policy.max_out_of_range_share:.0%})",
                )
            )
        if feature.type is FeatureType.CATEGORICAL and feature.categories:
            unknown = ~present.astype(str).isin(feature.categories)
            share = float(unknown.mean()) if len(present) else 0.0
            seen = present[unknown].astype(str).unique()[:3].tolist()
            checks.append(
                DataCheck(
                    f"categories:{feature.name}", share <= policy.max_unknown_category_share, share,
                    policy.max_unknown_category_share,
                    f"{share:.2%} not in {list(feature.categories)}" + (f" (e.g. {seen})" if seen else ""),
                )
            )

    target = frame[spec.target]
    target_missing = int(target.isna().sum())
    checks.append(
        DataCheck(
            "target_present", target_missing == 0, target_missing, 0,
            f"{target_missing} rows without a {spec.target!r} label",
        )
    )
    if spec.task.is_classification:
        labels = check_labels(target, spec)
        checks.append(
            DataCheck("labels", labels.problem is None, len(labels.classes), 0,
                      labels.problem or f"classes {list(labels.classes)[:10]} fit the spec")
        )
        shares = target.dropna().value_counts(normalize=True)
        smallest = float(shares.min()) if len(shares) else 0.0
        enough_classes = len(shares) >= 2
        checks.append(
            DataCheck(
                "class_balance", enough_classes and smallest >= policy.min_class_share, smallest,
                policy.min_class_share,
                f"{len(shares)} classes, smallest share {smallest:.1%} (at least {policy.min_class_share:.0%})",
            )
        )
    return DataValidationReport(rows, tuple(checks), findings)


def split_findings(spec: ModelSpec) -> tuple[str, ...]:
    """Say so when the hold-out will be a random sample because nothing orders the rows in time."""
    if spec.timestamp_column or spec.data.order_by is not None:
        return ()
    return (RANDOM_SPLIT_FINDING,)


@dataclass(frozen=True)
class Split:
    train: pd.DataFrame
    holdout: pd.DataFrame
    method: SplitMethod
    train_window: tuple[pd.Timestamp, pd.Timestamp] | None = None
    holdout_window: tuple[pd.Timestamp, pd.Timestamp] | None = None


def split_train_holdout(frame: pd.DataFrame, spec: ModelSpec) -> Split:
    """Hold out the most recent rows when there is a timestamp, so evaluation looks forward in time.

    Without one, ``data.order_by: row`` holds out the file's last rows; otherwise the hold-out is a
    seeded, stratified random sample (the data validation report says so).
    """
    fraction = spec.training.holdout_fraction
    if spec.timestamp_column and spec.timestamp_column in frame.columns:
        times = pd.to_datetime(frame[spec.timestamp_column], utc=True)
        ordered = frame.assign(**{spec.timestamp_column: times}).sort_values(spec.timestamp_column, kind="stable")
        cut = int(round(len(ordered) * (1 - fraction)))
        train, holdout = ordered.iloc[:cut], ordered.iloc[cut:]
        column = spec.timestamp_column
        return Split(
            train, holdout, SplitMethod.TIME,
            (train[column].min(), train[column].max()),
            (holdout[column].min(), holdout[column].max()),
        )
    if spec.data.order_by is RowOrder.ROW:
        cut = int(round(len(frame) * (1 - fraction)))
        return Split(frame.iloc[:cut], frame.iloc[cut:], SplitMethod.ROW_ORDER)
    from sklearn.model_selection import train_test_split

    stratify = frame[spec.target] if spec.task.is_classification else None
    train, holdout = train_test_split(
        frame, test_size=fraction, random_state=spec.training.random_state, stratify=stratify
    )
    return Split(train, holdout, SplitMethod.RANDOM)


def production_training_frame(
    spec: ModelSpec, *, store: PredictionStore | None = None, now: datetime | None = None,
    window_days: int | None = None,
) -> tuple[pd.DataFrame, str]:
    """Labelled production rows of the last ``window_days`` (default ``spec.data.window_days``) before ``now``,
    shaped like a training file.

    Only labels received before ``now`` count, so a backfill at a past ``now`` sees what was known then.

    Every served prediction counts, whichever arm answered: the label belongs to the input,
    not to the model that scored it. Shadow copies are left out because they repeat a served
    row. Returns the frame (features, target, timestamp and entity columns) and a description
    of the source for lineage.
    """
    # Imported here: the store needs pyarrow, which nothing else in training data does.
    from steward.store.reader import PredictionStore, as_utc, join_labels, typed_labels

    window_days = window_days or spec.data.window_days
    if not window_days:
        raise DataError("data.kind is 'production': set data.window_days to the number of days to train on")
    if store is None:
        from steward.config import get_settings

        store = PredictionStore.from_settings(get_settings())
    end = as_utc(now or datetime.now(UTC), "now")
    start = end - timedelta(days=window_days)
    window = f"{start:%Y-%m-%dT%H:%M}Z..{end:%Y-%m-%dT%H:%M}Z"
    predictions = store.read_predictions(spec.name, start, end, served_only=True)
    predictions = predictions[predictions["status"] == "ok"]
    if predictions.empty:
        raise TooFewRows(
            f"no served predictions of {spec.name!r} in {store.uri} over {window}: serve the model with "
            "`steward serve` and send labels to its feedback endpoint, or train from a file (data.kind: file)"
        )
    joined = join_labels(predictions, store.read_labels(spec.name, start=start, end=end))
    if joined.empty:
        raise TooFewRows(
            f"{len(predictions)} predictions of {spec.name!r} were served over {window} but none has a label yet: "
            f"send labels to POST /v1/models/{spec.name}/feedback, or widen data.window_days"
        )
    absent = [name for name in spec.feature_names if name not in joined.columns]
    if absent:
        raise DataError(
            f"the prediction log of {spec.name!r} has no values for features {absent} over {window}: "
            "the spec added them after these predictions were served; train from a file until the log has them"
        )
    frame = joined[spec.feature_names].copy()
    frame[spec.target] = typed_labels(joined["label"], classification=spec.task.is_classification).to_numpy()
    frame[spec.timestamp_column] = joined["time"].to_numpy()
    if spec.entity_column:
        frame[spec.entity_column] = joined["entity"].to_numpy()
    frame = frame.sort_values(spec.timestamp_column, kind="stable").reset_index(drop=True)
    source = (
        f"production log {store.uri} model={spec.name} {window}: "
        f"{len(frame)} labelled of {len(predictions)} served predictions (all arms)"
    )
    return frame, source


# --- a first spec from a data file (`steward init --from-data`) --------------------------------------------------

MAX_DRAFT_CATEGORIES = 50  # a text column with more distinct values is an id or free text, not a category


@dataclass(frozen=True)
class SpecDraft:
    """A spec drafted from a data file for a person to review, and what the draft could not decide."""

    document: dict
    left_out: tuple[str, ...]  # columns not made features, each with why

    def to_yaml(self) -> str:
        import yaml

        header = [
            "# Drafted by `steward init --from-data` from the data as it is: review it before training.",
            "# Ranges are the observed ones widened by a margin; categories are the observed ones.",
            *(f"# left out: {reason}" for reason in self.left_out),
        ]
        return "\n".join(header) + "\n" + yaml.safe_dump(self.document, sort_keys=False, allow_unicode=True)


def _bound(value: float, integer: bool, up: bool) -> float | int:
    if integer:
        return int(np.ceil(value) if up else np.floor(value))
    return float(f"{value:.6g}")


def _draft_feature(name: str, column: pd.Series, margin: float) -> tuple[dict | None, str | None]:
    present = column.dropna()
    feature: dict = {"name": name}
    if present.empty:
        return None, f"{name}: every value is missing"
    if pd.api.types.is_bool_dtype(column) or set(map(str, present.unique())) <= {"True", "False"}:
        feature["type"] = FeatureType.BOOLEAN.value
    elif pd.api.types.is_numeric_dtype(column):
        values = present.astype(float)
        integer = pd.api.types.is_integer_dtype(column) or bool((values % 1 == 0).all())
        low, high = float(values.min()), float(values.max())
        pad = (high - low) * margin or abs(high) * margin or margin
        lower = low - pad if low < 0 or low - pad >= 0 else 0.0  # a column never below zero stays so
        feature.update(type=(FeatureType.INTEGER if integer else FeatureType.NUMERIC).value,
                       min=_bound(lower, integer, up=False), max=_bound(high + pad, integer, up=True))
    elif pd.api.types.is_datetime64_any_dtype(column):
        return None, f"{name}: a date/time column (pass it as --timestamp if it is the event time)"
    else:
        categories = sorted(map(str, present.unique()))
        if len(categories) > MAX_DRAFT_CATEGORIES:
            return None, (f"{name}: {len(categories)} distinct text values, more than {MAX_DRAFT_CATEGORIES}: "
                          "an id or free text, not a category")
        feature.update(type=FeatureType.CATEGORICAL.value, categories=categories)
    if column.isna().any():
        feature["nullable"] = True
    return feature, None


def _draft_task(labels: pd.Series) -> tuple[str, dict]:
    """The task a target column suggests, and the label fields a binary one needs."""
    present = labels.dropna()
    distinct = present.unique()
    numeric = pd.api.types.is_numeric_dtype(labels) and not pd.api.types.is_bool_dtype(labels)
    if len(distinct) == 2:
        from steward.training.labels import label_key

        keys = {label_key(v) for v in distinct}
        if keys == {"0", "1"}:
            return "binary_classification", {}
        counts = present.value_counts()
        minority = counts.index[-1]
        minority = minority.item() if hasattr(minority, "item") else minority
        classes = [v.item() if hasattr(v, "item") else v for v in sorted(distinct, key=str)]
        return "binary_classification", {"positive_label": minority, "classes": classes}
    if numeric and not (present % 1 == 0).all():
        return "regression", {}
    if len(distinct) <= MAX_DRAFT_CATEGORIES and not (numeric and len(distinct) > 20):
        return "multiclass_classification", {}
    return "regression", {}


def draft_spec(
    frame: pd.DataFrame, *, name: str, target: str, data_path: str, timestamp: str | None = None,
    margin: float = 0.1,
) -> SpecDraft:
    """A spec for ``frame``: the task from the target, each other column as a feature with its type, its range
    widened by ``margin`` of its span, or its categories. A binary target that is not 0/1 gets its minority class
    as ``positive_label`` (the rarer class is usually the one to detect); the reviewer may change it."""
    absent = [c for c in (target, timestamp) if c and c not in frame.columns]
    if absent:
        raise DataError(f"{data_path} has no column {absent[0]!r}; its columns are {list(frame.columns)}")
    if frame[target].isna().all():
        raise DataError(f"target {target!r} in {data_path} has no values")
    if timestamp:
        try:
            pd.to_datetime(frame[timestamp].dropna().head(1000), utc=True)
        except (ValueError, TypeError) as error:
            raise DataError(f"--timestamp {timestamp!r} does not hold dates or times ({error}): name the event "
                            "time column, or leave --timestamp out") from None
    task, label_fields = _draft_task(frame[target])
    features, left_out = [], []
    for column in frame.columns:
        if column in (target, timestamp):
            continue
        feature, reason = _draft_feature(str(column), frame[column], margin)
        if feature is not None:
            features.append(feature)
        else:
            left_out.append(reason)
    if not features:
        raise DataError(f"no column of {data_path} besides the target can be a feature: {'; '.join(left_out)}")
    document: dict = {"name": name, "task": task, "target": target, **label_fields}
    if timestamp:
        document["timestamp_column"] = timestamp
    document["features"] = features
    document["data"] = {"kind": "file", "path": data_path}
    return SpecDraft(document, tuple(left_out))
