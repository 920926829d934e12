"""Seeded drifting-world simulator: a tabular credit-default world with injected problems.

Steward's examples, demos, tests and benchmarks need data where the truth is known: which
problem starts when, and what the real default probability of each row is.  A ``Scenario``
generates that world deterministically from a seed, so a drift detector or retraining policy can
be scored against the injected ground truth.

The clean world is stationary: customers (a fixed population, drawn with replacement) do not age,
category mixes do not move and the label function is fixed.  Every change in the data is
therefore an ``Injection`` from the scenario's timeline.

Order of effects per row: the clean row is drawn, covariate shifts are applied (a real change in
who applies), the label is sampled from the true default probability as of the row's
``event_time`` (concept drift acts here), and only then do data-quality problems (natural
missingness, missing spikes, unseen categories, outliers) corrupt the record.  Corruption
therefore never changes the label.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "NUMERIC_FEATURES",
    "TARGET",
    "UNSEEN_CATEGORIES",
    "DriftKind",
    "Injection",
    "Scenario",
    "credit_default_scenario",
]

TARGET = "default"
NUMERIC_FEATURES: tuple[str, ...] = (
    "age",
    "income",
    "debt_ratio",
    "credit_limit",
    "utilization",
    "months_employed",
    "num_late_payments",
    "num_open_accounts",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("region", "employment_type", "education")
CATEGORIES: Mapping[str, tuple[str, ...]] = {
    "region": ("north", "south", "east", "west"),
    "employment_type": ("salaried", "self_employed", "unemployed", "retired"),
    "education": ("high_school", "bachelor", "master", "doctorate"),
}
UNSEEN_CATEGORIES: Mapping[str, str] = {
    "region": "overseas",
    "employment_type": "contractor",
    "education": "vocational",
}
MAX_EXTRA_NUMERIC = 99

_DAY_NS = 86_400 * 10**9
_EXTRA_RE = re.compile(r"x(\d{2})")
_UNBOUNDED = math.inf

# Valid value range of each clean numeric feature; covariate shifts are clipped to it.
_VALID_RANGE: Mapping[str, tuple[float, float]] = {
    "age": (18.0, 90.0),
    "income": (1_000.0, _UNBOUNDED),
    "debt_ratio": (0.0, 3.0),
    "credit_limit": (500.0, _UNBOUNDED),
    "utilization": (0.0, 1.5),
    "months_employed": (0.0, 600.0),
    "num_late_payments": (0.0, 30.0),
    "num_open_accounts": (0.0, 50.0),
}
_INTEGER_VALUED = frozenset({"age", "months_employed", "num_late_payments", "num_open_accounts"})
_LOG_SCALE = frozenset({"income", "credit_limit"})

# Reference scale of the clean world (measured on a large clean sample, then frozen so the truth
# is a readable formula).  Median/std are on the raw scale (outliers); shift_std is on the scale
# covariate shifts act on (log for income and credit_limit).
_REF_MEDIAN: Mapping[str, float] = {
    "age": 42.0,
    "income": 76_800.0,
    "debt_ratio": 0.305,
    "credit_limit": 20_900.0,
    "utilization": 0.369,
    "months_employed": 100.0,
    "num_late_payments": 0.0,
    "num_open_accounts": 4.0,
}
_REF_STD: Mapping[str, float] = {
    "age": 15.0,
    "income": 52_000.0,
    "debt_ratio": 0.247,
    "credit_limit": 18_500.0,
    "utilization": 0.261,
    "months_employed": 143.5,
    "num_late_payments": 0.839,
    "num_open_accounts": 2.15,
}
_SHIFT_STD: Mapping[str, float] = {**_REF_STD, "income": 0.559, "credit_limit": 0.658}
_CATEGORY_PRIOR: Mapping[str, tuple[float, ...]] = {
    "region": (0.299, 0.271, 0.250, 0.179),
    "employment_type": (0.686, 0.144, 0.071, 0.099),
    "education": (0.380, 0.370, 0.190, 0.060),
}

# True label function: logit = intercept + sum_f w_f * t_f + interaction, where t_f is the
# feature's transformed value standardised to about unit variance (clipped to +-4; a missing
# value or unknown category contributes 0, the population average).
_TERM_CENTER: Mapping[str, float] = {
    "age": 44.8,
    "income": 11.24,
    "debt_ratio": 0.368,
    "credit_limit": 9.938,
    "utilization": 0.428,
    "months_employed": 10.32,
    "num_late_payments": 0.270,
    "num_open_accounts": 3.99,
    "region": 0.0644,
    "employment_type": -0.1205,
    "education": 0.1162,
}
_TERM_SCALE: Mapping[str, float] = {
    "age": 15.0,
    "income": 0.559,
    "debt_ratio": 0.247,
    "credit_limit": 0.658,
    "utilization": 0.291,
    "months_employed": 6.26,
    "num_late_payments": 0.426,
    "num_open_accounts": 2.15,
    "region": 0.377,
    "employment_type": 0.346,
    "education": 0.419,
}
_CATEGORY_EFFECT: Mapping[str, tuple[float, ...]] = {
    "region": (0.0, 0.5, -0.5, 0.3),
    "employment_type": (-0.3, 0.1, 1.0, 0.0),
    "education": (0.6, 0.0, -0.4, -0.6),
}
_WEIGHT: Mapping[str, float] = {
    "utilization": 0.6,
    "num_late_payments": 0.52,
    "debt_ratio": 0.45,
    "income": -0.25,
    "months_employed": -0.18,
    "employment_type": 0.21,
    "education": 0.07,
    "age": -0.07,
    "credit_limit": -0.07,
    "num_open_accounts": 0.07,
    "region": 0.035,
}
_INTERACTION_WEIGHT = 0.2  # num_late_payments x debt_ratio: late payers with high debt are worse
_INTERCEPT = -1.8  # base rate about 20%
_INFORMATIVE_EXTRA_WEIGHT = 0.15  # x01, x03, x05, x07, x09
_MIN_DRIFT_WEIGHT = 0.5


class DriftKind(StrEnum):
    """Kinds of problem a scenario can inject; the value is what reports and logs show."""

    COVARIATE_SHIFT = "covariate_shift"
    CONCEPT_DRIFT = "concept_drift"
    MISSING_SPIKE = "missing_spike"
    UNSEEN_CATEGORY = "unseen_category"
    OUTLIERS = "outliers"


_MAGNITUDE_RULE: Mapping[DriftKind, str] = {
    DriftKind.COVARIATE_SHIFT: "a shift in reference std units, 0 < |magnitude| <= 5 (sign = direction)",
    DriftKind.CONCEPT_DRIFT: "a drift strength in (0, 1] (0.5 cancels a feature's effect, 1 reverses it)",
    DriftKind.MISSING_SPIKE: "a share of rows in (0, 1]",
    DriftKind.UNSEEN_CATEGORY: "a share of rows in (0, 1]",
    DriftKind.OUTLIERS: "a share of rows in (0, 1]",
}


def _utc(value: Any, what: str) -> pd.Timestamp:
    """Coerce to a UTC timestamp; naive values are taken to be UTC already."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: cannot read {value!r} as a timestamp ({exc})") from None
    if ts is pd.NaT:
        raise ValueError(f"{what}: got NaT; give a real timestamp")
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def _extra_index(name: str) -> int | None:
    match = _EXTRA_RE.fullmatch(name)
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1))


