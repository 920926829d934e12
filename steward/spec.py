"""ModelSpec: everything Steward needs to know about one model, read from YAML.

A spec names the model, its task and target, the feature schema, where its training
data comes from, how to build the estimator, and the policies the procedures apply:
data validation, the validation gate, SLOs, the canary plan, drift and retraining.
Validation errors name the field (``gates.tolerance``) and say what is allowed.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class SpecError(ValueError):
    """A spec file that cannot be used; the message lists every bad field."""


class Task(StrEnum):
    BINARY_CLASSIFICATION = "binary_classification"
    MULTICLASS_CLASSIFICATION = "multiclass_classification"
    REGRESSION = "regression"

    @property
    def is_classification(self) -> bool:
        return self is not Task.REGRESSION


class FeatureType(StrEnum):
    NUMERIC = "numeric"
    INTEGER = "integer"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


class OutOfRangePolicy(StrEnum):
    """What the gateway and data validation do with a value outside the declared range."""

    REJECT = "reject"
    ALLOW = "allow"


class FeatureRole(StrEnum):
    """How drift judges a feature: an ordinary input, a calendar field, or a seasonal measurement."""

    INPUT = "input"
    CALENDAR = "calendar"  # month, day of month, weekday, hour: moves by construction, never counted as drift
    SEASONAL = "seasonal"  # compared with the same period one season (``drift.season_days``) earlier


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Feature(_Strict):
    name: str = Field(min_length=1)
    type: FeatureType
    min: float | None = None
    max: float | None = None
    categories: tuple[str, ...] | None = None
    nullable: bool = False
    description: str = ""
    role: FeatureRole = Field(
        default=FeatureRole.INPUT,
        description="calendar: left out of the material-drift decision; seasonal: compared one season back.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Feature:
        if self.type is FeatureType.CATEGORICAL:
            if self.min is not None or self.max is not None:
                raise ValueError(f"feature {self.name!r} is categorical: give `categories`, not min/max")
        elif self.categories is not None:
            raise ValueError(f"feature {self.name!r} is {self.type.value}: `categories` only fits categorical")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"feature {self.name!r}: min {self.min} is above max {self.max}")
        return self

    @property
    def is_numeric(self) -> bool:
        return self.type in (FeatureType.NUMERIC, FeatureType.INTEGER)


class RowOrder(StrEnum):
    """What orders the rows of a training file when there is no timestamp column."""

    RANDOM = "random"  # no order: the hold-out is a seeded, stratified random sample
    ROW = "row"  # the file's row order is time order: the last rows are held out


class DataSource(_Strict):
    """Where training data comes from.

    ``kind: file`` reads ``path`` (a local path or any fsspec URL, Parquet or CSV).
    ``kind: production`` joins logged predictions with their labels over the last
    ``window_days``; it needs the prediction store the gateway writes. With
    ``candidate_window_days`` the retrain compares those windows (and ``window_days``) on the
    newest labelled rows and trains on the best; a window with too little data gives way to the
    next longer one.
    """

    kind: Literal["file", "production"] = "file"
    path: str | None = None
    format: Literal["auto", "parquet", "csv"] = "auto"
    window_days: int | None = Field(default=None, gt=0)
    candidate_window_days: tuple[int, ...] = Field(
        default=(), description="Windows to compare by evidence (production data); empty: window_days only."
    )
    order_by: RowOrder | None = Field(
        default=None,
        description="Without a timestamp column: 'row' holds out the file's last rows (its order is time order); "
                    "'random' a random sample. Unset: random, and the validation report says so.",
    )

    @model_validator(mode="after")
    def _needs_path(self) -> DataSource:
        if self.kind == "file" and not self.path:
            raise ValueError("data.kind is 'file': set data.path to a Parquet or CSV file or URL")
        if self.candidate_window_days:
            if self.kind != "production":
                raise ValueError("data.candidate_window_days compares windows of production data: set data.kind "
                                 "to 'production' or remove it")
            if any(days <= 0 for days in self.candidate_window_days):
                raise ValueError(f"data.candidate_window_days must be positive days; got "
                                 f"{list(self.candidate_window_days)}")
        return self

    @property
    def window_candidates(self) -> tuple[int, ...]:
        """Every window the retrain may use, shortest first (``window_days`` is always one of them)."""
        return tuple(sorted({*self.candidate_window_days, *([self.window_days] if self.window_days else [])}))


class EstimatorSpec(_Strict):
    """How to build an unfitted estimator.

    ``factory`` is ``module:callable``; it is called as ``factory(spec, **params)`` and
    must return a scikit-learn estimator that accepts the raw feature frame.
    """

    factory: str = "steward.estimators:tabular_pipeline"
    params: dict[str, Any] = Field(default_factory=dict)
    score_column: str | None = Field(
        default=None,
        description="For a python-function model with no predict_proba: the output column holding the positive "
        "class's probability (binary classification).",
    )
    label_column: str | None = Field(
        default=None, description="For a python-function model whose output has several columns: the prediction's."
    )
    classes: tuple[Any, ...] | None = Field(
        default=None,
        description="The classes in the order of a python-function model's scores ([negative, positive]); "
        "default [0, 1] with score_column.",
    )

    @field_validator("factory")
    @classmethod
    def _import_path(cls, value: str) -> str:
        if ":" not in value:
            raise ValueError(f"{value!r} is not an import path: write it as 'package.module:function'")
        return value

    def load_factory(self) -> Callable[..., Any]:
        module_name, _, attribute = self.factory.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise SpecError(f"estimator.factory: cannot import module {module_name!r}: {error}") from error
        try:
            return getattr(module, attribute)
        except AttributeError as error:
            raise SpecError(f"estimator.factory: module {module_name!r} has no {attribute!r}") from error


class RegistrySpec(_Strict):
    """The registry alias names Steward moves; change them where the team already uses champion or challenger."""

    champion_alias: str = Field(default="champion", pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
    challenger_alias: str = Field(default="challenger", pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")

    @model_validator(mode="after")
    def _distinct(self) -> RegistrySpec:
        if self.champion_alias == self.challenger_alias:
            raise ValueError(f"registry.champion_alias and registry.challenger_alias are both "
                             f"{self.champion_alias!r}: give them different names")
        return self


def _import_path(field: str, value: str) -> str:
    module, _, attribute = value.partition(":")
    if not module or not attribute:
        raise ValueError(f"{field}: {value!r} is not an import path: write it as 'package.module:function'")
    return value


class TrainingSpec(_Strict):
    """How a version is produced and held out.

    By default Steward fits ``estimator.factory``. A team that keeps its own training code names it
    instead: ``entrypoint`` (``package.module:function``, called with the training frame, the spec and
    ``params``, returning a fitted model), or ``deployment`` (``<flow>/<deployment>``, a Prefect
    deployment the retrain runs with the data window and waits for, up to ``deployment_timeout_seconds``,
    until it registers a candidate).
    """

    entrypoint: str | None = Field(default=None, description="package.module:function returning a fitted model.")
    deployment: str | None = Field(default=None, description="<flow>/<deployment> that registers the candidate.")
    deployment_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="How long the retrain waits for the deployment's candidate."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Passed to the entrypoint or deployment.")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=0.9)
    random_state: int = 42
    slow_training_factor: float = Field(default=10.0, gt=1, description="Flag runs this many times the median.")
    reference_sample_rows: int = Field(
        default=200_000, gt=0, description="Rows of the training data kept with the version for drift reports."
    )

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint_path(cls, value: str | None) -> str | None:
        return None if value is None else _import_path("training.entrypoint", value)

    @field_validator("deployment")
    @classmethod
    def _deployment_name(cls, value: str | None) -> str | None:
        if value is not None:
            flow_name, _, deployment_name = value.partition("/")
            if not flow_name or not deployment_name or "/" in deployment_name:
                raise ValueError(f"training.deployment: {value!r} is not a deployment name: write it as "
                                 "'<flow name>/<deployment name>', as `prefect deployment ls` shows it")
        return value

    @model_validator(mode="after")
    def _one_producer(self) -> TrainingSpec:
        if self.entrypoint and self.deployment:
            raise ValueError("training.entrypoint and training.deployment both name the training code: keep one")
        return self


class DataValidationSpec(_Strict):
    min_rows: int = Field(default=500, ge=1)
    max_missing_share: float = Field(default=0.05, ge=0, le=1, description="Per feature, non-nullable ones.")
    max_out_of_range_share: float = Field(default=0.01, ge=0, le=1)
    max_unknown_category_share: float = Field(default=0.01, ge=0, le=1)
    min_class_share: float = Field(default=0.02, ge=0, lt=0.5, description="Smallest class share (classification).")


class GateSpec(_Strict):
    """The validation gate a candidate must pass against the champion."""

    primary_metric: str | None = Field(default=None, description="Default: roc_auc / f1_macro / rmse by task.")
    tolerance: float = Field(
        default=0.01, ge=0,
        description="Non-inferiority margin: the paired interval of the improvement must stay above -tolerance.",
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Of the paired intervals (two-sided).")
    require_expected_gain: bool = Field(
        default=True, description="A pass also needs the estimate at least as good as keeping the champion."
    )
    bootstrap_resamples: int = Field(default=2000, ge=200, description="Paired bootstrap draws (non-AUC metrics).")
    floor: float | None = Field(default=None, description="Absolute bound the primary metric must meet.")
    slice_features: tuple[str, ...] = ()
    slice_tolerance: float = Field(
        default=0.03, ge=0, description="A slice fails only when significantly worse than this below the champion."
    )
    min_slice_rows: int = Field(default=50, ge=1)
    max_latency_factor: float = Field(default=2.0, ge=1, description="Candidate p95 / champion p95 limit.")
    min_latency_ms: float = Field(
        default=1.0, ge=0, description="Latencies under this are too small to call a regression."
    )
    min_batch_throughput_factor: float = Field(
        default=0.5, gt=0, le=1, description="Candidate rows/s must be at least this share of the champion's."
    )
    allow_schema_change: bool = False


class SLOSpec(_Strict):
    p95_latency_ms: float = Field(default=50.0, gt=0)
    p99_latency_ms: float | None = Field(default=None, gt=0, description="Adds a p99 latency alert when set.")
    availability: float = Field(default=0.999, gt=0, le=1)
    min_accuracy: float | None = Field(default=None, description="On the primary metric, over labelled traffic.")


class CanaryPlan(_Strict):
    steps: tuple[float, ...] = (1.0, 5.0, 25.0, 50.0, 100.0)
    min_requests_per_arm: int = Field(default=200, ge=1)
    min_step_seconds: float = Field(default=300.0, ge=0)
    max_hold_seconds: float = Field(default=3600.0, gt=0)
    max_error_rate_increase: float = Field(default=0.01, ge=0, description="Tolerated rise of the 5xx share.")
    max_p95_latency_factor: float = Field(default=1.5, ge=1, description="Challenger p95 / champion p95 limit.")
    min_p95_latency_increase_ms: float = Field(
        default=2.0, ge=0, description="A slower p95 is a breach only when it is also this many ms slower."
    )
    latency_slice_seconds: float = Field(
        default=5.0, gt=0,
        description="Latency is compared on requests of both arms in the same slices of this length, so that "
                    "machine load moves both sides alike; with no champion traffic alongside (a canary's 100% "
                    "step, the blue-green watch) the challenger's p95 is judged against slo.p95_latency_ms.",
    )
    max_accuracy_drop: float = Field(default=0.02, ge=0, description="On labelled traffic, in metric units.")
    min_labelled: int = Field(default=100, ge=1, description="Labelled predictions per arm before accuracy counts.")
    max_score_ks: float = Field(
        default=0.3, gt=0, le=1,
        description="Largest tolerated KS distance of the challenger's live scores from its own validation scores, "
                    "beyond the champion's distance from its own on the same traffic.",
    )
    alpha: float = Field(default=0.05, gt=0, lt=0.5, description="Significance level of each breach test.")

    @model_validator(mode="before")
    @classmethod
    def _retired_fields(cls, document: Any) -> Any:
        if isinstance(document, dict) and "min_p95_latency_increase_across_windows_ms" in document:
            raise ValueError(
                "canary.min_p95_latency_increase_across_windows_ms is gone: latency is no longer compared across "
                "windows (where there is no champion traffic alongside, the challenger's p95 is judged against "
                "slo.p95_latency_ms); delete the line"
            )
        return document

    @field_validator("steps")
    @classmethod
    def _ramp(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("canary.steps is empty: list traffic percentages, ending at 100")
        if any(not 0 < step <= 100 for step in steps):
            raise ValueError(f"canary.steps must be percentages in (0, 100]; got {list(steps)}")
        if list(steps) != sorted(set(steps)) or steps[-1] != 100:
            raise ValueError(f"canary.steps must rise strictly and end at 100; got {list(steps)}")
        return steps


class ABTestSpec(_Strict):
    """How an A/B test between champion and challenger is judged."""

    metric: Literal["accuracy", "label_mean", "latency_ms"] = "accuracy"
    higher_is_better: bool = True
    minimum_effect: float = Field(default=0.02, gt=0, description="Smallest difference worth detecting.")
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    power: float = Field(default=0.8, gt=0, lt=1)
    stopping: Literal["sequential", "fixed"] = Field(
        default="sequential", description="sequential: valid at every look; fixed: only at planned_samples."
    )
    planned_samples_per_arm: int | None = Field(default=None, ge=1)
    sticky_key: str | None = Field(default=None, description="Field or header that keeps a customer on one arm.")

    @model_validator(mode="after")
    def _fixed_needs_plan(self) -> ABTestSpec:
        if self.stopping == "fixed" and self.planned_samples_per_arm is None:
            raise ValueError("ab_test.stopping is 'fixed': set ab_test.planned_samples_per_arm (pre-registered)")
        return self


def upgrade_prediction_flag(data: Any) -> Any:
    """Specs written before ``prediction_drift`` said ``prediction_drift_is_material: true|false``."""
    if isinstance(data, dict) and "prediction_drift_is_material" in data:
        data = dict(data)
        old = data.pop("prediction_drift_is_material")
        data.setdefault("prediction_drift", "always" if old else "never")
    return data


class DriftSpec(_Strict):
    window_days: int = Field(default=1, ge=1)
    method: Literal["share", "weighted_share", "top_k"] = "share"
    share_threshold: float = Field(default=0.3, gt=0, le=1)
    top_k: int = Field(default=5, ge=1)
    hysteresis_margin: float = Field(default=0.1, ge=0, lt=1)
    prediction_drift: Literal["never", "with_accuracy", "always"] = Field(
        default="with_accuracy",
        description="When drift of the model's own outputs alone is material: never, only when measured or "
        "estimated accuracy moved with it, or always.",
    )
    season_days: int | None = Field(
        default=None, ge=1, description="Season length of the features with role 'seasonal' (7: weekly)."
    )
    multiple_testing: Literal["bonferroni", "none"] = Field(
        default="bonferroni",
        description="Columns judged by a p-value share the significance level (bonferroni), so a stationary "
        "window does not flag one of many columns by chance.",
    )
    noise_alpha: float = Field(
        default=0.01, gt=0, lt=1,
        description="The chance per window that sampling noise alone puts any column into the drifted state: a "
        "distance past its threshold on a small window also needs its noise p-value below this, shared among the "
        "columns (multiple_testing).",
    )

    @model_validator(mode="before")
    @classmethod
    def _old_prediction_flag(cls, data: Any) -> Any:
        return upgrade_prediction_flag(data)


class HealthSpec(_Strict):
    """Thresholds of the five health checks of the maintenance guide."""

    min_throughput_rps: float = Field(default=0.0, ge=0, description="Below this, 'consider scaling or batching'.")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="Share of requests answered 5xx/error.")
    max_missing_share: float = Field(default=0.05, ge=0, le=1)
    max_outlier_share: float = Field(default=0.10, ge=0, le=1)
    max_schema_violation_share: float = Field(default=0.01, ge=0, le=1, description="Rejected (4xx) requests.")
    max_accuracy_drop: float = Field(default=0.05, ge=0, description="Against the version's validation baseline.")
    max_calibration_shift: float = Field(
        default=0.05, ge=0, description="Change of mean confidence minus accuracy against the holdout's."
    )
    max_cpu_share: float = Field(default=0.80, gt=0, le=1)
    max_memory_share: float = Field(default=0.85, gt=0, le=1)
    max_cost_per_1k_requests: float | None = Field(default=None, ge=0)
    max_idle_share: float = Field(default=0.20, ge=0, le=1, description="Resource waste above this is reported.")
    window_hours: float = Field(default=24.0, gt=0)
    label_lookback_days: float = Field(
        default=14.0, ge=0,
        description="Accuracy is also judged on predictions made up to this many days before the window whose "
        "labels arrived in it (late feedback); 0 judges only the window's own predictions.",
    )


class CostSpec(_Strict):
    price_per_replica_hour: float = Field(default=0.10, ge=0, description="What one gateway replica costs an hour.")
    replicas: int = Field(default=1, ge=1)
    replica_capacity_rps: float = Field(default=200.0, gt=0, description="Requests/s one replica serves at SLO.")


class MonitoringSpec(_Strict):
    log_retention_days: int = Field(default=90, ge=1, description="Prediction-log partitions older than this go.")
    temp_retention_days: int = Field(default=7, ge=1)
    top_features: int = Field(default=15, ge=1, description="Most influential features drift focuses on.")


class RetrainSpec(_Strict):
    cooldown_hours: float = Field(default=24.0, ge=0)
    max_per_week: int = Field(default=3, ge=1)
    pending_days: float = Field(
        default=7.0, gt=0,
        description="An inconclusive candidate is kept this long, revalidated once the labelled rows it needs "
                    "exist; until then it blocks a second retrain for the same trigger.",
    )
    no_gain_days: float = Field(
        default=7.0, ge=0,
        description="After a retrain found no expected gain, the same trigger retrains again within this time "
                    "only on new evidence: a new drifted column, or the served model's metrics falling further.",
    )
    refresh_after_days: float | None = Field(
        default=None, gt=0,
        description="Scheduled refresh: once the champion's training data is this many days old, retrain even "
                    "with no alarm, and promote the fresher model unless the gate shows it worse (decision 0036). "
                    "Off by default: a backtest (Steward against its every-window baseline) says whether a model needs it.",
    )
    catch_up_lagging_labels: bool = Field(
        default=True,
        description="A model retrained for a drop of the primary metric on labels that lagged its training by more "
                    "than the cooldown is retrained once more after the cooldown, on the labels of the change that "
                    "arrived since, and promoted unless the gate shows it worse (decision 0038).",
    )


class ModelSpec(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    description: str = ""
    task: Task
    target: str
    positive_label: str | int | bool | None = Field(
        default=None, description="The class a binary model detects; needed unless the classes are 0/1 or booleans."
    )
    classes: tuple[str | int | bool, ...] | None = Field(
        default=None, description="Every label value the target may take; others are refused before training."
    )
    features: tuple[Feature, ...] = Field(min_length=1)
    timestamp_column: str | None = None
    entity_column: str | None = None
    data: DataSource
    estimator: EstimatorSpec = Field(default_factory=EstimatorSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    data_validation: DataValidationSpec = Field(default_factory=DataValidationSpec)
    gates: GateSpec = Field(default_factory=GateSpec)
    slo: SLOSpec = Field(default_factory=SLOSpec)
    canary: CanaryPlan = Field(default_factory=CanaryPlan)
    ab_test: ABTestSpec = Field(default_factory=ABTestSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)
    health: HealthSpec = Field(default_factory=HealthSpec)
    cost: CostSpec = Field(default_factory=CostSpec)
    monitoring: MonitoringSpec = Field(default_factory=MonitoringSpec)
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)

    @model_validator(mode="after")
    def _columns_consistent(self) -> ModelSpec:
        names = [feature.name for feature in self.features]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"features: {duplicates} listed more than once")
        reserved = {self.target, self.timestamp_column, self.entity_column} - {None}
        clash = sorted(reserved & set(names))
        if clash:
            raise ValueError(f"features: {clash} is also the target, timestamp or entity column")
        categorical = {f.name for f in self.features if f.type is FeatureType.CATEGORICAL}
        unknown_slices = [s for s in self.gates.slice_features if s not in categorical]
        if unknown_slices:
            raise ValueError(
                f"gates.slice_features: {unknown_slices} are not categorical features of this spec "
                f"(categorical: {sorted(categorical)})"
            )
        seasonal = [f.name for f in self.features if f.role is FeatureRole.SEASONAL]
        if seasonal and self.drift.season_days is None:
            raise ValueError(
                f"features {seasonal} have role 'seasonal': set drift.season_days to the season's length "
                "(7 for a weekly pattern), so they are compared with the same period one season earlier"
            )
        if self.data.kind == "production" and not self.timestamp_column:
            raise ValueError("data.kind is 'production': set timestamp_column so windows can be chosen")
        if self.data.order_by is not None and self.timestamp_column:
            raise ValueError(f"data.order_by orders rows without a timestamp, but timestamp_column "
                             f"{self.timestamp_column!r} is set: remove one")
        self._labels_consistent()
        if (self.training.entrypoint or self.training.deployment) and "estimator" in self.model_fields_set:
            raise ValueError("estimator builds Steward's own model, but training names the team's code "
                             "(entrypoint or deployment): remove the estimator section")
        return self

    def _labels_consistent(self) -> None:
        if not self.task.is_classification and (self.positive_label is not None or self.classes is not None):
            raise ValueError("positive_label and classes describe a classifier's target; the task is regression")
        if self.positive_label is not None and self.task is not Task.BINARY_CLASSIFICATION:
            raise ValueError("positive_label names the class a binary model detects; the task is "
                             f"{self.task.value}: remove it")
        from steward.training.labels import label_key  # labels reads the spec; imported here to avoid a cycle

        if self.classes is not None:
            keys = [label_key(c) for c in self.classes]
            if len(set(keys)) != len(keys) or len(keys) < 2:
                raise ValueError(f"classes must list at least two different labels; got {list(self.classes)}")
            if self.task is Task.BINARY_CLASSIFICATION and len(keys) != 2:
                raise ValueError(f"classes: a binary target has two classes; got {list(self.classes)}")
            if self.positive_label is not None and label_key(self.positive_label) not in keys:
                raise ValueError(f"positive_label {self.positive_label!r} is not one of classes "
                                 f"{list(self.classes)}")

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def numeric_features(self) -> list[str]:
        return [feature.name for feature in self.features if feature.is_numeric]

    @property
    def categorical_features(self) -> list[str]:
        return [f.name for f in self.features if f.type in (FeatureType.CATEGORICAL, FeatureType.BOOLEAN)]

    def features_with_role(self, role: FeatureRole) -> list[str]:
        return [f.name for f in self.features if f.role is role]

    @property
    def primary_metric(self) -> str:
        if self.gates.primary_metric:
            return self.gates.primary_metric
        return {
            Task.BINARY_CLASSIFICATION: "roc_auc",
            Task.MULTICLASS_CLASSIFICATION: "f1_macro",
            Task.REGRESSION: "rmse",
        }[self.task]

    def feature(self, name: str) -> Feature:
        for feature in self.features:
            if feature.name == name:
                return feature
        raise KeyError(f"{name!r} is not a feature of model {self.name!r}")

    def schema_fingerprint(self) -> str:
        """Hash of the interface (feature names and types): a change means a major version."""
        interface = [(f.name, f.type.value) for f in sorted(self.features, key=lambda f: f.name)]
        return hashlib.sha256(json.dumps(interface).encode()).hexdigest()[:16]

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


def _describe_errors(error: ValidationError) -> str:
    lines = []
    for detail in error.errors():
        location = ".".join(str(part) for part in detail["loc"]) or "(top level)"
        message = detail["msg"].removeprefix("Value error, ")
        lines.append(f"  - {location}: {message}")
    return "\n".join(lines)


def parse_spec(document: dict[str, Any], *, source: str = "spec") -> ModelSpec:
    if not isinstance(document, dict):
        raise SpecError(f"{source}: expected a mapping of fields at the top level, got {type(document).__name__}")
    try:
        return ModelSpec.model_validate(document)
    except ValidationError as error:
        raise SpecError(f"{source} is not a valid model spec:\n{_describe_errors(error)}") from None


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate a spec file; a relative ``data.path`` is resolved against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"no spec at {path}: pass the path of a YAML spec (`steward init` writes an example)")
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SpecError(f"{path} is not valid YAML: {error}") from None
    if isinstance(document, dict):
        data = document.get("data")
        if isinstance(data, dict) and data.get("path") and "://" not in str(data["path"]):
            data_path = Path(data["path"]).expanduser()
            if not data_path.is_absolute():
                data["path"] = str((path.parent / data_path).resolve())
    return parse_spec(document, source=str(path))
