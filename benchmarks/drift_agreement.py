"""Does Steward's profile engine flag the same columns as a full Evidently run?

For each injected problem from the scenario simulator (covariate shift at several magnitudes,
missing spike, unseen category, outliers, concept drift) and a quiet window, run both engines on
the same reference/current pair at a moderate size where the full Evidently run is affordable,
and compare per-column drifted yes/no (inputs + the model score) and the dataset-level verdict.

    uv run python benchmarks/drift_agreement.py                 # 100k vs 100k rows, 20 columns, 2 seeds
    uv run python benchmarks/drift_agreement.py --rows 50000 --seeds 1 --cols 20
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from drift_large_window import DRIFT_START, PREDICTION, windows  # noqa: E402

from steward.monitoring.drift.engine import detect_drift  # noqa: E402
from steward.monitoring.drift.profile import ReferenceProfile  # noqa: E402
from steward.monitoring.drift.result import DriftResult  # noqa: E402
from steward.simulation.injections import DriftKind, Injection  # noqa: E402


def inj(kind: DriftKind, features: tuple[str, ...], magnitude: float) -> Injection:
    return Injection(kind, DRIFT_START, None, features, magnitude)


SHIFTED = ("income", "utilization", "age", "region")
CASES: list[tuple[str, str, tuple[Injection, ...]]] = [
    ("quiet", "no injection", ()),
    *[
        (
            "covariate_shift",
            f"shift {m} std on {', '.join(SHIFTED)}",
            (inj(DriftKind.COVARIATE_SHIFT, SHIFTED, m),),
        )
        for m in (0.05, 0.1, 0.2, 0.5, 1.0)
    ],
    (
        "missing_spike",
        "30% missing in months_employed, income, region",
        (inj(DriftKind.MISSING_SPIKE, ("months_employed", "income", "region"), 0.3),),
    ),
    (
        "unseen_category",
        "2% unseen in region, 10% in education",
        (
            inj(DriftKind.UNSEEN_CATEGORY, ("region",), 0.02),
            inj(DriftKind.UNSEEN_CATEGORY, ("education",), 0.10),
        ),
    ),
    (
        "outliers",
        "0.2% outliers in debt_ratio, 1% in utilization",
        (inj(DriftKind.OUTLIERS, ("debt_ratio",), 0.002), inj(DriftKind.OUTLIERS, ("utilization",), 0.01)),
    ),
    (
        "concept_drift",
        "full reversal of utilization and num_late_payments effects",
        (inj(DriftKind.CONCEPT_DRIFT, ("utilization", "num_late_payments"), 1.0),),
    ),
]


def flags(result: DriftResult) -> dict[str, bool]:
    out = {c.column: c.drifted for c in result.columns}
    if result.prediction is not None:
        out[f"{result.prediction.column} (prediction)"] = result.prediction.drifted
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000, help="current window rows")
    ap.add_argument("--reference-rows", type=int, default=100_000)
    ap.add_argument("--cols", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=2, help="independent worlds per case")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import evidently  # noqa: F401  - import once, outside the timings

    rows: list[dict[str, Any]] = []
    for kind, label, injections in CASES:
        for seed in range(1, args.seeds + 1):
            reference, current, numeric, categorical = windows(
                args.cols, args.reference_rows, args.rows, seed, injections
            )
            kw: dict[str, Any] = dict(numeric=numeric, categorical=categorical, prediction_column=PREDICTION)
            t0 = time.perf_counter()
            full = detect_drift(reference, current, engine="evidently", **kw)
            t_full = time.perf_counter() - t0
            profile = ReferenceProfile.build(reference, **kw)
            t0 = time.perf_counter()
            fast = detect_drift(profile, current, engine="profile", report=False, **kw)
            t_fast = time.perf_counter() - t0
            a, b = flags(full), flags(fast)
            differ = [c for c in a if a[c] != b[c]]
            injected = sorted({f for i in injections for f in i.features})
            max_diff = max(abs(x.score - y.score) for x, y in zip(full.columns, fast.columns, strict=True))
            near = min(abs(c.score - c.threshold) for c in full.columns)
            row = {
                "kind": kind,
                "case": label,
                "seed": seed,
                "columns": len(a),
                "agree": len(a) - len(differ),
                "differ": differ,
                "dataset_full": full.dataset_drift,
                "dataset_fast": fast.dataset_drift,
                "drifted_full": [c for c in a if a[c]],
                "drifted_fast": [c for c in b if b[c]],
                "injected": injected,
                "max_score_diff": max_diff,
                "closest_to_threshold": near,
                "seconds_full": t_full,
                "seconds_fast": t_fast,
            }
            rows.append(row)
            print(
                f"{label} (seed {seed}): {row['agree']}/{row['columns']} agree"
                + (f", differ {differ}" if differ else "")
                + f"; full flags {row['drifted_full'] or 'none'}; max |dscore| {max_diff:.1e}; "
                f"full {t_full:.1f} s vs profile {t_fast:.2f} s",
                flush=True,
            )

    print()
    print(
        f"## Agreement, profile engine vs full Evidently ({args.rows:,} current vs {args.reference_rows:,} reference "
        f"rows, {args.cols} input columns + model score, {args.seeds} seed(s) per case)"
    )
    print()
    print(
        "| kind | case | column verdicts agreeing | dataset verdict agreeing | injected columns flagged (full / profile) "
        "| max abs score diff | closest score to its threshold | full s | profile s |"
    )
    print("|---|---|---:|---:|---|---:|---:|---:|---:|")
    by_case: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_case[(r["kind"], r["case"])].append(r)
    for (kind, label), rs in by_case.items():
        agree = sum(r["agree"] for r in rs)
        total = sum(r["columns"] for r in rs)
        ds = sum(r["dataset_full"] == r["dataset_fast"] for r in rs)
        inj_full = sum(len(set(r["drifted_full"]) & set(r["injected"])) for r in rs)
        inj_fast = sum(len(set(r["drifted_fast"]) & set(r["injected"])) for r in rs)
        inj_total = sum(len(r["injected"]) for r in rs)
        print(
            f"| {kind} | {label} | {agree}/{total} ({agree / total:.1%}) | {ds}/{len(rs)} | "
            f"{inj_full}/{inj_total} / {inj_fast}/{inj_total} | {max(r['max_score_diff'] for r in rs):.1e} | "
            f"{min(r['closest_to_threshold'] for r in rs):.1e} | "
            f"{sum(r['seconds_full'] for r in rs) / len(rs):.1f} | {sum(r['seconds_fast'] for r in rs) / len(rs):.2f} |"
        )
    agree = sum(r["agree"] for r in rows)
    total = sum(r["columns"] for r in rows)
    print(
        f"| all | | {agree}/{total} ({agree / total:.1%}) | {sum(r['dataset_full'] == r['dataset_fast'] for r in rows)}/{len(rows)} | | | | | |"
    )
    print()
    print(
        "Notes: missing values are dropped before testing (as Evidently does), so a missing spike shows only in "
        "the missing shares, not as drift; concept drift changes labels, not inputs or the model's score, so no "
        "input-drift check can see it."
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