def _allowed_features_text() -> str:
    return (
        f"numeric {', '.join(NUMERIC_FEATURES)}; categorical {', '.join(CATEGORICAL_FEATURES)}; "
        f"or extra numeric x01..x{MAX_EXTRA_NUMERIC:02d} (up to the scenario's extra_numeric)"
    )


@dataclass(frozen=True)
class Injection:
    """One problem on the timeline, active for event times in ``[start, end)``.

    ``magnitude`` by kind:

    - COVARIATE_SHIFT: numeric features move by ``magnitude`` reference stds (income and
      credit_limit multiplicatively, on the log scale), clipped to the valid range; a categorical
      feature sends a share ``min(0.25 * |magnitude|, 1)`` of rows to its rarest category
      (region west, employment_type unemployed, education doctorate).  ``0 < |m| <= 5``.
    - CONCEPT_DRIFT: each named feature's label weight ``w`` becomes
      ``w - 2 * m * sign(w) * max(|w|, 0.5)``: 0.5 cancels the effect, 1 reverses it, and
      features without effect gain one.  Inputs are untouched.  ``0 < m <= 1``.
    - MISSING_SPIKE: that share of rows get NaN/None in each named feature.  ``0 < m <= 1``.
    - UNSEEN_CATEGORY: that share of rows get a never-seen category in each named categorical
      feature (see ``UNSEEN_CATEGORIES``).  ``0 < m <= 1``.
    - OUTLIERS: that share of rows get ``median + U(10, 50) * std`` (reference scale) in each named
      numeric feature.  ``0 < m <= 1``.
    """

    kind: DriftKind
    start: pd.Timestamp
    end: pd.Timestamp | None
    features: tuple[str, ...]
    magnitude: float

    def __post_init__(self) -> None:
        try:
            kind = DriftKind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in DriftKind)
            raise ValueError(f"Injection.kind: unknown kind {self.kind!r}; allowed: {allowed}") from None
        object.__setattr__(self, "kind", kind)
        start = _utc(self.start, "Injection.start")
        object.__setattr__(self, "start", start)
        if self.end is not None:
            end = _utc(self.end, "Injection.end")
            if end <= start:
                raise ValueError(
                    f"Injection.end ({end}) must be after start ({start}); use end=None for an "
                    "injection that never ends"
                )
            object.__setattr__(self, "end", end)
        self._check_features(kind)
        self._check_magnitude(kind)

    def _check_features(self, kind: DriftKind) -> None:
        try:
            features = (self.features,) if isinstance(self.features, str) else tuple(self.features)
        except TypeError:
            raise ValueError(
                f"Injection.features: need a tuple of feature names, got {self.features!r}"
            ) from None
        object.__setattr__(self, "features", features)
        if not features:
            raise ValueError(
                f"Injection.features: name at least one feature; allowed: {_allowed_features_text()}"
            )
        if len(set(features)) != len(features):
            raise ValueError(f"Injection.features: duplicate feature names in {features}")
        for name in features:
            numeric = name in NUMERIC_FEATURES or _extra_index(name) is not None
            if not numeric and name not in CATEGORICAL_FEATURES:
                raise ValueError(
                    f"Injection.features: unknown feature {name!r}; allowed: {_allowed_features_text()}"
                )
            if kind is DriftKind.UNSEEN_CATEGORY and numeric:
                raise ValueError(
                    f"Injection.features: {kind} needs categorical features, got numeric {name!r}; "
                    f"allowed: {', '.join(CATEGORICAL_FEATURES)}"
                )
            if kind is DriftKind.OUTLIERS and not numeric:
                raise ValueError(
                    f"Injection.features: {kind} needs numeric features, got categorical {name!r}; "
                    f"allowed: {', '.join(NUMERIC_FEATURES)} or x01..x{MAX_EXTRA_NUMERIC:02d}"
                )

    def _check_magnitude(self, kind: DriftKind) -> None:
        try:
            m = float(self.magnitude)
        except (TypeError, ValueError):
            raise ValueError(f"Injection.magnitude: {self.magnitude!r} is not a number") from None
        limit_ok = math.isfinite(m) and 0 < abs(m) <= 5 if kind is DriftKind.COVARIATE_SHIFT else 0 < m <= 1
        if not limit_ok:
            raise ValueError(
                f"Injection.magnitude: {self.magnitude!r} is out of range for {kind}; it is {_MAGNITUDE_RULE[kind]}"
            )
        object.__setattr__(self, "magnitude", m)

    def active_at(self, at: pd.Timestamp) -> bool:
        """Whether the injection affects rows with event time ``at``."""
        at = _utc(at, "at")
        return self.start <= at and (self.end is None or at < self.end)

    def _mask(self, times_ns: np.ndarray) -> np.ndarray:
        mask = times_ns >= self.start.value
        if self.end is not None:
            mask &= times_ns < self.end.value
        return mask

    def _key(self) -> int:
        """Stable across processes (unlike ``hash``) so each injection has its own random stream."""
        text = f"{self.kind}|{self.start.value}|{self.end}|{','.join(self.features)}|{self.magnitude!r}"
        return zlib.crc32(text.encode())


