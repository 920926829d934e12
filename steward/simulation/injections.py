"""Problems a scenario injects on its timeline: covariate shift, concept drift and base-rate shift
(real changes in the world), missing spikes, unseen categories and outliers (data-quality problems
of the record), and traffic drops (days with few rows).  Any of them can ramp in gradually."""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import pandas as pd

from steward.simulation.world import (
    CATEGORICAL_FEATURES,
    CATEGORIES,
    CATEGORY_PRIOR,
    INTEGER_VALUED,
    LOG_SCALE,
    MAX_EXTRA_NUMERIC,
    MIN_DRIFT_WEIGHT,
    NUMERIC_FEATURES,
    REF_MEDIAN,
    REF_STD,
    SHIFT_STD,
    VALID_RANGE,
    base_weight,
    extra_index,
    utc,
)

__all__ = ["DriftKind", "Injection"]


class DriftKind(StrEnum):
    """Kinds of problem a scenario can inject; the value is what reports and logs show."""

    COVARIATE_SHIFT = "covariate_shift"
    CONCEPT_DRIFT = "concept_drift"
    MISSING_SPIKE = "missing_spike"
    UNSEEN_CATEGORY = "unseen_category"
    OUTLIERS = "outliers"
    BASE_RATE_SHIFT = "base_rate_shift"
    TRAFFIC_DROP = "traffic_drop"


# Kinds that act on the whole world, so they name no feature.
WORLD_KINDS = frozenset({DriftKind.BASE_RATE_SHIFT, DriftKind.TRAFFIC_DROP})

_MAGNITUDE_RULE: Mapping[DriftKind, str] = {
    DriftKind.COVARIATE_SHIFT: "a shift in reference std units, 0 < |magnitude| <= 5 (sign = direction)",
    DriftKind.CONCEPT_DRIFT: "a drift strength in (0, 1] (0.5 cancels a feature's effect, 1 reverses it)",
    DriftKind.MISSING_SPIKE: "a share of rows in (0, 1]",
    DriftKind.UNSEEN_CATEGORY: "a share of rows in (0, 1]",
    DriftKind.OUTLIERS: "a share of rows in (0, 1]",
    DriftKind.BASE_RATE_SHIFT: "a shift of every row's log-odds, 0 < |magnitude| <= 5 (sign = direction)",
    DriftKind.TRAFFIC_DROP: "a share of rows dropped in (0, 1)",
}

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
    - BASE_RATE_SHIFT: every row's true log-odds of default moves by ``magnitude``: the ranking of
      rows is kept (ROC AUC holds) but a fixed decision threshold no longer fits.  No features.
    - TRAFFIC_DROP: that share of each day's rows never arrives.  No features.  ``0 < m < 1``.

    ``ramp`` (optional) makes the injection gradual: its magnitude grows linearly from 0 at
    ``start`` to full at ``start + ramp`` (a share or a strength, whichever the kind uses).
    """

    kind: DriftKind
    start: pd.Timestamp
    end: pd.Timestamp | None
    features: tuple[str, ...]
    magnitude: float
    ramp: pd.Timedelta | None = None

    def __post_init__(self) -> None:
        try:
            kind = DriftKind(self.kind)
        except ValueError:
            allowed = ", ".join(k.value for k in DriftKind)
            raise ValueError(f"Injection.kind: unknown kind {self.kind!r}; allowed: {allowed}") from None
        object.__setattr__(self, "kind", kind)
        start = utc(self.start, "Injection.start")
        object.__setattr__(self, "start", start)
        if self.end is not None:
            end = utc(self.end, "Injection.end")
            if end <= start:
                raise ValueError(
                    f"Injection.end ({end}) must be after start ({start}); use end=None for an "
                    "injection that never ends"
                )
            object.__setattr__(self, "end", end)
        if self.ramp is not None:
            try:
                ramp = pd.Timedelta(self.ramp)
            except (TypeError, ValueError):
                ramp = pd.NaT
            if ramp is pd.NaT or ramp <= pd.Timedelta(0):
                raise ValueError(
                    f"Injection.ramp: need a duration > 0 (e.g. pd.Timedelta(days=14)), got {self.ramp!r}; "
                    "use ramp=None for a sudden change"
                )
            object.__setattr__(self, "ramp", ramp)
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
        if kind in WORLD_KINDS:
            if features:
                raise ValueError(
                    f"Injection.features: {kind} acts on the whole world and names no feature; give features=()"
                )
            return
        if not features:
            raise ValueError(
                f"Injection.features: name at least one feature; allowed: {_allowed_features_text()}"
            )
        if len(set(features)) != len(features):
            raise ValueError(f"Injection.features: duplicate feature names in {features}")
        for name in features:
            numeric = name in NUMERIC_FEATURES or extra_index(name) is not None
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
        if kind in (DriftKind.COVARIATE_SHIFT, DriftKind.BASE_RATE_SHIFT):
            limit_ok = math.isfinite(m) and 0 < abs(m) <= 5
        elif kind is DriftKind.TRAFFIC_DROP:
            limit_ok = 0 < m < 1
        else:
            limit_ok = 0 < m <= 1
        if not limit_ok:
            raise ValueError(
                f"Injection.magnitude: {self.magnitude!r} is out of range for {kind}; it is {_MAGNITUDE_RULE[kind]}"
            )
        object.__setattr__(self, "magnitude", m)

    def active_at(self, at: pd.Timestamp) -> bool:
        """Whether the injection affects rows with event time ``at``."""
        at = utc(at, "at")
        return self.start <= at and (self.end is None or at < self.end)

    def window_mask(self, times_ns: np.ndarray) -> np.ndarray:
        """Which rows, by event time in nanoseconds, fall in the injection's window."""
        mask = times_ns >= self.start.value
        if self.end is not None:
            mask &= times_ns < self.end.value
        return mask

    def strength(self, times_ns: np.ndarray) -> float | np.ndarray:
        """The magnitude acting on rows at ``times_ns`` (inside the window): the full magnitude, or
        for a ramped injection, its linear share of it; a plain float when it does not ramp."""
        if self.ramp is None:
            return self.magnitude
        share = (times_ns - self.start.value) / self.ramp.value
        return self.magnitude * np.clip(share, 0.0, 1.0)

    def stream_key(self) -> int:
        """Stable across processes (unlike ``hash``) so each injection has its own random stream."""
        text = f"{self.kind}|{self.start.value}|{self.end}|{','.join(self.features)}|{self.magnitude!r}"
        if self.ramp is not None:
            text += f"|ramp={self.ramp.value}"
        return zlib.crc32(text.encode())

