"""Seeded drifting-world simulator: a tabular credit-default world with injected problems.

Steward's examples, demos, tests and benchmarks need data where the truth is known: which
problem starts when, and what the real default probability of each row is.  A ``Scenario``
generates that world (``steward.simulation.world``) deterministically from a seed, with the
problems of its timeline (``steward.simulation.injections``), so a drift detector or retraining
policy can be scored against the injected ground truth.

Order of effects per row: the clean row is drawn, covariate shifts are applied (a real change in
who applies), the label is sampled from the true default probability as of the row's
``event_time`` (concept drift acts here), and only then do data-quality problems (natural
missingness, missing spikes, unseen categories, outliers) corrupt the record.  Corruption
therefore never changes the label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from steward.simulation.injections import (
    DriftKind,
    Injection,
    corrupt,
    dropped_rows,
    intercept_shift,
    label_weights,
    shift,
)
from steward.simulation.world import (
    CALENDAR_FEATURES,
    CATEGORICAL_FEATURES,
    CATEGORIES,
    DAY_NS,
    MAX_EXTRA_NUMERIC,
    NUMERIC_FEATURES,
    SEASONAL_FEATURE,
    TARGET,
    UNSEEN_CATEGORIES,
    customer_population,
    default_probability,
    expit,
    extra_index,
    extra_names,
    utc,
    zigzag,
)

__all__ = ["Scenario", "credit_default_scenario"]


def _true_probability(
    numeric: Mapping[str, np.ndarray],
    codes: Mapping[str, np.ndarray],
    times_ns: np.ndarray,
    injections: Iterable[Injection],
) -> np.ndarray:
    """True default probability of each row as of its time; see ``Scenario.true_default_probability``."""
    injections = tuple(injections)
    weights = label_weights((*numeric, *codes), times_ns, injections)
    return default_probability(numeric, codes, weights, intercept_shift(times_ns, injections))


@dataclass(frozen=True)
class Scenario:
    """A deterministic credit-default world plus a timeline of injected problems.

    Day ``d`` covers ``[start + d days, start + (d + 1) days)`` and is generated from its own
    seed ``(seed, d)``, so any range is the concatenation of its days and identical calls give
    identical frames.  All numeric features are float64 (integer-valued ones too) so that the
    schema does not change when an injection adds NaN.

    Optional columns (off by default, so the standard frame is unchanged): ``calendar_features``
    adds ``day_of_week`` (0 = Monday) and ``day_of_month`` read off the event time, whose
    distribution in a day's window moves by construction and which carry no label effect;
    ``weekly_cycle > 0`` adds ``weekly_activity``, a standardised feature whose mean follows a
    weekly cosine of that amplitude (in its own stds; highest on Saturdays) and whose stable label
    effect makes the default rate cycle with it.
    """

    seed: int = 7
    start: pd.Timestamp = pd.Timestamp("2026-01-01", tz="UTC")
    rows_per_day: int = 2000
    population: int = 50_000
    label_delay: pd.Timedelta = pd.Timedelta(days=3)
    extra_numeric: int = 0
    injections: tuple[Injection, ...] = field(default=())
    calendar_features: bool = False
    weekly_cycle: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer) or self.seed < 0:
            raise ValueError(f"Scenario.seed: need a non-negative int, got {self.seed!r}")
        object.__setattr__(self, "start", utc(self.start, "Scenario.start"))
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
                index = extra_index(name)
                if index is not None and index > extra:
                    raise ValueError(
                        f"Scenario.injections: {injection.kind} names {name!r} but the scenario has "
                        f"extra_numeric={extra} (x01..x{extra:02d}); raise extra_numeric or drop the feature"
                    )
        object.__setattr__(self, "injections", injections)
        if not isinstance(self.calendar_features, bool):
            raise ValueError(f"Scenario.calendar_features: need True or False, got {self.calendar_features!r}")
        try:
            cycle = float(self.weekly_cycle)
        except (TypeError, ValueError):
            cycle = float("nan")
        if not 0.0 <= cycle <= 5.0:
            raise ValueError(
                f"Scenario.weekly_cycle: need an amplitude in 0..5 stds (0 = no seasonal feature), got {self.weekly_cycle!r}"
            )
        object.__setattr__(self, "weekly_cycle", cycle)

    @property
    def optional_features(self) -> list[str]:
        """The optional numeric columns this scenario adds, in frame order."""
        seasonal = [SEASONAL_FEATURE] if self.weekly_cycle > 0 else []
        return [*(CALENDAR_FEATURES if self.calendar_features else ()), *seasonal]

    @property
    def calendar_columns(self) -> list[str]:
        """Columns whose distribution moves by construction (read off the clock)."""
        return list(CALENDAR_FEATURES) if self.calendar_features else []

    @property
    def seasonal_columns(self) -> list[str]:
        """Columns with a weekly cycle (compare them with the same weekday, not yesterday)."""
        return [SEASONAL_FEATURE] if self.weekly_cycle > 0 else []

    @property
    def numeric_features(self) -> list[str]:
        return [*NUMERIC_FEATURES, *extra_names(self.extra_numeric), *self.optional_features]

    @property
    def categorical_features(self) -> list[str]:
        return list(CATEGORICAL_FEATURES)

    @property
    def feature_names(self) -> list[str]:
        """Model inputs in frame order: base numeric, categorical, x01..xNN, then the optional columns."""
        return [*NUMERIC_FEATURES, *CATEGORICAL_FEATURES, *extra_names(self.extra_numeric), *self.optional_features]

    @property
    def target(self) -> str:
        return TARGET

    def timeline(self) -> list[Injection]:
        """The ground truth: every injection, sorted by start."""
        return sorted(self.injections, key=lambda i: (i.start, i.kind.value))

    def active_injections(self, at: pd.Timestamp | str) -> list[Injection]:
        """Injections affecting rows with event time ``at``, sorted by start."""
        at = utc(at, "at")
        return [i for i in self.timeline() if i.active_at(at)]

    def day_index(self, at: pd.Timestamp | str) -> int:
        """Index of the scenario day containing ``at`` (negative before ``start``)."""
        return (utc(at, "at").value - self.start.value) // DAY_NS

    def day(self, d: int | pd.Timestamp | str) -> pd.DataFrame:
        """All ``rows_per_day`` rows of day ``d`` (an index from ``start``, or a time inside the day)."""
        index = int(d) if isinstance(d, int | np.integer) else self.day_index(d)
        entropy = [self.seed, 0, zigzag(index)]
        rng = np.random.default_rng(np.random.SeedSequence(entropy))
        offsets = np.sort(rng.integers(0, DAY_NS, self.rows_per_day))
        times = self.start.value + index * DAY_NS + offsets
        frame = self._simulate(rng, entropy, times)
        drops = [i for i in self.timeline() if i.kind is DriftKind.TRAFFIC_DROP]
        if drops:
            gone = np.zeros(len(times), dtype=bool)
            for injection in drops:
                stream = np.random.default_rng(np.random.SeedSequence([*entropy, 100, injection.stream_key()]))
                gone |= dropped_rows(injection, injection.window_mask(times), stream, times)
            frame = frame[~gone].reset_index(drop=True)
        return frame

    def generate(self, start: pd.Timestamp | str, end: pd.Timestamp | str) -> pd.DataFrame:
        """Rows with ``event_time`` in ``[start, end)``, sorted by time; same as concatenating days.

        Traffic drops act here (on days); ``generate_rows`` always gives exactly the rows asked for.
        """
        start, end = utc(start, "start"), utc(end, "end")
        first = self.day_index(start)
        if end <= start:
            return self.day(first).iloc[:0].reset_index(drop=True)
        last = (end.value - 1 - self.start.value) // DAY_NS
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
        at = self.start if at is None else utc(at, "at")
        entropy = [self.seed, 2, int(n_rows), zigzag(at.value)]
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
            times = np.full(len(frame), utc(at, "at").value, dtype=np.int64)
        numeric = {
            n: pd.to_numeric(frame[n], errors="coerce").to_numpy(dtype=float) for n in self.numeric_features
        }
        codes = {
            n: pd.Categorical(frame[n], categories=list(CATEGORIES[n])).codes.astype(np.int64)
            for n in CATEGORICAL_FEATURES
        }
        return _true_probability(numeric, codes, times, self.injections)

    def _simulate(self, rng: np.random.Generator, entropy: list[int], times: np.ndarray) -> pd.DataFrame:
        n = len(times)
        extra_columns = extra_names(self.extra_numeric)
        float_names = (*NUMERIC_FEATURES, *extra_columns, *self.optional_features)
        # One float64 block in frame order, so 1M x 50 rows are built without per-column copies.
        block = np.empty((len(float_names), n))
        extra_block = block[len(NUMERIC_FEATURES) : len(NUMERIC_FEATURES) + len(extra_columns)]
        extra_rows = list(extra_block)
        pop = customer_population(self.seed, self.population)
        who = rng.integers(0, self.population, n)
        risk = pop.risk[who]
        numeric: dict[str, np.ndarray] = {
            "age": pop.age[who],
            "income": np.round(np.exp(pop.log_income[who] + rng.normal(0.0, 0.05, n)), -1),
            "debt_ratio": np.clip(np.exp(-1.2 + 0.35 * risk + rng.normal(0.0, 0.5, n)), 0.0, 3.0),
            "credit_limit": pop.credit_limit[who],
            "utilization": np.clip(1.25 * expit(-0.9 + 0.8 * risk + rng.normal(0.0, 0.8, n)), 0.0, 1.5),
            "months_employed": pop.months_employed[who],
        }
        late_rate = np.exp(-1.2 + 0.6 * risk + 1.2 * (numeric["utilization"] - 0.4))
        numeric["num_late_payments"] = np.minimum(rng.poisson(late_rate), 30).astype(float)
        numeric["num_open_accounts"] = np.minimum(rng.poisson(pop.open_rate[who]), 50).astype(float)
        if extra_rows:
            rng.standard_normal(out=extra_block)
        numeric.update(zip(extra_columns, extra_rows, strict=True))
        codes = {
            "region": pop.region[who],
            "employment_type": pop.employment[who],
            "education": pop.education[who],
        }
        label_u = rng.random(n)
        jitter = rng.uniform(0.75, 1.25, n)
        natural_missing = {"income": rng.random(n) < 0.01, "months_employed": rng.random(n) < 0.02}

        active = [(i, i.window_mask(times)) for i in self.timeline()]
        active = [(i, mask) for i, mask in active if mask.any()]

        def stream(injection: Injection) -> np.random.Generator:
            return np.random.default_rng(np.random.SeedSequence([*entropy, 100, injection.stream_key()]))

        if self.calendar_features or self.weekly_cycle > 0:
            numeric.update(self._optional_columns(entropy, times))
        for injection, mask in active:
            if injection.kind is DriftKind.COVARIATE_SHIFT:
                shift(numeric, codes, injection, mask, stream(injection), times)
        labels = (label_u < _true_probability(numeric, codes, times, self.injections)).astype(np.int64)

        for name, hit in natural_missing.items():
            numeric[name] = np.where(hit, np.nan, numeric[name])
        for injection, mask in active:
            corrupt(numeric, codes, injection, mask, stream(injection), times)

        for row, name in enumerate(float_names):
            extra = row - len(NUMERIC_FEATURES)
            if not 0 <= extra < len(extra_rows) or numeric[name] is not extra_rows[extra]:
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

    def _optional_columns(self, entropy: list[int], times: np.ndarray) -> dict[str, np.ndarray]:
        """Calendar columns off the clock, and the seasonal feature from a stream of its own (so
        turning it on leaves every other column as it was)."""
        columns: dict[str, np.ndarray] = {}
        days = times / DAY_NS
        if self.calendar_features:
            stamps = pd.DatetimeIndex(pd.to_datetime(times, unit="ns", utc=True))
            columns["day_of_week"] = stamps.dayofweek.to_numpy(dtype=float)
            columns["day_of_month"] = stamps.day.to_numpy(dtype=float)
        if self.weekly_cycle > 0:
            rng = np.random.default_rng(np.random.SeedSequence([*entropy, 200]))
            weekday = (days + 3.0) % 7.0  # the epoch was a Thursday; 0 = Monday 00:00
            cycle = self.weekly_cycle * np.cos(2.0 * np.pi * (weekday - _SEASONAL_PEAK_WEEKDAY) / 7.0)
            columns[SEASONAL_FEATURE] = cycle + rng.standard_normal(len(times))
        return columns


_SEASONAL_PEAK_WEEKDAY = 5.5  # Saturday noon


def credit_default_scenario(**overrides: Any) -> Scenario:
    """The standard credit-default world; keyword arguments override ``Scenario`` fields."""
    return Scenario(**overrides)