@dataclass(frozen=True)
class _Population:
    """Static per-customer attributes; rows draw customers from it with replacement."""

    ids: np.ndarray
    age: np.ndarray
    region: np.ndarray
    employment: np.ndarray
    education: np.ndarray
    log_income: np.ndarray
    risk: np.ndarray
    credit_limit: np.ndarray
    months_employed: np.ndarray
    open_rate: np.ndarray


def _zigzag(value: int) -> int:
    """Map any int to a non-negative one, as ``SeedSequence`` entropy must be."""
    return 2 * value if value >= 0 else -2 * value - 1


@lru_cache(maxsize=8)
def _population(seed: int, size: int) -> _Population:
    rng = np.random.default_rng(np.random.SeedSequence([seed, 3, size]))
    age = np.minimum(np.round(18 + rng.gamma(3.0, 9.0, size)), 90.0)
    region = rng.choice(4, size=size, p=[0.30, 0.27, 0.25, 0.18])
    education = rng.choice(4, size=size, p=[0.38, 0.37, 0.19, 0.06])
    working = rng.choice(4, size=size, p=[0.74, 0.16, 0.08, 0.02])
    retired_by_age = rng.random(size) < 0.85
    employment = np.where((age >= 67) & retired_by_age, 3, np.where(age >= 67, 0, working))
    unemployed = employment == 2
    retired = employment == 3
    log_income = (
        10.75
        + 0.22 * education
        + 0.015 * (np.minimum(age, 55) - 18)
        - 0.8 * unemployed
        - 0.35 * retired
        + 0.1 * (employment == 1)
        + rng.normal(0.0, 0.45, size)
    )
    risk = rng.normal(0.0, 1.0, size) - 0.15 * (education - 1) + 0.4 * unemployed
    credit_limit = np.maximum(np.round(np.exp(log_income - 1.3 + rng.normal(0.0, 0.35, size)), -2), 500.0)
    career = np.minimum((age - 18) * 12, 600)
    months = np.where(
        unemployed,
        0.0,
        np.round(career * np.where(retired, rng.uniform(0.5, 1.0, size), rng.random(size) ** 1.25)),
    )
    open_rate = np.exp(1.3 + 0.25 * (log_income - 11.0) + 0.15 * risk)
    ids = np.array([f"cust-{i:06d}" for i in range(size)], dtype=object)
    population = _Population(
        ids=ids,
        age=age,
        region=region,
        employment=employment,
        education=education,
        log_income=log_income,
        risk=risk,
        credit_limit=credit_limit,
        months_employed=months,
        open_rate=open_rate,
    )
    for array in vars(population).values():
        array.flags.writeable = False
    return population


