"""Drift check on a large window: full Evidently vs Steward's profile engine, on the same data.

Reference = a clean 200k-row training window from the scenario simulator; current = a 1M-row
window with known drift (income and debt_ratio shifted, unseen region, utilization outliers,
a months_employed missing spike).  Prints seconds (median of repeats), speed-up, peak RSS
growth against the size of the checked input columns, and whether the verdicts agree.

    uv run python benchmarks/drift_large_window.py                       # 1M x 50, full run once
    uv run python benchmarks/drift_large_window.py --cols 20
    uv run python benchmarks/drift_large_window.py --rows 50000 --cols 20 --repeats 1   # quick
    uv run python benchmarks/drift_large_window.py --skip-full           # Steward side only
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steward.monitoring.drift.engine import detect_drift  # noqa: E402
from steward.monitoring.drift.profile import REPORT_SAMPLE_ROWS, ReferenceProfile  # noqa: E402
from steward.monitoring.drift.result import DriftResult  # noqa: E402
from steward.simulation.injections import DriftKind, Injection  # noqa: E402
from steward.simulation.scenario import Scenario  # noqa: E402
from steward.simulation.world import CATEGORICAL_FEATURES, NUMERIC_FEATURES  # noqa: E402

PREDICTION = "score"
START = pd.Timestamp("2026-01-01", tz="UTC")
DRIFT_START = pd.Timestamp("2026-03-01", tz="UTC")
CURRENT_AT = pd.Timestamp("2026-03-08", tz="UTC")
BASE_COLS = len(NUMERIC_FEATURES) + len(CATEGORICAL_FEATURES)

LARGE_WINDOW_DRIFT = (
    Injection(DriftKind.COVARIATE_SHIFT, DRIFT_START, None, ("income",), 0.5),
    Injection(DriftKind.COVARIATE_SHIFT, DRIFT_START, None, ("debt_ratio",), 0.3),
    Injection(DriftKind.UNSEEN_CATEGORY, DRIFT_START, None, ("region",), 0.05),
    Injection(DriftKind.OUTLIERS, DRIFT_START, None, ("utilization",), 0.01),
    Injection(DriftKind.MISSING_SPIKE, DRIFT_START, None, ("months_employed",), 0.2),
)


def scenario_for(cols: int, seed: int, injections: tuple[Injection, ...] = ()) -> Scenario:
    """A scenario with ``cols`` input features: the 11 base ones plus x01.. extra numerics."""
    if cols < BASE_COLS:
        raise SystemExit(f"--cols must be >= {BASE_COLS} (the scenario's base features)")
    return Scenario(seed=seed, extra_numeric=cols - BASE_COLS, injections=injections)


def windows(
    cols: int, reference_rows: int, current_rows: int, seed: int, injections: tuple[Injection, ...]
) -> tuple[pd.DataFrame, pd.DataFrame, list[str], list[str]]:
    """Clean reference + drifted current, each with a model score from the clean world.

    The score is the scenario's true default probability as of the training time: what a
    perfect model fitted on the reference would predict, so it moves only when inputs move.
    """
    clean = scenario_for(cols, seed)
    world = scenario_for(cols, seed, injections)
    reference = clean.generate_rows(reference_rows, at=START)
    current = world.generate_rows(current_rows, at=CURRENT_AT)
    for frame in (reference, current):
        frame[PREDICTION] = clean.true_default_probability(frame, at=START)
    return reference, current, clean.numeric_features, clean.categorical_features


class PeakRss:
    """Samples this process's RSS every few ms in a thread; ``delta`` = peak minus start."""

    def __init__(self, every: float = 0.003) -> None:
        self.every = every
        self.proc = psutil.Process()

    def __enter__(self) -> PeakRss:
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def delta(self) -> int:
        return self.peak - self.start


@dataclass
class Timed:
    name: str
    seconds: list[float]
    rss_delta: int
    result: DriftResult

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(name: str, repeats: int, fn: Callable[[], DriftResult]) -> Timed:
    seconds: list[float] = []
    peak = 0
    result = None
    for i in range(repeats):
        with PeakRss() as rss:
            t0 = time.perf_counter()
            result = fn()
            seconds.append(time.perf_counter() - t0)
        peak = max(peak, rss.delta)
        print(
            f"  {name} run {i + 1}/{repeats}: {seconds[-1]:.2f} s, peak RSS +{rss.delta / 2**20:.0f} MB",
            flush=True,
        )
    assert result is not None
    return Timed(name, seconds, peak, result)


