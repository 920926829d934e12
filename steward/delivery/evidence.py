"""Per-arm evidence for delivery decisions, read from a window of the prediction log."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from steward.delivery.decisions import ArmEvidence
from steward.spec import ModelSpec, Task


def _losses(labelled: pd.DataFrame, task: Task) -> np.ndarray:
    ok = labelled[labelled["status"] == "ok"]
    if task is Task.REGRESSION:
        predicted = pd.to_numeric(ok["prediction"], errors="coerce")
        actual = pd.to_numeric(ok["label"], errors="coerce")
        return np.abs(predicted - actual).dropna().to_numpy(float)
    return (ok["prediction"].astype(str) != ok["label"].astype(str)).to_numpy(float)


def arm_evidence(
    predictions: pd.DataFrame,
    spec: ModelSpec,
    *,
    versions: Mapping[str, str],
    labelled: pd.DataFrame | None = None,
    served_only: bool = True,
) -> dict[str, ArmEvidence]:
    """What each arm did in the window, counting only rows its expected version answered.

    ``versions`` maps arm to the version that arm should be serving (a plan change in the
    window must not mix two versions' evidence). Requests are counted once however many rows
    they carried; latencies are per answered request: a failed request is the error test's
    evidence, and a slow failure path must not read as a slow model as well. ``labelled`` is
    ``join_labels`` of the same window; without it the arms have no losses.
    """
    evidence = {}
    for arm, version in versions.items():
        mask = (predictions["arm"] == arm) & (predictions["version"] == str(version))
        if served_only:
            mask &= predictions["served"]
        rows = predictions[mask]
        requests = rows.drop_duplicates("request_id")
        errored_ids = rows.loc[rows["status"] == "error", "request_id"].unique()
        answered = requests[~requests["request_id"].isin(errored_ids)]
        losses = np.empty(0)
        if labelled is not None and len(labelled):
            arm_labelled = labelled[(labelled["arm"] == arm) & (labelled["version"] == str(version))]
            if served_only:
                arm_labelled = arm_labelled[arm_labelled["served"]]
            losses = _losses(arm_labelled, spec.task)
        evidence[arm] = ArmEvidence(
            requests=len(requests),
            errors=len(errored_ids),
            latencies_ms=answered["latency_ms"].to_numpy(float),
            scores=rows["score"].dropna().to_numpy(float),
            losses=losses,
            binary_losses=spec.task is not Task.REGRESSION,
        )
    return evidence