def _expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _transform(name: str, x: np.ndarray) -> np.ndarray:
    """Scale on which a numeric feature acts on the log-odds of default."""
    if name in _LOG_SCALE:
        return np.log(np.maximum(x, 1.0))
    if name == "utilization":
        return x + 2.0 * np.maximum(x - 0.9, 0.0)  # over-limit customers are much riskier
    if name == "num_late_payments":
        return np.log1p(np.maximum(x, 0.0))
    if name == "months_employed":
        return np.sqrt(np.maximum(x, 0.0))
    return x


def _term(name: str, x: np.ndarray) -> np.ndarray:
    if _extra_index(name) is not None:
        z = x
    else:
        z = (_transform(name, x) - _TERM_CENTER[name]) / _TERM_SCALE[name]
    z = np.clip(z, -4.0, 4.0)
    z[np.isnan(z)] = 0.0
    return z


@cache
def _category_term_table(name: str) -> np.ndarray:
    """Standardised category effects, plus a trailing 0 for unseen (code k) and missing (code -1)."""
    effects = (np.asarray(_CATEGORY_EFFECT[name]) - _TERM_CENTER[name]) / _TERM_SCALE[name]
    table = np.append(effects, 0.0)
    table.flags.writeable = False
    return table


def _base_weight(name: str) -> float:
    index = _extra_index(name)
    if index is not None:
        return _INFORMATIVE_EXTRA_WEIGHT if index % 2 == 1 and index <= 9 else 0.0
    return _WEIGHT[name]


