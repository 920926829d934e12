"""The decision scenario suite: what Steward decides on simulated worlds with known truth, beside baselines.

Every case of ``steward.simulation.suite`` is replayed with ``run_backtest`` at a DAILY cadence (Steward,
frozen, oracle), at a weekly cadence (a weekly scheduled retrain), through Evidently's default
dataset-drift alarm and, if it is installed in its own virtualenv, NannyML's CBPE estimate.  Each is
scored against the injected ground truth and the issue's goals are judged pass/fail.

    uv run python benchmarks/decisions.py --quick          # a few minutes on 2 cores: the quick subset
    uv run python benchmarks/decisions.py                  # the full suite (90-day quiet periods)
    uv run python benchmarks/decisions.py --cases quiet,threshold_shift --quick
    uv run python benchmarks/decisions.py --jobs 2 --keep .decisions-full   # resumable: finished cases kept

NannyML: ``uv venv .nannyml-venv --python 3.11 && uv pip install --python .nannyml-venv/bin/python nannyml
statsmodels pyarrow`` (or point ``--nannyml-python`` at any interpreter that has it).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from steward.estimators import build_estimator  # noqa: E402
from steward.simulation.scoring import CaseScore, alarm_trace  # noqa: E402
from steward.simulation.suite import ScenarioCase, SuiteSize, catalogue  # noqa: E402
from steward.simulation.suite_run import EVIDENTLY, WEEKLY, CaseRun, run_case  # noqa: E402
from steward.training.data import prepare_features  # noqa: E402

NANNYML = "nannyml_cbpe"
DEFAULT_NANNYML_PYTHON = ROOT / ".nannyml-venv" / "bin" / "python"


# ------------------------------------------------------------------------------------------ NannyML
def nannyml_alarms(run: CaseRun, python: Path) -> list[bool]:
    """CBPE alerts per daily window for a first model trained on the first half of the initial span and
    referenced on the second half (CBPE needs labelled reference chunks the model did not train on)."""
    spec, history, first = run.spec, run.history, run.case.first_window
    times = pd.to_datetime(history[spec.timestamp_column], utc=True)
    span = pd.Timedelta(days=spec.data.window_days or 14)
    middle = first - span / 2
    train = history[(times >= first - span) & (times < middle)]
    model = build_estimator(spec).fit(prepare_features(train, spec), train[spec.target])

    def scored(frame: pd.DataFrame, labelled: bool) -> pd.DataFrame:
        proba = model.predict_proba(prepare_features(frame, spec))[:, 1]
        out = pd.DataFrame({"timestamp": pd.to_datetime(frame[spec.timestamp_column], utc=True).dt.tz_localize(None),
                            "y_pred_proba": proba, "y_pred": (proba >= 0.5).astype(int)})
        if labelled:
            out["y_true"] = frame[spec.target].to_numpy()
        return out

    reference = scored(history[(times >= middle) & (times < first)], True)
    analysis = scored(history[(times >= first) & (times < run.case.end)], False)
    with tempfile.TemporaryDirectory() as folder:
        paths = [Path(folder) / n for n in ("reference.parquet", "analysis.parquet", "out.json")]
        reference.to_parquet(paths[0])
        analysis.to_parquet(paths[1])
        subprocess.run([str(python), str(ROOT / "benchmarks" / "nannyml_cbpe.py"), *map(str, paths)],
                       check=True, capture_output=True, text=True, timeout=600)
        chunks = {c["day"]: c["alert"] for c in json.loads(paths[2].read_text())["chunks"]}
    return [bool(chunks.get(pd.Timestamp(w.start).strftime("%Y-%m-%d"), False)) for w in run.daily.windows]


def nannyml_version(python: Path) -> str | None:
    if not python.exists():
        return None
    done = subprocess.run([str(python), "-c", "import nannyml; print(nannyml.__version__)"],
                          capture_output=True, text=True, timeout=300)
    return done.stdout.strip() if done.returncode == 0 else None


# ------------------------------------------------------------------------------------------ goals
def goals(runs: list[CaseRun], candidates: list | None) -> list[tuple[str, bool | None, str]]:
    """The issue's goals (item 4), each judged on Steward's scores: (goal, passed or None = not measured here, evidence)."""
    steward = [r.scores["steward"] for r in runs]
    material = [s for s, r in zip(steward, runs, strict=True) if r.case.material]
    late = [f"{s.case} ({'missed' if not s.detected else f'{s.delay_cycles} cycles'})"
            for s in material if not s.detected_in_time]
    false_total = sum(s.false_alarms for s in steward)
    quiet_days = sum(s.quiet_days for s in steward)
    rate = false_total * 90 / quiet_days if quiet_days else math.nan
    worst = [f"{s.case} {s.false_alarms_per_90_days:.1f}" for s in steward
             if s.false_alarms_per_90_days is not None and s.false_alarms_per_90_days > 1 and s.quiet_days >= 28]
    costly = [(s, r) for s, r in zip(steward, runs, strict=True) if r.case.accuracy_cost]
    slow = [f"{s.case} ({'never' if s.cycles_to_recover is None else s.cycles_to_recover})"
            for s, _ in costly if s.cycles_to_recover is None or s.cycles_to_recover > 2]
    weekly = [(r.scores["steward"], r.scores[WEEKLY]) for r in runs if WEEKLY in r.scores and r.case.onset is not None]
    lost = [(s.accuracy_lost, w.accuracy_lost) for s, w in weekly if s.accuracy_lost is not None and w.accuracy_lost is not None]
    steward_lost = float(np.mean([a for a, _ in lost])) if lost else math.nan
    weekly_lost = float(np.mean([b for _, b in lost])) if lost else math.nan
    retrains = (sum(s.retrains for s, _ in weekly), sum(w.retrains for _, w in weekly))
    as_good = bool(lost) and steward_lost <= weekly_lost + 1e-9 and retrains[0] < retrains[1]
    if candidates:
        good = [c for c in candidates if not c.bad]
        bad = [c for c in candidates if c.bad]
        wrongly = [c.scenario for c in good if not c.correct]
        late_stop = [f"{c.scenario} ({c.decision.value}, step {c.stopped_at_step})" for c in bad if not c.correct]
        good_goal = (not wrongly and bool(good), f"{len(good) - len(wrongly)}/{len(good)} good candidates promoted"
                     + (f"; not: {', '.join(wrongly)}" if wrongly else ""))
        bad_goal = (not late_stop and bool(bad), f"{len(bad) - len(late_stop)}/{len(bad)} stopped at step 1"
                    + (f"; not: {', '.join(late_stop)}" if late_stop else ""))
    else:
        good_goal = bad_goal = (None, "not measured in this run (--no-candidates)")
    return [
        ("every material drift detected within one daily cycle (label-only drifts: once labels arrive)",
         not late and bool(material), f"{len(material) - len(late)}/{len(material)} in time" + (f"; late: {', '.join(late)}" if late else "")),
        ("at most 1 false alarm per 90 quiet days", rate <= 1 and not worst,
         f"{false_total} false alarms in {quiet_days:.0f} quiet days = {rate:.1f} per 90" + (f"; cases above 1: {', '.join(worst)}" if worst else "")),
        ("0 good candidates rolled back, including under load", *good_goal),
        ("every bad candidate stopped at its first step", *bad_goal),
        ("accuracy within 1 point of the oracle within 2 cycles of a material drift", not slow and bool(costly),
         f"{len(costly) - len(slow)}/{len(costly)} recovered" + (f"; not: {', '.join(slow)}" if slow else "")),
        ("maintained model at least as good as a weekly retrain while retraining less often", as_good,
         f"accuracy lost against the oracle {100 * steward_lost:.2f} vs {100 * weekly_lost:.2f} points; "
         f"retrains {retrains[0]} vs {retrains[1]} (drift cases)"),
    ]


# ------------------------------------------------------------------------------------------ tables
def _yn(value: bool | None) -> str:
    return "–" if value is None else ("yes" if value else "**no**")


def _pts(value: float | None) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.1f}"


def _rate(score: CaseScore) -> str:
    per = score.false_alarms_per_90_days
    return "–" if per is None else f"{score.false_alarms} ({per:.1f})"


def steward_table(runs: list[CaseRun]) -> list[str]:
    lines = ["| case | what happens | should alarm | detected | delay (cycles, limit) | false alarms (per 90 d) | "
             "retrains (promoted) | accuracy lost vs oracle (pts) | cycles to within 1 pt | frozen lost (pts) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        s, f = run.scores["steward"], run.scores["frozen"]
        delay = "–" if s.delay_cycles is None else f"{s.delay_cycles} ({s.detect_within})"
        recover = "–" if not run.case.material else ("never" if s.cycles_to_recover is None else str(s.cycles_to_recover))
        lines.append(f"| {run.case.name} | {run.case.description} | {'yes' if run.case.material else 'no'} | {_yn(s.detected)} | "
                     f"{delay} | {_rate(s)} | {s.retrains} ({s.promotions}) | {_pts(s.accuracy_lost)} | {recover} | {_pts(f.accuracy_lost)} |")
    return lines


def baseline_table(runs: list[CaseRun], alarm_names: list[str]) -> list[str]:
    head = "| case | " + " | ".join(f"{n}: detected, delay, false alarms (per 90 d)" for n in alarm_names)
    head += " | weekly retrain: retrains, lost (pts) | never retrain: lost (pts) |"
    lines = [head, "|---|" + "---|" * (len(alarm_names) + 2)]
    for run in runs:
        cells = []
        for name in alarm_names:
            s = run.scores.get(name)
            cells.append("not run" if s is None else
                         f"{_yn(s.detected)}, {'–' if s.delay_cycles is None else s.delay_cycles}, {_rate(s)}")
        w = run.scores.get(WEEKLY)
        weekly = "–" if w is None else f"{w.retrains}, {_pts(w.accuracy_lost)}"
        lines.append(f"| {run.case.name} | " + " | ".join(cells) + f" | {weekly} | {_pts(run.scores['frozen'].accuracy_lost)} |")
    return lines


def candidate_section(quick: bool, seed: int) -> tuple[list, list[str]]:
    """The canary scenarios (benchmarks/decisions_candidates.py): real canaries through a real gateway."""
    from decisions_candidates import markdown_table, run_candidate_scenarios

    scores = run_candidate_scenarios(quick=quick, seed=seed)
    return scores, ["## Candidates and canaries (benchmarks/decisions_candidates.py)", "", markdown_table(scores)]


# ------------------------------------------------------------------------------------------ main
def _kept_path(keep: Path, case: ScenarioCase, size: SuiteSize, seed: int) -> Path:
    return keep / f"{case.name}-{'quick' if size == SuiteSize.quick() else 'full'}-seed{seed}.pickle"


def _run_one(job: tuple[ScenarioCase, SuiteSize, int, Path | None, Path | None]) -> CaseRun:
    """One case through the backtests and every baseline (a weekly retrain only where something changes).

    With ``keep``, a finished case is pickled there and read back on the next run: a full suite takes
    an hour or more on two cores, and an interruption should cost only the cases still running.
    """
    case, size, seed, nanny_python, keep = job
    kept = _kept_path(keep, case, size, seed) if keep is not None else None
    if kept is not None and kept.exists():
        print(f"{case.name}: kept from {kept}", flush=True)
        return pickle.loads(kept.read_bytes())
    t0 = time.perf_counter()
    run = run_case(case, size, seed=seed, weekly=case.onset is not None)
    if nanny_python is not None:
        run = run.with_trace(alarm_trace(NANNYML, run.daily, nannyml_alarms(run, nanny_python)))
    s = run.scores["steward"]
    print(f"{case.name}: detected={s.detected} delay={s.delay_cycles} false={s.false_alarms} "
          f"retrains={s.retrains} promoted={s.promotions} lost={_pts(s.accuracy_lost)} "
          f"recover={s.cycles_to_recover} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if kept is not None:
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.with_suffix(".partial").write_bytes(pickle.dumps(run))
        kept.with_suffix(".partial").replace(kept)
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the quick subset, 30-day quiet periods")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--cases", default="", help="comma-separated case names (default: all of the mode)")
    parser.add_argument("--no-candidates", action="store_true", help="skip the candidate scenarios (real canaries through a real gateway)")
    parser.add_argument("--nannyml-python", type=Path, default=DEFAULT_NANNYML_PYTHON)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--jobs", type=int, default=1, help="cases run in parallel processes")
    parser.add_argument("--keep", type=Path, default=None,
                        help="a folder where each finished case is kept and from which a rerun resumes "
                             "(same seed and mode; delete it after changing product code)")
    args = parser.parse_args()

    size = SuiteSize.quick() if args.quick else SuiteSize.full()
    cases = catalogue(size, seed=args.seed)
    if args.cases:
        wanted = set(args.cases.split(","))
        unknown = wanted - {c.name for c in cases}
        if unknown:
            parser.error(f"unknown cases {sorted(unknown)}; known: {', '.join(c.name for c in cases)}")
        cases = tuple(c for c in cases if c.name in wanted)
    elif args.quick:
        cases = tuple(c for c in cases if c.in_quick)
    nanny = nannyml_version(args.nannyml_python)
    mode = "quick" if args.quick else "full"
    started = time.perf_counter()
    jobs = [(case, size, args.seed, args.nannyml_python if nanny else None, args.keep) for case in cases]
    if args.jobs > 1:
        with ProcessPoolExecutor(args.jobs) as pool:
            runs = list(pool.map(_run_one, jobs))
    else:
        runs = [_run_one(job) for job in jobs]
    candidates, candidate_lines = (None, ["Candidate scenarios: skipped (--no-candidates)."]) if args.no_candidates \
        else candidate_section(args.quick, args.seed)
    judged = goals(runs, candidates)
    command = "uv run python benchmarks/decisions.py " + " ".join(sys.argv[1:])
    alarm_names = [EVIDENTLY] + ([NANNYML] if nanny else [])
    lines = [
        f"# Decision scenario suite ({mode}), {datetime.now(UTC):%Y-%m-%d}",
        "",
        f"Command: `{command.strip()}` (seed {args.seed}; {time.perf_counter() - started:.0f} s on this machine, "
        "2 shared cores; times are not part of any verdict).",
        f"Worlds: {size.rows_per_day} rows a day, first champion and every retrain on {size.training_days} days, "
        f"quiet periods {size.quiet_days} days, drift cases {size.drift_days} daily windows with the onset after "
        f"{size.lead_days}. Daily cadence. NannyML: {nanny or 'not installed'}.",
        "",
        "## Goals (issue 15, item 4), judged on Steward's decisions",
        "",
        "| goal | result | evidence |",
        "|---|---|---|",
        *[f"| {g} | {'–' if ok is None else ('PASS' if ok else '**FAIL**')} | {why} |" for g, ok, why in judged],
        "",
        "## Steward",
        "",
        "Alarms are the drift and health alarms a person would receive. Delay counts daily cycles from the first "
        "window holding material data (0 = that window's own check); the limit in brackets is what the case "
        "allows (label-only drifts need their labels). Accuracy lost is the mean over windows from the onset of "
        "the oracle's accuracy minus the served model's, on the same labelled rows; recovery needs the mean gap "
        "over 3 windows within 1 point. 'frozen lost' re-measures the size of each drift.",
        "",
        *steward_table(runs),
        "",
        "## Baselines in the same run",
        "",
        f"{EVIDENTLY}: Evidently's DataDriftPreset with its defaults (dataset drift when half the columns drift) on "
        "each daily window against the first champion's training rows. "
        + (f"{NANNYML}: NannyML {nanny} CBPE accuracy estimate, its default alert thresholds, daily chunks, on a "
           "first model trained on the first half of the initial span (the second half is its reference). "
           if nanny else "NannyML: not installed. ")
        + "Weekly retrain: every 7 days on the same training window, promoted unconditionally (a second backtest at "
        "a weekly cadence, scored against that run's oracle). Never retrain: the first champion (FROZEN).",
        "",
        *baseline_table(runs, alarm_names),
        "",
        *candidate_lines,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    out = args.out or ROOT / "benchmarks" / "results" / f"{datetime.now(UTC):%Y-%m-%d}-decisions-{mode}.md"
    out.write_text(text)
    print(f"written: {out}")


if __name__ == "__main__":
    main()
