"""NannyML's CBPE (label-free accuracy estimate) over daily chunks; runs in NannyML's own environment.

benchmarks/decisions.py calls it as a subprocess with the interpreter of a separate virtualenv (NannyML
is not one of Steward's dependencies):

    <venv>/bin/python benchmarks/nannyml_cbpe.py REFERENCE.parquet ANALYSIS.parquet OUT.json

Both frames hold ``timestamp``, ``y_pred_proba``, ``y_pred`` (and ``y_true`` in the reference). The
output lists, per UTC day of the analysis, the estimated accuracy and whether CBPE raised its alert
(NannyML's defaults: thresholds from the reference chunks' spread).
"""

from __future__ import annotations

import json
import sys

import nannyml as nml
import pandas as pd


def main(reference_path: str, analysis_path: str, out_path: str) -> None:
    reference = pd.read_parquet(reference_path)
    analysis = pd.read_parquet(analysis_path)
    estimator = nml.CBPE(
        y_pred_proba="y_pred_proba", y_pred="y_pred", y_true="y_true", timestamp_column_name="timestamp",
        metrics=["accuracy"], chunk_period="D", problem_type="classification_binary",
    )
    estimator.fit(reference)
    frame = estimator.estimate(analysis).filter(period="analysis").to_df()
    days = pd.to_datetime(frame[("chunk", "start_date")], utc=True).dt.strftime("%Y-%m-%d")
    rows = [
        {"day": day, "estimated_accuracy": float(value), "alert": bool(alert)}
        for day, value, alert in zip(days, frame[("accuracy", "value")], frame[("accuracy", "alert")], strict=True)
    ]
    with open(out_path, "w") as handle:
        json.dump({"nannyml": nml.__version__, "chunks": rows}, handle)


if __name__ == "__main__":
    main(*sys.argv[1:4])
