"""The clean credit-default world: its features, their valid ranges and reference scale, the customer
population and the true label function.

The clean world is stationary: customers (a fixed population, drawn with replacement) do not age,
category mixes do not move and the label function is fixed.  Every change in the data is
therefore an ``Injection`` (``steward.simulation.injections``) from the scenario's timeline.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CALENDAR_FEATURES",
    "CATEGORICAL_FEATURES",
    "CATEGORIES",
    "MAX_EXTRA_NUMERIC",
    "NUMERIC_FEATURES",
    "SEASONAL_FEATURE",
    "TARGET",
    "UNSEEN_CATEGORIES",
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
# Optional columns of a scenario (off by default, so the standard frame is unchanged).  Calendar
# columns are read off the event time and carry no label effect; the seasonal feature follows a
# weekly cycle and has a stable, moderate label effect (standardised, weight SEASONAL_WEIGHT).
CALENDAR_FEATURES: tuple[str, ...] = ("day_of_week", "day_of_month")
SEASONAL_FEATURE = "weekly_activity"
SEASONAL_WEIGHT = 0.3

DAY_NS = 86_400 * 10**9
_EXTRA_RE = re.compile(r"x(\d{2})")
_UNBOUNDED = math.inf

# Valid value range of each clean numeric feature; covariate shifts are clipped to it.
VALID_RANGE: Mapping[str, tuple[float, float]] = {
    "age": (18.0, 90.0),
    "income": (1_000.0, _UNBOUNDED),
    "debt_ratio": (0.0, 3.0),
    "credit_limit": (500.0, _UNBOUNDED),
    "utilization": (0.0, 1.5),
    "months_employed": (0.0, 600.0),
    "num_late_payments": (0.0, 30.0),
    "num_open_accounts": (0.0, 50.0),
}
INTEGER_VALUED = frozenset({"age", "months_employed", "num_late_payments", "num_open_accounts"})
LOG_SCALE = frozenset({"income", "credit_limit"})

# Reference scale of the clean world (measured on a large clean sample, then frozen so the truth
# is a readable formula).  Median/std are on the raw scale (outliers); shift_std is on the scale
# covariate shifts act on (log for income and credit_limit).
REF_MEDIAN: Mapping[str, float] = {
    "age": 42.0,
    "income": 76_800.0,
    "debt_ratio": 0.305,
    "credit_limit": 20_900.0,
    "utilization": 0.369,
    "months_employed": 100.0,
    "num_late_payments": 0.0,
    "num_open_accounts": 4.0,
}
REF_STD: Mapping[str, float] = {
    "age": 15.0,
    "income": 52_000.0,
    "debt_ratio": 0.247,
    "credit_limit": 18_500.0,
    "utilization": 0.261,
    "months_employed": 143.5,
    "num_late_payments": 0.839,
    "num_open_accounts": 2.15,
}
SHIFT_STD: Mapping[str, float] = {**REF_STD, "income": 0.559, "credit_limit": 0.658}
CATEGORY_PRIOR: Mapping[str, tuple[float, ...]] = {
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
MIN_DRIFT_WEIGHT = 0.5


def utc(value: Any, what: str) -> pd.Timestamp:
    """Coerce to a UTC timestamp; naive values are taken to be UTC already."""
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what}: cannot read {value!r} as a timestamp ({exc})") from None
    if ts is pd.NaT:
        raise ValueError(f"{what}: got NaT; give a real timestamp")
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")


def extra_index(name: str) -> int | None:
    match = _EXTRA_RE.fullmatch(name)
    if match is None or int(match.group(1)) == 0:
        return None
    return int(match.group(1))

@dataclass(frozen=True)
class Population:
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


def zigzag(value: int) -> int:
    """Map any int to a non-negative one, as ``SeedSequence`` entropy must be."""
    return 2 * value if value >= 0 else -2 * value - 1


@lru_cache(maxsize=8)
def customer_population(seed: int, size: int) -> Population:
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
    population = Population(
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


def expit(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _transform(name: str, x: np.ndarray) -> np.ndarray:
    """Scale on which a numeric feature acts on the log-odds of default."""
    if name in LOG_SCALE:
        return np.log(np.maximum(x, 1.0))
    if name == "utilization":
        return x + 2.0 * np.maximum(x - 0.9, 0.0)  # over-limit customers are much riskier
    if name == "num_late_payments":
        return np.log1p(np.maximum(x, 0.0))
    if name == "months_employed":
        return np.sqrt(np.maximum(x, 0.0))
    return x


def _term(name: str, x: np.ndarray) -> np.ndarray:
    standardised = extra_index(name) is not None or name == SEASONAL_FEATURE
    z = x if standardised else (_transform(name, x) - _TERM_CENTER[name]) / _TERM_SCALE[name]
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


def base_weight(name: str) -> float:
    if name in CALENDAR_FEATURES:
        return 0.0
    if name == SEASONAL_FEATURE:
        return SEASONAL_WEIGHT
    index = extra_index(name)
    if index is not None:
        return _INFORMATIVE_EXTRA_WEIGHT if index % 2 == 1 and index <= 9 else 0.0
    return _WEIGHT[name]

def default_probability(
    numeric: Mapping[str, np.ndarray],
    codes: Mapping[str, np.ndarray],
    weights: Mapping[str, float | np.ndarray],
    intercept_shift: float | np.ndarray = 0.0,
) -> np.ndarray:
    """True default probability of each row under the given label weights (a scalar, or one per row);
    ``intercept_shift`` moves the log-odds of every row (a base-rate shift)."""
    late, debt = (
        _term("num_late_payments", numeric["num_late_payments"]),
        _term("debt_ratio", numeric["debt_ratio"]),
    )
    logit = _INTERCEPT + _INTERACTION_WEIGHT * late * debt
    if not (isinstance(intercept_shift, float) and intercept_shift == 0.0):
        logit = logit + intercept_shift
    for name, weight in weights.items():
        if isinstance(weight, float) and weight == 0.0:
            continue
        if name in codes:
            term = _category_term_table(name)[codes[name]]
        else:
            term = {"num_late_payments": late, "debt_ratio": debt}.get(name)
            term = _term(name, numeric[name]) if term is None else term
        logit += weight * term
    return expit(logit)


def extra_names(count: int) -> tuple[str, ...]:
    """Names of the extra numeric features x01..xNN."""
    return tuple(f"x{i:02d}" for i in range(1, count + 1))
