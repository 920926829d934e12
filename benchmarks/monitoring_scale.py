"""The daily checks on a day of a busy model's log: streamed summaries against today's pandas path.

Each log (written once by ``benchmarks/scale_log.py``: one UTC day of the credit_default example at
~1,160 requests/s, a part per 2 s flush) is checked end to end through the pure functions the tasks
call, each path in its own subprocess under a memory cap (``--cap-gb``, address space), timed, with
its peak RSS read from the child's ``ru_maxrss``:

  stream  what the daily maintenance runs: one health scan (traffic, data quality against the
          reference's outlier fences, labels; the late-label look-back when a label points before
          the day) that also serves the SLO day and the champion's drift sample, then the
          performance, cost, data-quality and SLO judgements and the drift statistics on the sample
  pandas  ``read_predictions`` / ``join_labels`` of the window into frames, the same checks on them

Prefect's temporary server and the registry are left out (the checks are timed, not their
orchestration); the reference is the example's training data with a uniform score column. With
``--variants parts,compacted`` the day is then compacted (``compact_partition``) and the paths run again.

    uv run python benchmarks/scale_log.py --rows 10000000 --out /tmp/steward-scale/10M --fast
    uv run python benchmarks/monitoring_scale.py /tmp/steward-scale/10M --variants parts,compacted
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "examples" / "credit_default" / "spec.yaml"
DAY = date(2026, 6, 1)


def _setup():
    import numpy as np
    import pandas as pd

    from steward.monitoring.drift.monitor import prediction_drift_column
    from steward.monitoring.drift.profile import ReferenceProfile
    from steward.monitoring.health.data_quality import OutlierFences
    from steward.spec import load_spec
    from steward.training.data import prepare_features

    spec = load_spec(SPEC)
    reference = prepare_features(pd.read_parquet(ROOT / "examples" / "credit_default" / "data" / "train.parquet"), spec)
    column, kind = prediction_drift_column(spec)
    reference[column] = np.random.default_rng(0).uniform(size=len(reference))
    profile = ReferenceProfile.build(reference, numeric=spec.numeric_features, categorical=spec.categorical_features,
                                     prediction_column=column, prediction_kind=kind)
    return spec, profile, OutlierFences.from_reference(reference, spec, "1"), column


def _drift(spec, profile, column, frame):
    from steward.monitoring.drift.engine import detect_drift

    return detect_drift(profile, frame, numeric=spec.numeric_features, categorical=spec.categorical_features,
                        prediction_column=column, engine="profile", report=False)


def run_stream(log: str) -> dict:
    """What the daily maintenance runs: one health scan (with its late-label look-back) serves the SLO day and
    the champion's drift sample too (``steward.monitoring.summaries.checks``)."""
    from steward.monitoring.health.cost import judge_cost
    from steward.monitoring.health.data_quality import judge_data_quality
    from steward.monitoring.health.performance import judge_performance
    from steward.monitoring.health.report import HealthWindow
    from steward.monitoring.slo import slo_day_of
    from steward.monitoring.summaries.checks import read_late_labelled, slo_days_summary
    from steward.monitoring.summaries.window import summarize_window
    from steward.store.reader import PredictionStore

    spec, profile, fences, column = _setup()
    store = PredictionStore(log)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    window = HealthWindow(start, end)
    health = summarize_window(store, spec, start, end, fences=fences, labels_window=(start, end))
    late = read_late_labelled(store, spec, start, end, unmatched=health.unmatched_labels)
    checks = [judge_performance(health.traffic, window, spec), judge_cost(health.traffic, window, spec),
              judge_data_quality(health.quality, spec, fences, None)]
    slo_scan = slo_days_summary(store, spec, start, end, window=health)
    slo = slo_day_of(spec, DAY, slo_scan.days[DAY], slo_scan.labelled, as_of=end,
                     labelled_count=slo_scan.answered_labelled_by_day[DAY])
    champion = health.versions.busiest
    drift = _drift(spec, profile, column, health.answered_frame(champion))
    outcome = _outcome(checks, slo, drift, health.rows, health.answered_rows[champion])
    return outcome | {"late_labelled": 0 if late is None else len(late)}