def _probability(
    numeric: Mapping[str, np.ndarray],
    codes: Mapping[str, np.ndarray],
    times_ns: np.ndarray,
    injections: Iterable[Injection],
) -> np.ndarray:
    """True default probability of each row as of its time; see ``Scenario.true_default_probability``."""
    weights: dict[str, float | np.ndarray] = {name: _base_weight(name) for name in (*numeric, *codes)}
    drifts = sorted((i for i in injections if i.kind is DriftKind.CONCEPT_DRIFT), key=lambda i: i.start)
    for injection in drifts:
        mask = injection._mask(times_ns)
        if not mask.any():
            continue
        for name in injection.features:
            current = np.broadcast_to(np.asarray(weights[name], dtype=float), times_ns.shape)
            sign = np.where(current >= 0, 1.0, -1.0)
            drifted = current - 2.0 * injection.magnitude * sign * np.maximum(
                np.abs(current), _MIN_DRIFT_WEIGHT
            )
            weights[name] = np.where(mask, drifted, current)
    late, debt = (
        _term("num_late_payments", numeric["num_late_payments"]),
        _term("debt_ratio", numeric["debt_ratio"]),
    )
    logit = _INTERCEPT + _INTERACTION_WEIGHT * late * debt
    for name, weight in weights.items():
        if isinstance(weight, float) and weight == 0.0:
            continue
        if name in codes:
            term = _category_term_table(name)[codes[name]]
        else:
            term = {"num_late_payments": late, "debt_ratio": debt}.get(name)
            term = _term(name, numeric[name]) if term is None else term
        logit += weight * term
    return _expit(logit)


def _extra_names(count: int) -> tuple[str, ...]:
    return tuple(f"x{i:02d}" for i in range(1, count + 1))