def traced_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated during ``fn`` as tracemalloc sees them (numpy reports its buffers)."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def agreement(a: DriftResult, b: DriftResult) -> tuple[int, int, list[str]]:
    """(columns agreeing, columns compared, disagreeing columns), prediction included."""
    pairs = list(zip(a.columns, b.columns, strict=True))
    if a.prediction is not None and b.prediction is not None:
        pairs.append((a.prediction, b.prediction))
    differ = [x.column for x, y in pairs if x.drifted != y.drifted]
    return len(pairs) - len(differ), len(pairs), differ


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000, help="current window rows (default 1M)")
    ap.add_argument(
        "--cols", type=int, default=50, help=f"input feature columns, >= {BASE_COLS} (default 50)"
    )
    ap.add_argument("--reference-rows", type=int, default=200_000, help="clean training window rows")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each Steward measurement (median)")
    ap.add_argument("--full-repeats", type=int, default=1, help="runs of the full Evidently baseline")
    ap.add_argument("--skip-full", action="store_true", help="do not run the full Evidently baseline")
    ap.add_argument(
        "--sample-rows", type=int, default=REPORT_SAMPLE_ROWS, help="rows behind the sampled report"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the measurements here")
    ap.add_argument("--html", type=Path, help="save the sampled Evidently report here")
    args = ap.parse_args(argv)

    print(
        f"Generating reference {args.reference_rows:,} x {args.cols} (clean) and current {args.rows:,} x {args.cols} (drifted)...",
        flush=True,
    )
    t0 = time.perf_counter()
    reference, current, numeric, categorical = windows(
        args.cols, args.reference_rows, args.rows, args.seed, LARGE_WINDOW_DRIFT
    )
    checked = [*numeric, *categorical, PREDICTION]
    input_bytes = int(current[checked].memory_usage(deep=True).sum())
    frame_bytes = int(current.memory_usage(deep=True).sum())
    print(
        f"  generated in {time.perf_counter() - t0:.1f} s; checked columns of the current window: {mb(input_bytes)} "
        f"(whole frame with ids/timestamps: {mb(frame_bytes)})",
        flush=True,
    )

    t0 = time.perf_counter()
    import evidently  # noqa: F401  - one-off per process; kept out of every timing below

    import_seconds = time.perf_counter() - t0
    print(f"  import evidently: {import_seconds:.1f} s (once per process, excluded below)", flush=True)

    kw: dict[str, Any] = dict(numeric=numeric, categorical=categorical, prediction_column=PREDICTION)
    profile_run = timed(
        "build ReferenceProfile",
        args.repeats,
        lambda: ReferenceProfile.build(reference, sample_rows=args.sample_rows, seed=args.seed, **kw),  # type: ignore[arg-type,return-value]
    )
    profile: ReferenceProfile = profile_run.result  # type: ignore[assignment]
    worst_sketch = max((getattr(p, "sketch_error", 0.0) for p in profile.columns.values()), default=0.0)

    verdict = timed(
        "Steward verdict (profile engine, no report)",
        args.repeats,
        lambda: detect_drift(profile, current, engine="profile", report=False, **kw),
    )
    traced = traced_peak(lambda: detect_drift(profile, current, engine="profile", report=False, **kw))
    with_report = timed(
        f"Steward verdict + Evidently report on {args.sample_rows:,}-row samples",
        args.repeats,
        lambda: detect_drift(
            profile, current, engine="profile", sample_rows=args.sample_rows, seed=args.seed, **kw
        ),
    )
    if args.html:
        with_report.result.save_html(args.html)
        print(f"  sampled report saved to {args.html}")

    full = None
    if not args.skip_full:
        print("Full Evidently DataDriftPreset on all rows (slow)...", flush=True)
        full = timed(
            "full Evidently",
            args.full_repeats,
            lambda: detect_drift(reference, current, engine="evidently", **kw),
        )

    fast = verdict.result
    print()
    print(
        f"## Drift check, current {args.rows:,} x {args.cols} (+ score) vs reference {args.reference_rows:,} rows"
    )
    print(
        f"checked input columns: {mb(input_bytes)}; evidently import {import_seconds:.1f} s excluded; "
        f"profile build {profile_run.median:.2f} s (once per model version, not in the rows below); "
        f"worst profile sketch error {worst_sketch:.1e} (normed W1)"
    )
    print()
    header = "| | seconds (median) | runs | speed-up vs full | peak RSS growth | x input | drifted columns | dataset drift | agrees with full |"
    print(header)
    print("|---|---:|---:|---:|---:|---:|---|---|---|")
    rows = [t for t in (full, verdict, with_report) if t is not None]
    for t in rows:
        speed = f"{full.median / t.median:,.0f}x" if full is not None else "n/a"
        if full is not None and t is not full:
            ok, n, differ = agreement(full.result, t.result)
            agrees = (
                f"{ok}/{n} columns"
                + (f" (differ: {', '.join(differ)})" if differ else "")
                + (", dataset yes" if full.result.dataset_drift == t.result.dataset_drift else ", dataset NO")
            )
        else:
            agrees = "-"
        drifted = ", ".join(t.result.drifted_columns) + (
            f"; prediction {'yes' if t.result.prediction and t.result.prediction.drifted else 'no'}"
        )
        print(
            f"| {t.name} | {t.median:.2f} | {len(t.seconds)} | {speed} | {mb(t.rss_delta)} | "
            f"{t.rss_delta / input_bytes:.2f} | {drifted} | {'yes' if t.result.dataset_drift else 'no'} | {agrees} |"
        )
    print()
    print(
        f"tracemalloc peak of the verdict (numpy buffers + Python objects): {mb(traced)} = "
        f"{traced / input_bytes:.2f}x the checked input"
    )
    rep = with_report.result
    print(
        f"sampled report: {rep.report_current_rows:,} current / {rep.report_reference_rows:,} reference rows, "
        f"seed {rep.sample_seed}; verdict part {rep.seconds:.2f} s, report part {rep.report_seconds:.2f} s; "
        f"columns the sampled report itself flags: {', '.join(rep.report_drifted_columns or ()) or 'none'}"
    )
    if full is not None:
        diffs = [abs(a.score - b.score) for a, b in zip(full.result.columns, fast.columns, strict=True)]
        print(f"max |score(full) - score(profile)| over input columns: {max(diffs):.2e}")
    print()
    print(fast.to_markdown_table())

    if args.json:
        out = {
            "rows": args.rows,
            "cols": args.cols,
            "reference_rows": args.reference_rows,
            "input_bytes": input_bytes,
            "import_seconds": import_seconds,
            "profile_seconds": profile_run.seconds,
            "measurements": {
                t.name: {"seconds": t.seconds, "rss_delta": t.rss_delta, "result": t.result.to_dict()}
                for t in rows
            },
            "verdict_tracemalloc_peak": traced,
        }
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