def run_pandas(log: str) -> dict:
    from steward.monitoring.health.cost import check_cost
    from steward.monitoring.health.data_quality import check_data_quality
    from steward.monitoring.health.performance import check_performance
    from steward.monitoring.health.report import HealthWindow, VersionsInWindow
    from steward.monitoring.slo import compute_slo_day
    from steward.store.reader import PredictionStore, join_labels

    spec, profile, fences, column = _setup()
    store = PredictionStore(log)
    start = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC)
    end = start + timedelta(days=1)
    window = HealthWindow(start, end)
    predictions = store.read_predictions(spec.name, start, end)
    labelled = join_labels(predictions, store.read_labels(spec.name, start=start, end=end))
    checks = [check_performance(predictions, window, spec), check_cost(predictions, window, spec),
              check_data_quality(predictions, spec, fences, None)]
    rows = len(predictions)
    champion = VersionsInWindow.of(predictions).busiest
    del predictions, labelled
    served = store.read_predictions(spec.name, start, end, served_only=True)  # the SLO task's own read
    slo = compute_slo_day(spec, DAY, served, join_labels(served, store.read_labels(spec.name, start=start, end=end)),
                          as_of=end)
    del served
    current = store.read_predictions(spec.name, start, end, champion, served_only=True)  # the drift task's
    current = current[current["served"] & (current["status"] == "ok")].reset_index(drop=True)
    drift = _drift(spec, profile, column, current)
    return _outcome(checks, slo, drift, rows, len(current))


def _outcome(checks, slo, drift, rows: int, drift_rows: int) -> dict:
    return {
        "rows": rows,
        "issues": sorted(issue.code.value for check in checks for issue in check.issues),
        "metrics": {f"{check.area.value}.{k}": v for check in checks for k, v in check.metrics.items()
                    if isinstance(v, int | float)},
        "slo": {"requests": slo.requests, "failed": slo.failed_requests, "slow": slo.slow_requests, "p95_ms": slo.p95_ms,
                "labelled": slo.labelled, "accuracy": slo.accuracy},
        "drift": {c.column: round(c.score, 5) for c in drift.columns} | {"share": drift.drift_share},
        "drift_rows": drift_rows,
    }


def child(path: str, log: str, out: str) -> None:
    began = time.perf_counter()
    result = {"stream": run_stream, "pandas": run_pandas}[path](log)
    result["seconds"] = time.perf_counter() - began
    Path(out).write_text(json.dumps(result, default=float))


def measure(path: str, log: str, cap_gb: float) -> dict:
    """Run one path in a child process under an address-space cap; its time, peak RSS and results."""
    out = Path(log).parent / f".{Path(log).name}-{path}.json"
    out.unlink(missing_ok=True)
    cap = int(cap_gb * 2**30)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    began = time.perf_counter()
    process = subprocess.Popen([sys.executable, __file__, "--child", path, log, str(out)], preexec_fn=limit,
                               stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    stderr = process.stderr.read() if process.stderr else ""
    result = json.loads(out.read_text()) if out.exists() and os.waitstatus_to_exitcode(status) == 0 else {
        "failed": (stderr.strip().splitlines() or ["killed"])[-1][:200]}
    result.update(path=path, wall_seconds=wall, cpu_seconds=usage.ru_utime + usage.ru_stime,
                  peak_rss_mb=usage.ru_maxrss / 1024,
                  load_average=os.getloadavg()[0])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("logs", nargs="*", help="store folders written by benchmarks/scale_log.py")
    parser.add_argument("--paths", default="stream,pandas")
    parser.add_argument("--cap-gb", type=float, default=12.0, help="address-space cap of each child")
    parser.add_argument("--variants", default="parts",
                        help="parts, compacted (compacts the day first) or both: parts,compacted")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--json", help="append the results as JSON lines to this file")
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    for log in args.logs:
        for variant in args.variants.split(","):
            if variant == "compacted":
                from steward.store.compaction import compact_partition
                from steward.store.reader import PredictionStore

                store = PredictionStore(log)
                began = time.perf_counter()
                for dataset in ("predictions", "labels"):
                    compact_partition(store, dataset, "credit-default", DAY.isoformat(), grace=timedelta(0))
                print(f"# compacted {log} in {time.perf_counter() - began:.0f} s", flush=True)
            for path in args.paths.split(","):
                result = measure(path, log, args.cap_gb) | {"log": log, "variant": variant}
                print(json.dumps(result, default=float), flush=True)
                if args.json:
                    with open(args.json, "a") as handle:
                        handle.write(json.dumps(result, default=float) + "\n")


if __name__ == "__main__":
    main()