@dataclass(frozen=True)
class Scenario:
    """A deterministic credit-default world plus a timeline of injected problems.

    Day ``d`` covers ``[start + d days, start + (d + 1) days)`` and is generated from its own
    seed ``(seed, d)``, so any range is the concatenation of its days and identical calls give
    identical frames.  All numeric features are float64 (integer-valued ones too) so that the
    schema does not change when an injection adds NaN.
    """

    seed: int = 7
    start: pd.Timestamp = pd.Timestamp("2026-01-01", tz="UTC")
    rows_per_day: int = 2000
    population: int = 50_000
    label_delay: pd.Timedelta = pd.Timedelta(days=3)
    extra_numeric: int = 0
    injections: tuple[Injection, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"Scenario.seed: need a non-negative int, got {self.seed!r}")
        object.__setattr__(self, "start", _utc(self.start, "Scenario.start"))
        for name in ("rows_per_day", "population"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise ValueError(f"Scenario.{name}: need an int >= 1, got {value!r}")
        try:
            delay = pd.Timedelta(self.label_delay)
        except (TypeError, ValueError):
            delay = pd.NaT
        if delay is pd.NaT or delay < pd.Timedelta(0):
            raise ValueError(f"Scenario.label_delay: need a duration >= 0, got {self.label_delay!r}")
        object.__setattr__(self, "label_delay", delay)
        extra = self.extra_numeric
        if (
            isinstance(extra, bool)
            or not isinstance(extra, int | np.integer)
            or not 0 <= extra <= MAX_EXTRA_NUMERIC
        ):
            raise ValueError(f"Scenario.extra_numeric: need an int in 0..{MAX_EXTRA_NUMERIC}, got {extra!r}")
        injections = tuple(self.injections)
        for injection in injections:
            if not isinstance(injection, Injection):
                raise ValueError(f"Scenario.injections: expected Injection objects, got {injection!r}")
            for name in injection.features:
                index = _extra_index(name)
                if index is not None and index > extra:
                    raise ValueError(
                        f"Scenario.injections: {injection.kind} names {name!r} but the scenario has "
                        f"extra_numeric={extra} (x01..x{extra:02d}); raise extra_numeric or drop the feature"
                    )
        object.__setattr__(self, "injections", injections)

    @property
    def numeric_features(self) -> list[str]:
        return [*NUMERIC_FEATURES, *_extra_names(self.extra_numeric)]

    @property
    def categorical_features(self) -> list[str]:
        return list(CATEGORICAL_FEATURES)

    @property
    def feature_names(self) -> list[str]:
        """Model inputs in frame order: base numeric, categorical, then x01..xNN."""
        return [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, *_extra_names(self.extra_numeric)]

    @property
    def target(self) -> str:
        return TARGET

    def timeline(self) -> list[Injection]:
        """The ground truth: every injection, sorted by start."""
        return sorted(self.injections, key=lambda i: (i.start, i.kind.value))

    def active_injections(self, at: pd.Timestamp | str) -> list[Injection]:
        """Injections affecting rows with event time ``at``, sorted by start."""
        at = _utc(at, "at")
        return [i for i in self.timeline() if i.active_at(at)]

    def day_index(self, at: pd.Timestamp | str) -> int:
        """Index of the scenario day containing ``at`` (negative before ``start``)."""
        return (_utc(at, "at").value - self.start.value) // _DAY_NS

    def day(self, d: int | pd.Timestamp | str) -> pd.DataFrame:
        """All ``rows_per_day`` rows of day ``d`` (an index from ``start``, or a time inside the day)."""
        index = int(d) if isinstance(d, int | np.integer) else self.day_index(d)
        entropy = [self.seed, 0, _zigzag(index)]
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        offsets = np.sort(rng.integers(0, _DAY_NS, self.rows_per_day))
        times = self.start.value + index * _DAY_NS + offsets
        return self._simulate(rng, entropy, times)

    def generate(self, start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
        """Rows with ``event_time`` in ``[start, end)``, sorted by time; same as concatenating days."""
        start, end = _utc(start, "start"), _utc(end, "end")
        first = self.day_index(start)
        if end <= start:
            return self.day(first).iloc[:0].reset_index(drop=True)
        last = (end.value - 1 - self.start.value) // _DAY_NS
        frames = []
        for index in range(first, last + 1):
            frame = self.day(index)
            if index in (first, last):
                times = frame["event_time"]
                frame = frame[(times >= start) & (times < end)]
            frames.append(frame)
        return pd.concat(frames, ignore_index=True)

    def generate_rows(self, n_rows: int, at: pd.Timestamp | str | None = None) -> pd.DataFrame:
        """Exactly ``n_rows`` rows of the world as of ``at`` (default ``start``), all stamped ``at``.

        Meant for benchmarks and for reference/current pairs; the random stream depends on
        ``(seed, n_rows, at)``, so two different ``at`` values give independent samples.
        """
        if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 0:
            raise ValueError(f"n_rows: need an int >= 0, got {n_rows!r}")
        at = self.start if at is None else _utc(at, "at")
        entropy = [self.seed, 2, int(n_rows), _zigzag(at.value)]
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        return self._simulate(rng, entropy, np.full(int(n_rows), at.value, dtype=np.int64))

    def true_default_probability(
        self, frame: pd.DataFrame, at: pd.Timestamp | str | None = None
    ) -> np.ndarray:
        """The true P(default) of each row under this scenario's label function as of ``at``.

        With ``at=None`` each row is scored as of its own ``event_time``, which is exactly the
        probability its label was drawn from, except in cells a data-quality problem corrupted:
        a missing value or unseen category counts as the population average and an outlier is
        clipped to +-4 reference stds.
        """
        missing = [c for c in self.feature_names if c not in frame.columns]
        if missing:
            raise ValueError(f"true_default_probability: frame lacks feature columns {missing}")
        if at is None:
            if "event_time" not in frame.columns:
                raise ValueError("true_default_probability: give `at` or a frame with an event_time column")
            times = (
                pd.to_datetime(frame["event_time"], utc=True).to_numpy(dtype="datetime64[ns]").view(np.int64)
            )
        else:
            times = np.full(len(frame), _utc(at, "at").value, dtype=np.int64)
        numeric = {
            n: pd.to_numeric(frame[n], errors="coerce").to_numpy(dtype=float) for n in self.numeric_features
        }
        codes = {
            n: pd.Categorical(frame[n], categories=list(CATEGORIES[n])).codes.astype(np.int64)
            for n in CATEGORICAL_FEATURES
        }
        return _probability(numeric, codes, times, self.injections)

    def _simulate(self, rng: np.random.Generator, entropy: list[int], times: np.ndarray) -> pd.DataFrame:
        n = len(times)
        extra_names = _extra_names(self.extra_numeric)
        float_names = (*NUMERIC_FEATURES, *extra_names)
        # One float64 block in frame order, so 1M x 50 rows are built without per-column copies.
        block = np.empty((len(float_names), n))
        extra_rows = list(block[len(NUMERIC_FEATURES) :])
        pop = _population(self.seed, self.population)
        who = rng.integers(0, self.population, n)
        risk = pop.risk[who]
        numeric: dict[str, np.ndarray] = {
            "age": pop.age[who],
            "income": np.round(np.exp(pop.log_income[who] + rng.normal(0.0, 0.05, n)), -1),
            "debt_ratio": np.clip(np.exp(-1.2 + 0.35 * risk + rng.normal(0.0, 0.5, n)), 0.0, 3.0),
            "credit_limit": pop.credit_limit[who],
            "utilization": np.clip(1.25 * _expit(-0.9 + 0.8 * risk + rng.normal(0.0, 0.8, n)), 0.0, 1.5),
            "months_employed": pop.months_employed[who],
        }
        late_rate = np.exp(-1.2 + 0.6 * risk + 1.2 * (numeric["utilization"] - 0.4))
        numeric["num_late_payments"] = np.minimum(rng.poisson(late_rate), 30).astype(float)
        numeric["num_open_accounts"] = np.minimum(rng.poisson(pop.open_rate[who]), 50).astype(float)
        if extra_rows:
            rng.standard_normal(out=block[len(NUMERIC_FEATURES) :])
        numeric.update(zip(extra_names, extra_rows, strict=True))
        codes = {
            "region": pop.region[who],
            "employment_type": pop.employment[who],
            "education": pop.education[who],
        }
        label_u = rng.random(n)
        jitter = rng.uniform(0.75, 1.25, n)
        natural_missing = {"income": rng.random(n) < 0.01, "months_employed": rng.random(n) < 0.02}

        active = [(i, i._mask(times)) for i in self.timeline()]
        active = [(i, mask) for i, mask in active if mask.any()]

        def stream(injection: Injection) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence([*entropy, 100, injection._key()]))

        for injection, mask in active:
            if injection.kind is DriftKind.COVARIATE_SHIFT:
                _shift(numeric, codes, injection, mask, stream(injection))
        labels = (label_u < _probability(numeric, codes, times, self.injections)).astype(np.int64)

        for name, hit in natural_missing.items():
            numeric[name] = np.where(hit, np.nan, numeric[name])
        for injection, mask in active:
            _corrupt(numeric, codes, injection, mask, stream(injection))

        for row, name in enumerate(float_names):
            if row < len(NUMERIC_FEATURES) or numeric[name] is not extra_rows[row - len(NUMERIC_FEATURES)]:
                block[row] = numeric[name]
        frame = pd.DataFrame(block.T, columns=list(float_names), copy=False)
        frame.insert(0, "entity_id", pop.ids[who])
        frame.insert(1, "event_time", pd.to_datetime(times, unit="ns", utc=True))
        for position, name in enumerate(CATEGORICAL_FEATURES, start=2 + len(NUMERIC_FEATURES)):
            lookup = np.array([*CATEGORIES[name], UNSEEN_CATEGORIES[name], None], dtype=object)
            frame.insert(position, name, lookup[codes[name]])
        frame[TARGET] = labels
        delay = (self.label_delay.value * jitter).astype(np.int64)
        frame["label_available_at"] = pd.to_datetime(times + delay, unit="ns", utc=True)
        return frame


def _shift(
    numeric: dict[str, np.ndarray],
    codes: dict[str, np.ndarray],
    injection: Injection,
    mask: np.ndarray,
    rng: np.random.Generator,
) -> None:
    m = injection.magnitude
    for name in injection.features:
        if name in codes:
            target = int(np.argmin(_CATEGORY_PRIOR[name]))
            move = mask & (rng.random(len(mask)) < min(0.25 * abs(m), 1.0))
            codes[name] = np.where(move, target, codes[name])
            continue
        x = numeric[name]
        if name in _LOG_SCALE:
            shifted = x * math.exp(m * _SHIFT_STD[name])
        else:
            shifted = x + m * _SHIFT_STD.get(name, 1.0)
        if name in _VALID_RANGE:
            low, high = _VALID_RANGE[name]
            shifted = np.clip(shifted, low, high)
        if name in _INTEGER_VALUED:
            shifted = np.round(shifted)
        numeric[name] = np.where(mask, shifted, x)


def _corrupt(
    numeric: dict[str, np.ndarray],
    codes: dict[str, np.ndarray],
    injection: Injection,
    mask: np.ndarray,
    rng: np.random.Generator,
) -> None:
    kind = injection.kind
    if kind not in (DriftKind.MISSING_SPIKE, DriftKind.UNSEEN_CATEGORY, DriftKind.OUTLIERS):
        return
    n = len(mask)
    for name in injection.features:
        hit = mask & (rng.random(n) < injection.magnitude)
        if kind is DriftKind.MISSING_SPIKE and name in codes:
            codes[name] = np.where(hit, -1, codes[name])
        elif kind is DriftKind.MISSING_SPIKE:
            numeric[name] = np.where(hit, np.nan, numeric[name])
        elif kind is DriftKind.UNSEEN_CATEGORY:
            codes[name] = np.where(hit, len(CATEGORIES[name]), codes[name])
        else:
            median, std = _REF_MEDIAN.get(name, 0.0), _REF_STD.get(name, 1.0)
            extreme = median + rng.uniform(10.0, 50.0, n) * std
            if name in _INTEGER_VALUED:
                extreme = np.round(extreme)
            numeric[name] = np.where(hit, extreme, numeric[name])


def credit_default_scenario(**overrides: Any) -> Scenario:
    """The standard credit-default world; keyword arguments override ``Scenario`` fields."""
    return Scenario(**overrides)