def label_weights(
    names: Iterable[str], times_ns: np.ndarray, injections: Iterable[Injection]
) -> dict[str, float | np.ndarray]:
    """Each feature's weight in the label function: the clean world's, moved per row by the concept
    drifts active at the row's time, applied in order of start."""
    weights: dict[str, float | np.ndarray] = {name: base_weight(name) for name in names}
    drifts = sorted((i for i in injections if i.kind is DriftKind.CONCEPT_DRIFT), key=lambda i: i.start)
    for injection in drifts:
        mask = injection.window_mask(times_ns)
        if not mask.any():
            continue
        for name in injection.features:
            current = np.broadcast_to(np.asarray(weights[name], dtype=float), times_ns.shape)
            sign = np.where(current >= 0, 1.0, -1.0)
            drifted = current - 2.0 * injection.strength(times_ns) * sign * np.maximum(
                np.abs(current), MIN_DRIFT_WEIGHT
            )
            weights[name] = np.where(mask, drifted, current)
    return weights


def intercept_shift(times_ns: np.ndarray, injections: Iterable[Injection]) -> float | np.ndarray:
    """The base-rate shifts active at each row's time, summed on the log-odds scale (0.0 if none)."""
    total: float | np.ndarray = 0.0
    for injection in injections:
        if injection.kind is not DriftKind.BASE_RATE_SHIFT:
            continue
        mask = injection.window_mask(times_ns)
        if mask.any():
            total = total + np.where(mask, injection.strength(times_ns), 0.0)
    return total


def shift(
    numeric: dict[str, np.ndarray],
    codes: dict[str, np.ndarray],
    injection: Injection,
    mask: np.ndarray,
    rng: np.random.Generator,
    times_ns: np.ndarray,
) -> None:
    """Move the rows in ``mask`` (a real change in who applies, so it comes before the label)."""
    m = injection.strength(times_ns)
    for name in injection.features:
        if name in codes:
            target = int(np.argmin(CATEGORY_PRIOR[name]))
            move = mask & (rng.random(len(mask)) < np.minimum(0.25 * np.abs(m), 1.0))
            codes[name] = np.where(move, target, codes[name])
            continue
        x = numeric[name]
        if name in LOG_SCALE:
            factor = math.exp(m * SHIFT_STD[name]) if isinstance(m, float) else np.exp(m * SHIFT_STD[name])
            shifted = x * factor
        else:
            shifted = x + m * SHIFT_STD.get(name, 1.0)
        if name in VALID_RANGE:
            low, high = VALID_RANGE[name]
            shifted = np.clip(shifted, low, high)
        if name in INTEGER_VALUED:
            shifted = np.round(shifted)
        numeric[name] = np.where(mask, shifted, x)


def corrupt(
    numeric: dict[str, np.ndarray],
    codes: dict[str, np.ndarray],
    injection: Injection,
    mask: np.ndarray,
    rng: np.random.Generator,
    times_ns: np.ndarray,
) -> None:
    """Corrupt the record of the rows in ``mask`` after the label is drawn, so the label never changes."""
    kind = injection.kind
    if kind not in (DriftKind.MISSING_SPIKE, DriftKind.UNSEEN_CATEGORY, DriftKind.OUTLIERS):
        return
    n = len(mask)
    share = injection.strength(times_ns)
    for name in injection.features:
        hit = mask & (rng.random(n) < share)
        if kind is DriftKind.MISSING_SPIKE and name in codes:
            codes[name] = np.where(hit, -1, codes[name])
        elif kind is DriftKind.MISSING_SPIKE:
            numeric[name] = np.where(hit, np.nan, numeric[name])
        elif kind is DriftKind.UNSEEN_CATEGORY:
            codes[name] = np.where(hit, len(CATEGORIES[name]), codes[name])
        else:
            median, std = REF_MEDIAN.get(name, 0.0), REF_STD.get(name, 1.0)
            extreme = median + rng.uniform(10.0, 50.0, n) * std
            if name in INTEGER_VALUED:
                extreme = np.round(extreme)
            numeric[name] = np.where(hit, extreme, numeric[name])


def dropped_rows(injection: Injection, mask: np.ndarray, rng: np.random.Generator, times_ns: np.ndarray) -> np.ndarray:
    """Which rows in ``mask`` a traffic drop removes (each with probability its share)."""
    return mask & (rng.random(len(mask)) < injection.strength(times_ns))
