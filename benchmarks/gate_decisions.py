"""How often does the validation gate pass a worse candidate, by hold-out size: point estimates against paired intervals?

On the simulator's credit world a champion is trained on 20 days; candidates are a retrain with
another seed (same quality), and a retrain on fewer rows (truly worse, measured on 100k fresh rows).
Each is judged many times on fresh hold-outs of several sizes with the old rule (point estimate
within the tolerance) and the new one (paired interval, `judge_non_inferiority` + expected gain).
Also times the paired statistics at several sizes.

    uv run python benchmarks/gate_decisions.py               # 40 hold-outs per size
    uv run python benchmarks/gate_decisions.py --repeats 100
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from steward.estimators import build_estimator  # noqa: E402
from steward.simulation.examples import example_spec_text  # noqa: E402
from steward.simulation.scenario import credit_default_scenario  # noqa: E402
from steward.spec import Task, parse_spec  # noqa: E402
from steward.training.data import prepare_features  # noqa: E402
from steward.training.evaluation import compute_metrics, predict_scores  # noqa: E402
from steward.training.paired import judge_non_inferiority, paired_difference  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200, 1000, 5000])
    args = parser.parse_args()

    spec = parse_spec(yaml.safe_load(example_spec_text()))
    tolerance = spec.gates.tolerance
    scenario = credit_default_scenario(rows_per_day=300)
    history = scenario.generate(scenario.start, scenario.start + pd.Timedelta(days=20))
    fresh = scenario.generate_rows(200_000, at=scenario.start + pd.Timedelta(days=21))

    def fit(frame: pd.DataFrame, seed: int):
        params = {**spec.estimator.params, "random_state": seed}
        s = spec.model_copy(update={"estimator": spec.estimator.model_copy(update={"params": params})})
        return build_estimator(s).fit(prepare_features(frame, spec), frame[spec.target])

    models = {"champion": fit(history, 0), "same quality (seed 1)": fit(history, 1),
              "fewer rows (1500)": fit(history.tail(1500), 0)}
    features, y_all = prepare_features(fresh, spec), fresh[spec.target].to_numpy()
    outputs = {name: predict_scores(model, features, spec.task) for name, model in models.items()}
    true_auc = {name: compute_metrics(spec.task, y_all, *out)["roc_auc"] for name, out in outputs.items()}
    print(f"true ROC AUC on {len(fresh)} fresh rows: " + ", ".join(f"{k} {v:.4f}" for k, v in true_auc.items()))

    rng = np.random.default_rng(0)
    print("\n| candidate | true change | hold-out rows | old rule: pass | new: pass | new: inconclusive | "
          "new: fail | median rows needed |\n| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in list(models)[1:]:
        for size in args.sizes:
            old, new, needed = 0, Counter(), []
            for _ in range(args.repeats):
                index = rng.choice(len(fresh), size=size, replace=False)
                y = y_all[index]
                cand = (outputs[name][0][index], outputs[name][1][index])
                champ = (outputs["champion"][0][index], outputs["champion"][1][index])
                interval = paired_difference("roc_auc", Task.BINARY_CLASSIFICATION, y, cand, champ)
                old += interval.difference >= -tolerance
                result = judge_non_inferiority(interval, tolerance, y)
                verdict = result.outcome.value
                if verdict == "non_inferior" and interval.difference < 0:
                    verdict = "no_expected_gain"
                new[verdict] += 1
                if result.rows_needed is not None:
                    needed.append(result.rows_needed)
            change = true_auc[name] - true_auc["champion"]
            fails = new["inferior"] + new["no_expected_gain"]
            print(f"| {name} | {change:+.4f} | {size} | {old / args.repeats:.0%} | "
                  f"{new['non_inferior'] / args.repeats:.0%} | {new['inconclusive'] / args.repeats:.0%} | "
                  f"{fails / args.repeats:.0%} | {int(np.median(needed)) if needed else '-'} |")

    print("\n| statistic | rows | seconds |\n| --- | --- | --- |")
    for metric in ("roc_auc", "accuracy", "brier"):
        for size in (1_000, 20_000, 200_000):
            y = y_all[:size]
            cand = (outputs["fewer rows (1500)"][0][:size], outputs["fewer rows (1500)"][1][:size])
            champ = (outputs["champion"][0][:size], outputs["champion"][1][:size])
            started = time.perf_counter()
            paired_difference(metric, Task.BINARY_CLASSIFICATION, y, cand, champ)
            print(f"| {metric} | {size} | {time.perf_counter() - started:.3f} |")


if __name__ == "__main__":
    main()
